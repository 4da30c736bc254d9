"""Parameters and FLOPs of the evaluation network an architecture would become.

FLOPs are thop's multiply-accumulates (MACs) on one image in eval mode, which is what DARTS-family papers report
as "FLOPs"; parameters leave out the auxiliary head, as papers do. thop prices each executed leaf module with a
forward hook, so a network's totals are sums over its modules: ``EvalCostModel`` uses that to price an
architecture from a table of per-edge costs instead of building and profiling the whole network each time.

Our ops under thop: convolutions, batch norms, average pools and linears are counted by thop's own rules;
ReLU and max-pool count 0 (thop's convention: no multiply-accumulates); ``Zero`` (``none``) and ``Identity``
(``skip_connect`` at stride 1) do no arithmetic and count 0, correctly; ``FactorizedReduce`` and the
``nn.Sequential`` subclasses (``ReLUConvBN``, ``DilConv``, ``SepConv``, ``Conv1xNNx1``) are not in thop's table,
so thop walks into their children and counts those. Parameters are counted from ``parameters()`` directly, not
through thop, so no module can be missed.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import torch
from torch import nn

from search_spaces.darts_cell import reduction_layers
from search_spaces.eval_networks import NB201EvalNetwork, NetworkCIFAR
from search_spaces.genotypes import FAMILIES, Genotype, as_architecture
from search_spaces.nb201 import nb201_edge_keys
from search_spaces.ops import DARTS_OPS, NB201_OPS, build_op, check_op_names

with warnings.catch_warnings():  # thop 0.1.1 imports distutils
    warnings.simplefilter("ignore")
    import thop

logger = logging.getLogger(__name__)

DEFAULTS = {"darts": {"layers": 20, "channels": 36}, "nb201": {"layers": 5, "channels": 16}}
"""Evaluation-network sizes: DARTS' 20 cells of 36 channels; NAS-Bench-201's 5 cells per stack of 16."""

_THOP_BUFFERS = ("total_ops", "total_params")


def count_params(model: nn.Module, exclude: tuple[str, ...] = ("auxiliary",)) -> int:
    """Number of parameters, leaving out those whose name contains any of ``exclude`` (papers: no aux head)."""
    return sum(p.numel() for name, p in model.named_parameters() if not any(word in name for word in exclude))


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """thop's MACs of one forward pass on zeros of ``input_shape``, in eval mode, under ``torch.no_grad``.

    The model comes back as it was: same train/eval mode, no hooks and no ``total_ops``/``total_params``
    buffers left behind (thop 0.1.1 leaves them on modules it does not know), even if the forward fails.
    """
    modules = list(model.modules())
    hooks_before = [set(m._forward_hooks) for m in modules]
    training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            macs, _ = thop.profile(model, (torch.zeros(*input_shape, device=device),), verbose=False)
    finally:
        model.train(training)
        for module, before in zip(modules, hooks_before):
            for key in [k for k in module._forward_hooks if k not in before]:
                del module._forward_hooks[key]
            for name in _THOP_BUFFERS:
                module._buffers.pop(name, None)
    return int(round(macs))


def profile_model(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(parameters without the auxiliary head, MACs)`` of ``model`` on one input of ``input_shape``.

    The auxiliary head only runs in training mode, so eval-mode MACs leave it out as well.
    """
    return count_params(model), count_macs(model, input_shape)


# ---------------------------------------------------------------- architectures of either family

def _arch_key(arch: Any, family: str) -> tuple:
    if family == "darts":
        return (tuple((op, int(i)) for op, i in arch.normal), tuple(int(c) for c in arch.normal_concat),
                tuple((op, int(i)) for op, i in arch.reduce), tuple(int(c) for c in arch.reduce_concat))
    return tuple(arch[f"cell/op_{key}"] for key in nb201_edge_keys())


def _eval_settings(family: str, layers: int | None, channels: int | None) -> tuple[int, int]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    return (DEFAULTS[family]["layers"] if layers is None else layers,
            DEFAULTS[family]["channels"] if channels is None else channels)


def build_eval_network(arch: Any, family: str, layers: int | None = None, channels: int | None = None,
                       num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    """The evaluation network: ``NetworkCIFAR`` (``layers`` cells) or ``NB201EvalNetwork`` (``layers`` cells
    per stack). ``None`` sizes take the family's standard ones (see ``DEFAULTS``)."""
    layers, channels = _eval_settings(family, layers, channels)
    arch = as_architecture(arch, family)
    if family == "darts":
        return NetworkCIFAR(arch, layers=layers, channels=channels, num_classes=num_classes, auxiliary=True,
                            in_channels=in_channels, input_size=input_size)
    return NB201EvalNetwork(arch, channels=channels, cells_per_stack=layers, num_classes=num_classes,
                            in_channels=in_channels)


def genotype_cost(arch: Any, family: str, layers: int | None = None, channels: int | None = None,
                  num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> tuple[int, int]:
    """``(params, flops)`` by building and profiling the full evaluation network: exact, about 1 s on CPU at
    20 cells of 36 channels. ``EvalCostModel`` gives the same numbers from a table."""
    model = build_eval_network(arch, family, layers, channels, num_classes, in_channels, input_size)
    return profile_model(model, (1, in_channels, input_size, input_size))


class EvalCostModel:
    """Params/FLOPs of the evaluation network an architecture would become, by summing per-edge costs.

    The controller prices every sampled architecture; building and profiling a 20-cell network each time costs
    ~1 s on CPU, a table lookup microseconds. Totals are exact because thop's counts are sums over leaf modules:

        total(arch) = fixed + sum over the cells' chosen edges of edge_cost(op, C, stride, H)

    ``edge_cost`` profiles one op module alone at its input shape (cached per ``(op, C, stride, H)``). ``fixed``
    (stem, cell preprocessing, NB201's residual blocks, classifier) is the full network's cost minus its edges'
    for a first architecture, measured once. In a DARTS cell the preprocessing depends only on the cell's
    position and on how many states the cells concatenate, so ``fixed`` is kept per number of concatenated
    states (normal, reduce): an architecture with a new count costs one full profile, once.

    ``warm_up()`` fills the table for a whole op list up front; after it, ``cost`` of a new architecture is a
    sum of table entries (~0.2 ms at 20 cells), of a seen one a dict lookup.

    ``family`` is "darts" (``Genotype``) or "nb201" (sample ``{'cell/op_j_i': op}`` or an arch string); for
    NB201, ``layers`` is the number of cells per stack. ``None`` sizes take the family's standard ones
    (DARTS 20 cells, 36 channels; NB201 5 cells per stack, 16 channels).
    """

    def __init__(self, family: str, layers: int | None = None, channels: int | None = None,
                 num_classes: int = 10, in_channels: int = 3, input_size: int = 32):
        self.layers, self.channels = _eval_settings(family, layers, channels)
        self.family = family
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self._edges: dict[tuple[str, int, int, int], tuple[int, int]] = {}
        self._fixed: dict[tuple, tuple[int, int]] = {}
        self._cache: dict[tuple, tuple[int, int]] = {}

    def __repr__(self) -> str:
        return (f"EvalCostModel({self.family!r}, layers={self.layers}, channels={self.channels}, "
                f"num_classes={self.num_classes}, in_channels={self.in_channels}, input_size={self.input_size})")

    def cost(self, arch: Any) -> tuple[int, int]:
        """``(params without the auxiliary head, MACs)``; cached per architecture."""
        arch = as_architecture(arch, self.family)
        key = _arch_key(arch, self.family)
        if key not in self._cache:
            self._cache[key] = self._price(arch)
        return self._cache[key]

    __call__ = cost

    def edge_cost(self, op: str, channels: int, stride: int, size: int) -> tuple[int, int]:
        """``(params, MACs)`` of one op on a ``channels`` x ``size`` x ``size`` input."""
        key = (op, channels, stride, size)
        if key not in self._edges:
            self._edges[key] = profile_model(build_op(op, channels, stride), (1, channels, size, size))
        return self._edges[key]

    # ------------------------------------------------------------ internals

    def _price(self, arch: Any) -> tuple[int, int]:
        fixed_key = self._fixed_key(arch)
        edges = self._edge_sum(arch)
        if fixed_key not in self._fixed:
            full = genotype_cost(arch, self.family, self.layers, self.channels, self.num_classes,
                                 self.in_channels, self.input_size)
            self._fixed[fixed_key] = (full[0] - edges[0], full[1] - edges[1])
            return full
        fixed = self._fixed[fixed_key]
        return fixed[0] + edges[0], fixed[1] + edges[1]

    def _fixed_key(self, arch: Any) -> tuple:
        if self.family == "darts":
            return len(arch.normal_concat), len(arch.reduce_concat)
        return ()

    def _edge_sum(self, arch: Any) -> tuple[int, int]:
        params = flops = 0
        for op, channels, stride, size in self._edges_of(arch):
            p, f = self.edge_cost(op, channels, stride, size)
            params += p
            flops += f
        return params, flops

    def _cells(self):
        """``(kind, C, H before, H after)`` of every cell, laid out as the evaluation network lays them out.

        NetworkCIFAR: cells at the reduction positions double C and halve H. NAS-Bench-201: each stack after the
        first starts with a residual block (stride-2 3x3 conv) that does the same; its cells keep C and H.
        """
        size, channels = self.input_size, self.channels
        if self.family == "nb201":
            for stack in range(3):
                if stack > 0:
                    size, channels = (size + 1) // 2, channels * 2
                for _ in range(self.layers):
                    yield "cell", channels, size, size
            return
        reductions = reduction_layers(self.layers)
        for index in range(self.layers):
            if index in reductions:
                channels *= 2
                before, size = size, (size + 1) // 2
                yield "reduce", channels, before, size
            else:
                yield "normal", channels, size, size

    def _edges_of(self, arch: Any):
        """``(op, C, stride, H)`` of every edge of every cell. A reduction cell's edges from its two inputs have
        stride 2 and see the size before the cell, edges from its intermediate nodes the size after."""
        for kind, channels, before, after in self._cells():
            if kind == "cell":
                for key in nb201_edge_keys():
                    yield arch[f"cell/op_{key}"], channels, 1, after
                continue
            for op, i in (arch.reduce if kind == "reduce" else arch.normal):
                if kind == "reduce" and i < 2:
                    yield op, channels, 2, before
                else:
                    yield op, channels, 1, after

    def warm_up(self, ops: Sequence[str] | None = None) -> "EvalCostModel":
        """Price every op of ``ops`` (default: the family's standard list) at every edge position, and the fixed
        part of the network, so that later ``cost`` calls only add up table entries."""
        ops = list(ops) if ops is not None else list(DARTS_OPS if self.family == "darts" else NB201_OPS)
        check_op_names(ops, "warm_up ops")
        slots = set()
        for kind, channels, before, after in self._cells():
            slots.add((channels, 1, after))
            if kind == "reduce":
                slots.add((channels, 2, before))
        for op in ops:
            for channels, stride, size in sorted(slots):
                self.edge_cost(op, channels, stride, size)
        if self.family == "darts":
            pairs = [(ops[0], i) for j in range(2, 6) for i in (0, 1)]
            self.cost(Genotype(normal=pairs, normal_concat=[2, 3, 4, 5], reduce=pairs, reduce_concat=[2, 3, 4, 5]))
        else:
            self.cost({f"cell/op_{key}": ops[0] for key in nb201_edge_keys()})
        return self
