"""How a search computes on its device: precision, memory layout, compilation, and no needless host waits.

Why a module of its own: the supernet, the loss and the schedule must stay exactly what they are (same batches,
same samples, same steps), so every speed-up is a property of *how* a forward runs, decided once from three
settings and the device. The search loop only wraps its forwards (``Accel.forward``) and prepares each stage's
supernet (``Accel.prepare``).

- precision: bf16 autocast (no loss scaling needed: bf16 has fp32's exponent range); logits come back as fp32 so
  the loss and the accuracies are computed as before.
- channels_last: NHWC weights and inputs, the layout cuDNN's bf16/tensor-core convolutions want.
- compile ``ops``: ``torch.compile`` of each candidate op module, never of the supernet as a whole: which ops run
  (path/mixed, the active op, the chosen inputs) is Python branching that changes every step. Modules of one class
  and shape share one graph; each stage builds fresh modules (new depth, new shapes), so it compiles once per stage.
- ``NonFiniteWatch``: the NaN guard without a host sync per step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Iterable

import torch
from torch import nn

# Distinct graphs a stage's ops need: ~8 op classes x 3 resolutions x stride 1/2 x grad/no-grad x batch sizes.
# torch's default (8 per code object) would silently fall back to eager for most of them.
COMPILE_RECOMPILE_LIMIT = 512
COMPILE_BACKEND = "inductor"  # tests switch to "eager": the wiring is checked without paying for a compiler
# Parameter-free ops whose forward is one trivial tensor op: compiling them only adds guard checks.
NOT_COMPILED = ("Identity", "Zero")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA (tensor cores) and fp32 elsewhere (CPU bf16 is slower on most CPUs)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_channels_last(channels_last: str, device: torch.device) -> bool:
    if channels_last == "auto":
        return device.type == "cuda"
    return channels_last == "on"


@dataclass(frozen=True)
class Accel:
    """The resolved way a run computes; built from settings by ``Accel.from_settings``."""

    device: torch.device
    precision: str = "fp32"  # fp32 | bf16
    channels_last: bool = False
    compile: str = "off"  # off | ops

    @classmethod
    def from_settings(cls, settings, device: torch.device) -> "Accel":
        return cls(device=device, precision=resolve_precision(settings.precision, device),
                   channels_last=resolve_channels_last(settings.channels_last, device), compile=settings.compile)

    def autocast(self) -> ContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Batches in the model's memory layout (a no-op when they already are, e.g. the cached valid batches)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, model: nn.Module, ops: Iterable[nn.Module] = ()) -> nn.Module:
        """Layout of ``model``'s weights, and compilation of each module in ``ops`` (a stage's candidate ops).
        In place: parameter names and state dicts stay as they were, so checkpoints do not depend on it."""
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are fixed within a stage: pick the fastest kernels once
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile == "ops":
            from torch._dynamo import config

            config.recompile_limit = max(config.recompile_limit, COMPILE_RECOMPILE_LIMIT)
            config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 8 * COMPILE_RECOMPILE_LIMIT)
            for op in ops:
                if type(op).__name__ not in NOT_COMPILED:
                    op.compile(dynamic=False, backend=COMPILE_BACKEND)
        return model

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` in this run's layout and precision; logits as fp32, so losses and argmaxes are as before."""
        with self.autocast():
            out = model(self.prepare_input(x))
        return out.float()


class NonFiniteWatch:
    """The first step whose loss was NaN/inf, kept on the device: ``observe`` queues three tiny kernels and never
    waits for the GPU; ``first`` does (call it where the loop syncs anyway: controller steps, epoch end)."""

    def __init__(self, device: torch.device):
        self._step = torch.full((), -1, dtype=torch.long, device=device)
        self._value = torch.zeros((), dtype=torch.float32, device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        new = ~torch.isfinite(loss) & (self._step < 0)
        self._step = torch.where(new, step, self._step)
        self._value = torch.where(new, loss, self._value)

    def first(self) -> tuple[int, float] | None:
        """(step, loss) of the first non-finite loss observed, or None."""
        step = int(self._step)
        return None if step < 0 else (step, float(self._value))


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak memory torch allocated (10^9 bytes) since the last reset; None off CUDA (nothing comparable)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1e9
