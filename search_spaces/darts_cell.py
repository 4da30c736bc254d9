"""The DARTS-family cell search space as an NNI ``ModelSpace``.

Unlike NNI's hub DARTS space, every edge is its own ``LayerChoice`` with its own candidate list (P-DARTS shrinks
each edge separately) and every intermediate node is one ``InputChoice(n_chosen=2)``. Labels are
``normal/op_{j}_{i}`` (edge i -> node j, nodes numbered 2..N+1 after the two cell inputs) and
``normal/input_{j}``, and likewise ``reduce/...``: the same label in every cell of a kind is one decision.

The space knows nothing of how it is searched. Its cells ask the input selector of each node which inputs are
active (``selector.chosen``: a list, or ``None`` for "all") so that a frozen model, or a supernet whose selector
exposes the same attribute, runs only the edges it needs.
"""
from __future__ import annotations

import torch
from nni.mutable import label_scope
from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace
from torch import nn

from .ops import EdgeOps, FactorizedReduce, ReLUConvBN, build_op, expand_ops, is_pool


def edge_keys(nodes: int) -> list[str]:
    """Edge keys ``"j_i"`` in DARTS order: node by node, input by input."""
    return [f"{j}_{i}" for j in range(2, nodes + 2) for i in range(j)]


def expand_edge_ops(ops: EdgeOps, nodes: int, where: str) -> dict[str, list[str]]:
    """Normalise ``ops`` to one list per edge and validate names and keys (``ops.expand_ops``)."""
    return expand_ops(ops, edge_keys(nodes), where)


def active_inputs(selector: nn.Module, n_inputs: int) -> list[int] | None:
    """Which inputs a node's selector uses, or None when it must see all of them (unfrozen InputChoice)."""
    chosen = getattr(selector, "chosen", None)
    if chosen is None and isinstance(selector, InputChoice):
        return None
    if chosen is None:
        return list(range(n_inputs))
    return list(chosen)


class SearchEdgeOp(nn.Sequential):
    """A candidate op as DARTS puts it in a search cell: pools get an affine-free BN to match conv scales."""


def _search_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    op = build_op(name, channels, stride, affine)
    if is_pool(name):
        return SearchEdgeOp(op, nn.BatchNorm2d(channels, affine=False))
    return op


class DartsCell(nn.Module):
    def __init__(self, kind: str, edge_ops: dict[str, list[str]], nodes: int, c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, affine: bool):
        super().__init__()
        self.kind = kind
        self.nodes = nodes
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c, affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine)
        self.edges = nn.ModuleDict()
        self.inputs = nn.ModuleList()
        for key, names in edge_ops.items():
            j, i = (int(t) for t in key.split("_"))
            stride = 2 if reduction and i < 2 else 1
            self.edges[key] = LayerChoice({n: _search_op(n, c, stride, affine) for n in names}, label=f"op_{key}")
        for j in range(2, nodes + 2):
            self.inputs.append(InputChoice(j, 2, reduction="sum", label=f"input_{j}"))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node, selector in zip(range(2, self.nodes + 2), self.inputs):
            chosen = active_inputs(selector, node)
            if chosen is None:  # a dry run of the unfrozen space: NNI's InputChoice picks
                states.append(selector([self.edges[f"{node}_{i}"](states[i]) for i in range(node)]))
            else:
                out = self.edges[f"{node}_{chosen[0]}"](states[chosen[0]])
                for i in chosen[1:]:
                    out = out + self.edges[f"{node}_{i}"](states[i])
                states.append(out)
        return torch.cat(states[2:], dim=1)


def reduction_layers(layers: int) -> tuple[int, int]:
    """Positions of the two reduction cells (DARTS: at 1/3 and 2/3 of the depth)."""
    return layers // 3, 2 * layers // 3


class DartsCellSpace(ModelSpace):
    """Stem, ``layers`` cells (reduction at 1/3 and 2/3), global pooling, classifier.

    Rebuild it with other arguments (``DartsCellSpace(**{**space.args, "layers": 11, "normal_ops": ...})``) to
    get P-DARTS' deeper, shrunk stage supernets: ``space.args`` holds the constructor's keyword arguments.
    """

    def __init__(self, normal_ops: EdgeOps, reduce_ops: EdgeOps, layers: int = 8, channels: int = 16,
                 nodes: int = 4, num_classes: int = 10, in_channels: int = 3, stem_multiplier: int = 3,
                 affine: bool = False):
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (one normal and two reduction cells), got {layers}")
        if nodes < 2:
            raise ValueError(f"nodes must be >= 2, got {nodes}")
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be an even number >= 2, got {channels}")
        self.layers, self.nodes = layers, nodes
        normal = expand_edge_ops(normal_ops, nodes, "normal_ops")
        reduce = expand_edge_ops(reduce_ops, nodes, "reduce_ops")
        c_cur = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_cur, 3, padding=1, bias=False), nn.BatchNorm2d(c_cur))
        c_pp, c_p, c = c_cur, c_cur, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(layers)
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                c *= 2
            kind = "reduce" if reduction else "normal"
            with label_scope(kind):
                cell = DartsCell(kind, reduce if reduction else normal, nodes, c_pp, c_p, c, reduction,
                                 reduction_prev, affine)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))
