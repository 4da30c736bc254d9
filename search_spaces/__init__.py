"""DARTS-family and NAS-Bench-201 search spaces as NNI model spaces, their ops, genotypes and eval networks.

Nothing here knows how a space is searched (nor imports the searcher: NNI's known-harmless import warnings are
filtered by ``nni_offpolicy``'s import, nni_glue/harmless.py; a script that imports only this package sees them).

The names below are imported on first use (PEP 562), not with the package: the spaces and ops import torch and
NNI (seconds), and ``search_spaces.genotypes`` (built-in genotypes, genotype files) is read by commands that need
neither, e.g. to build ``--help``.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DartsCellSpace": "darts_cell", "edge_keys": "darts_cell",
    "NB201EvalNetwork": "eval_networks", "NetworkCIFAR": "eval_networks",
    "FAMILIES": "families", "Family": "families", "get_family": "families",
    "PUBLISHED": "genotypes", "Genotype": "genotypes", "GenotypeError": "genotypes",
    "genotype_to_sample": "genotypes", "load_genotype": "genotypes", "nb201_to_sample": "genotypes",
    "sample_to_genotype": "genotypes", "sample_to_nb201": "genotypes",
    "NB201Space": "nb201",
    "DARTS_OPS": "ops", "EXTRA_OPS": "ops", "NB201_OPS": "ops", "OPS": "ops", "build_op": "ops",
    "SPACE_PRESETS": "presets", "build_space": "presets", "initial_edge_ops": "presets",
}
_MODULES = ("darts_cell", "eval_networks", "families", "genotypes", "nb201", "ops", "presets")

__all__ = ["DartsCellSpace", "NB201Space", "NetworkCIFAR", "NB201EvalNetwork", "Genotype", "GenotypeError",
           "PUBLISHED", "load_genotype", "sample_to_genotype", "genotype_to_sample", "sample_to_nb201",
           "nb201_to_sample", "OPS", "DARTS_OPS", "EXTRA_OPS", "NB201_OPS", "build_op", "SPACE_PRESETS",
           "build_space", "initial_edge_ops", "edge_keys", "FAMILIES", "Family", "get_family"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # once: later lookups do not come back here
        return value
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_MODULES})
