"""Candidate operations of the DARTS family, built by name (timm-style registry).

Every op maps a tensor of ``C`` channels to ``C`` channels; with ``stride=2`` it halves the spatial size.
Plain ``torch.nn`` only: thop prices them, TorchScript/compile can trace them, and the NNI space wraps them in
``LayerChoice`` without knowing what they are.
"""
from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Register a factory ``(channels, stride, affine) -> nn.Module`` under ``name``."""

    def wrap(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise ValueError(f"op {name!r} registered twice")
        OPS[name] = factory
        return factory

    return wrap


class UnknownOpError(ValueError):
    """An op name that is not in the registry."""


def check_op_names(names: list[str], where: str = "op list") -> None:
    """Fail with one line naming the bad value and the allowed ones."""
    for name in names:
        if name not in OPS:
            raise UnknownOpError(f"unknown op {name!r} in {where}; allowed: {', '.join(sorted(OPS))}")


EdgeOps = Union[Sequence[str], Mapping[str, Sequence[str]]]
"""One op list for every edge, or ``{"j_i": [ops]}`` with a list per edge."""


def expand_ops(ops: EdgeOps, keys: Sequence[str], where: str) -> dict[str, list[str]]:
    """Normalise ``ops`` to one list per edge of ``keys`` (in that order) and validate keys and names.

    Every family's spaces and searches expand their op lists here, so a rule (no empty list, no op listed
    twice: a duplicate would be two ``LayerChoice`` candidates of one name) holds for all of them.
    """
    keys = list(keys)
    if isinstance(ops, Mapping):
        missing = [k for k in keys if k not in ops]
        extra = [k for k in ops if k not in keys]
        if missing or extra:
            raise ValueError(f"{where}: per-edge op lists must have exactly the keys {keys}; "
                             f"missing {missing}, unexpected {extra}")
        result = {k: list(ops[k]) for k in keys}
    else:
        result = {k: list(ops) for k in keys}
    for key, names in result.items():
        if not names:
            raise ValueError(f"{where}: edge {key} has an empty op list")
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: edge {key} lists an op twice: {names}")
        check_op_names(names, f"{where} edge {key}")
    return result


def build_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """A name builds a module."""
    check_op_names([name])
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return OPS[name](channels, stride, affine)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convolutions, as in DARTS (the first carries the stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Conv1xNNx1(nn.Sequential):
    """A 1xk convolution then a kx1 one (the lab log's conv_3x1_1x3), each carrying half of the stride."""

    def __init__(self, channels: int, kernel: int, stride: int, affine: bool = True):
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(channels, channels, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            nn.BatchNorm2d(channels, affine=affine),
        )


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the output shape (kept so that mixed ops can weigh 'no edge')."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1x1 convolutions (DARTS); odd sizes are padded."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools a CPU batch in channels-last layout: the same values and gradients (a max is
    exact), 4-9x faster forward and up to 3x faster forward+backward than PyTorch's NCHW CPU kernel on the
    supernets' small-channel maps (scripts/pool_bench.py), where that kernel had cost a CPU proxy search more
    time than all its convolutions together.
    On other devices, or another layout, PyTorch's own kernel runs. thop counts a max-pool as 0 MACs either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


def _pool(kind: str, kernel: int) -> OpFactory:
    def factory(channels: int, stride: int, affine: bool) -> nn.Module:
        if kind == "max":
            return MaxPool2d(kernel, stride=stride, padding=kernel // 2)
        return nn.AvgPool2d(kernel, stride=stride, padding=kernel // 2, count_include_pad=False)

    return factory


register_op("none")(lambda c, s, a: Zero(s))
register_op("max_pool_3x3")(_pool("max", 3))
register_op("avg_pool_3x3")(_pool("avg", 3))
register_op("skip_connect")(lambda c, s, a: Identity() if s == 1 else FactorizedReduce(c, c, a))
register_op("sep_conv_3x3")(lambda c, s, a: SepConv(c, c, 3, s, 1, a))
register_op("sep_conv_5x5")(lambda c, s, a: SepConv(c, c, 5, s, 2, a))
register_op("dil_conv_3x3")(lambda c, s, a: DilConv(c, c, 3, s, 2, 2, a))
register_op("dil_conv_5x5")(lambda c, s, a: DilConv(c, c, 5, s, 4, 2, a))
# The lab log's extended set.
register_op("conv_1x1")(lambda c, s, a: ReLUConvBN(c, c, 1, s, 0, a))
register_op("conv_3x3")(lambda c, s, a: ReLUConvBN(c, c, 3, s, 1, a))
register_op("conv_3x1_1x3")(lambda c, s, a: Conv1xNNx1(c, 3, s, a))
register_op("max_pool_5x5")(_pool("max", 5))
register_op("max_pool_7x7")(_pool("max", 7))
# NAS-Bench-201's convolutions are ReLU-Conv-BN.
register_op("nor_conv_1x1")(lambda c, s, a: ReLUConvBN(c, c, 1, s, 0, a))
register_op("nor_conv_3x3")(lambda c, s, a: ReLUConvBN(c, c, 3, s, 1, a))

DARTS_OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5"]
EXTRA_OPS = ["conv_1x1", "conv_3x3", "conv_3x1_1x3", "max_pool_5x5", "max_pool_7x7"]
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def is_pool(name: str) -> bool:
    return "pool" in name


@functools.lru_cache(maxsize=None)
def is_parameter_free(name: str) -> bool:
    """Whether the op, as it sits in a supernet (stride 1, BN without affine), has no weights to train: the ops a
    weight-sharing search favours early because they need no training (the collapse to none/skip/pool cells)."""
    return sum(p.numel() for p in build_op(name, 4, 1, affine=False).parameters()) == 0
