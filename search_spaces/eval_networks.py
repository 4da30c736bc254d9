"""Evaluation networks built from a searched architecture (what gets retrained and what papers report)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .darts_cell import reduction_layers
from .genotypes import Genotype, validate_genotype
from .nb201 import NB201Cell, NB201Network
from .ops import FactorizedReduce, Identity, ReLUConvBN, build_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` (DARTS/FractalNet drop-path)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x.div(keep) * mask


class GenotypeCell(nn.Module):
    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.indices = [i for _, i in pairs]
        self.ops = nn.ModuleList(build_op(op, c, 2 if reduction and i < 2 else 1) for op, i in pairs)
        self.multiplier = len(self.concat)
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for n in range(len(self.ops) // 2):
            branches = []
            for k in (2 * n, 2 * n + 1):
                h = self.ops[k](states[self.indices[k]])
                if self.training and self.drop_prob > 0 and not isinstance(self.ops[k], Identity):
                    h = drop_path(h, self.drop_prob)
                branches.append(h)
            states.append(branches[0] + branches[1])
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier at 2/3 depth (8x8 maps on CIFAR); smaller maps are pooled adaptively."""

    def __init__(self, channels: int, num_classes: int, spatial: int):
        super().__init__()
        pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False) if spatial >= 7 else \
            nn.AdaptiveAvgPool2d(2)
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), pool,
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module):
    """The DARTS/P-DARTS CIFAR evaluation network. ``forward`` returns ``(logits, aux_logits or None)``."""

    def __init__(self, genotype: Genotype, layers: int = 20, channels: int = 36, num_classes: int = 10,
                 auxiliary: bool = True, in_channels: int = 3, input_size: int = 32, stem_multiplier: int = 3):
        super().__init__()
        validate_genotype(genotype)
        self.genotype = genotype
        self.drop_path_prob = 0.0
        c_cur = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_cur, 3, padding=1, bias=False), nn.BatchNorm2d(c_cur))
        c_pp, c_p, c = c_cur, c_cur, channels
        self.cells = nn.ModuleList()
        reductions = reduction_layers(layers)
        self.aux_position = reductions[1]
        reduction_prev = False
        spatial = input_size
        self.auxiliary_head = None
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                c *= 2
                spatial = (spatial + 1) // 2
            cell = GenotypeCell(genotype, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if auxiliary and index == self.aux_position:
                self.auxiliary_head = AuxiliaryHead(c_p, num_classes, spatial)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def set_drop_path(self, prob: float) -> None:
        self.drop_path_prob = prob
        for cell in self.cells:
            cell.drop_prob = prob

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux = None
        s0 = s1 = self.stem(x)
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if index == self.aux_position and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


class FixedNB201Cell(NB201Cell):
    """The NB201 cell with one op per edge (same wiring and forward as the search cell)."""

    def __init__(self, ops: Mapping[str, str], channels: int):
        nn.Module.__init__(self)
        self.edges = nn.ModuleDict({key.split("op_")[-1]: build_op(op, channels, 1) for key, op in ops.items()})


class NB201EvalNetwork(nn.Module):
    """NAS-Bench-201's network (C=16, N=5) for a sample ``{'cell/op_j_i': op}``; returns ``(logits, None)``."""

    def __init__(self, sample: Mapping[str, str], channels: int = 16, cells_per_stack: int = 5,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.sample = dict(sample)
        self.network = NB201Network(lambda c: FixedNB201Cell(sample, c), channels, cells_per_stack, num_classes,
                                    in_channels, affine=True)
        self.auxiliary_head = None

    def set_drop_path(self, prob: float) -> None:  # NB201's protocol has no drop-path
        pass

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.network(x), None
