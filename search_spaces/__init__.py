"""DARTS-family and NAS-Bench-201 search spaces as NNI model spaces, their ops, genotypes and eval networks.

Nothing here knows how a space is searched.
"""
from .darts_cell import DartsCellSpace, edge_keys
from .eval_networks import NB201EvalNetwork, NetworkCIFAR
from .families import FAMILIES, Family, get_family
from .genotypes import (PUBLISHED, Genotype, GenotypeError, genotype_to_sample, load_genotype, nb201_to_sample,
                        sample_to_genotype, sample_to_nb201)
from .nb201 import NB201Space
from .ops import DARTS_OPS, EXTRA_OPS, NB201_OPS, OPS, build_op
from .presets import SPACE_PRESETS, build_space, initial_edge_ops

__all__ = ["DartsCellSpace", "NB201Space", "NetworkCIFAR", "NB201EvalNetwork", "Genotype", "GenotypeError",
           "PUBLISHED", "load_genotype", "sample_to_genotype", "genotype_to_sample", "sample_to_nb201",
           "nb201_to_sample", "OPS", "DARTS_OPS", "EXTRA_OPS", "NB201_OPS", "build_op", "SPACE_PRESETS",
           "build_space", "initial_edge_ops", "edge_keys", "FAMILIES", "Family", "get_family"]
