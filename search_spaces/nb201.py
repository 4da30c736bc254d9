"""The NAS-Bench-201 space: one cell of 4 nodes, all 6 edges kept, in its standard macro network.

Per-edge ``LayerChoice`` labelled ``cell/op_{j}_{i}`` (node j from node i, nodes 0..3), as in NNI's hub cell but
with a candidate list per edge so the space can be shrunk progressively.
"""
from __future__ import annotations

import torch
from nni.mutable import label_scope
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from .ops import EdgeOps, ReLUConvBN, build_op, expand_ops

NB201_NODES = 4


def nb201_edge_keys() -> list[str]:
    """Edges in arch-string order: node 1 from 0; node 2 from 0, 1; node 3 from 0, 1, 2."""
    return [f"{j}_{i}" for j in range(1, NB201_NODES) for i in range(j)]


def expand_nb201_ops(ops: EdgeOps, where: str = "ops") -> dict[str, list[str]]:
    """One op list per edge in arch-string order, validated as every family's are (``ops.expand_ops``)."""
    return expand_ops(ops, nb201_edge_keys(), where)


class NB201Cell(nn.Module):
    def __init__(self, edge_ops: dict[str, list[str]], channels: int, affine: bool):
        super().__init__()
        self.edges = nn.ModuleDict({
            key: LayerChoice({n: build_op(n, channels, 1, affine) for n in names}, label=f"op_{key}")
            for key, names in edge_ops.items()
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for j in range(1, NB201_NODES):
            out = self.edges[f"{j}_0"](states[0])
            for i in range(1, j):
                out = out + self.edges[f"{j}_{i}"](states[i])
            states.append(out)
        return states[-1]


class ResidualBlock(nn.Module):
    """NAS-Bench-201's reduction block: two 3x3 ReLU-conv-BN and an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """Stem, 3 stacks of ``cells_per_stack`` cells joined by residual reductions, BN-ReLU, pooling, classifier.

    ``make_cell(channels)`` builds a cell; the search space passes a cell of LayerChoices, the evaluation network
    a fixed cell. The standard network has ``channels=16`` and ``cells_per_stack=5``.
    """

    def __init__(self, make_cell, channels: int = 16, cells_per_stack: int = 5, num_classes: int = 10,
                 in_channels: int = 3, affine: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        blocks: list[nn.Module] = []
        c = channels
        for stack in range(3):
            if stack > 0:
                blocks.append(ResidualBlock(c, c * 2, affine))
                c *= 2
            blocks.extend(make_cell(c) for _ in range(cells_per_stack))
        self.cells = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class NB201Space(ModelSpace):
    """The NAS-Bench-201 search space; ``layers`` is the number of cells per stack (5 in the benchmark)."""

    def __init__(self, ops: EdgeOps, layers: int = 5, channels: int = 16, num_classes: int = 10,
                 in_channels: int = 3, affine: bool = False):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers (cells per stack) must be >= 1, got {layers}")
        edge_ops = expand_nb201_ops(ops)
        self.layers = layers

        def make_cell(c: int) -> nn.Module:
            with label_scope("cell"):
                return NB201Cell(edge_ops, c, affine)

        self.network = NB201Network(make_cell, channels, layers, num_classes, in_channels, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)
