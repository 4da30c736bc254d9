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

from search_spaces.families import Family, as_family
from search_spaces.ops import build_op, check_op_names

with warnings.catch_warnings():  # thop 0.1.1 imports distutils
    warnings.simplefilter("ignore")
    import thop

logger = logging.getLogger(__name__)

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

def as_architecture(arch: Any, family: Family | str) -> Any:
    """Normalise and validate: a ``Genotype`` for "darts", a sample ``{'cell/op_j_i': op}`` for "nb201".

    Also accepted: a genotype dict (``genotype_to_dict``) or an NNI sample of the DARTS space
    (``normal/op_2_0``, ``normal/input_2``, ...); an NB201 arch string ``|op~0|+...``.
    """
    return as_family(family).normalise(arch)


def build_eval_network(arch: Any, family: Family | str, layers: int | None = None, channels: int | None = None,
                       num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    """The evaluation network: ``NetworkCIFAR`` (``layers`` cells) or ``NB201EvalNetwork`` (``layers`` cells
    per stack), by the family's one builder (``Family.build_eval_network``, which retraining uses too).
    ``None`` sizes take the family's standard ones (``Family.eval_shape``)."""
    return as_family(family).build_eval_network(arch, layers, channels, num_classes, in_channels, input_size)


def genotype_cost(arch: Any, family: Family | str, layers: int | None = None, channels: int | None = None,
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

    def __init__(self, family: Family | str, layers: int | None = None, channels: int | None = None,
                 num_classes: int = 10, in_channels: int = 3, input_size: int = 32):
        self.spec = as_family(family)
        self.layers, self.channels = self.spec.eval_shape(layers, channels)
        self.family = family
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self._edges: dict[tuple[str, int, int, int], tuple[int, int]] = {}
        self._fixed: dict[tuple, tuple[int, int]] = {}
        self._cache: dict[tuple, tuple[int, int]] = {}

    def __repr__(self) -> str:
        return (f"EvalCostModel({self.spec.name!r}, layers={self.layers}, channels={self.channels}, "
                f"num_classes={self.num_classes}, in_channels={self.in_channels}, input_size={self.input_size})")

    def cost(self, arch: Any) -> tuple[int, int]:
        """``(params without the auxiliary head, MACs)``; cached per architecture."""
        arch = self.spec.normalise(arch)
        key = self.spec.cost_key(arch)
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

    def op_params(self, op: str) -> int:
        """Parameters of ``op`` on a stride-1 edge of the network's first cell: how ops compare in price (the
        order is the same at every edge, only the scale grows with the channels)."""
        kind, channels, before, after = next(iter(self._cells()))
        return self.edge_cost(op, channels, 1, after)[0]

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
        return self.spec.cost_shape(arch)

    def _edge_sum(self, arch: Any) -> tuple[int, int]:
        params = flops = 0
        for op, channels, stride, size in self._edges_of(arch):
            p, f = self.edge_cost(op, channels, stride, size)
            params += p
            flops += f
        return params, flops

    def _cells(self):
        """``(kind, C, H before, H after)`` of every cell, laid out as the evaluation network lays them out
        (``Family.eval_cells``)."""
        return self.spec.eval_cells(self.layers, self.channels, self.input_size)

    def _edges_of(self, arch: Any):
        """``(op, C, stride, H)`` of every edge of every cell. A stride-2 edge (a DARTS reduction cell's edges
        from its two inputs) sees the size before the cell, the others the size after."""
        for kind, channels, before, after in self._cells():
            for op, stride in self.spec.cell_edges(arch, kind):
                yield op, channels, stride, before if stride == 2 else after

    def warm_up(self, ops: Sequence[str] | None = None) -> "EvalCostModel":
        """Price every op of ``ops`` (default: the family's standard list) at every edge position, and the fixed
        part of the network, so that later ``cost`` calls only add up table entries."""
        ops = list(ops) if ops is not None else list(self.spec.default_ops)
        check_op_names(ops, "warm_up ops")
        slots = set()
        for kind, channels, before, after in self._cells():
            slots.add((channels, 1, after))
            if kind in self.spec.strided_kinds:
                slots.add((channels, 2, before))
        for op in ops:
            for channels, stride, size in sorted(slots):
                self.edge_cost(op, channels, stride, size)
        self.cost(self.spec.uniform_arch(ops[0]))
        return self
