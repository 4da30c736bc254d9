"""Benchmark: PyTorch's NCHW CPU max-pool against ``search_spaces.ops.MaxPool2d`` (channels-last on a CPU), on the
feature-map shapes of the CPU proxy searches (reward batches of 256 images, 8-32 channels), one thread. Prints
milliseconds per forward and per forward+backward, and checks that both give the same values and gradients.

    .venv/bin/python scripts/pool_bench.py
"""
from __future__ import annotations

import time

import torch
from torch import nn

from search_spaces.ops import MaxPool2d


def timed(fn, repeats: int = 5) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{'shape':>22} {'stride':>6} {'native fwd':>11} {'ours fwd':>9} {'native f+b':>11} {'ours f+b':>9}")
    for shape in [(256, 8, 32, 32), (256, 16, 32, 32), (256, 16, 16, 16), (256, 32, 16, 16), (64, 8, 32, 32)]:
        for stride in (1, 2):
            x = torch.randn(*shape, requires_grad=True)
            native, ours = nn.MaxPool2d(3, stride, 1), MaxPool2d(3, stride, 1)
            g = torch.randn_like(native(x))
            grads = [torch.autograd.grad((pool(x) * g).sum(), x)[0] for pool in (native, ours)]
            assert torch.equal(native(x), ours(x)) and torch.equal(*grads), "values or gradients differ"
            row = [timed(lambda: native(x)), timed(lambda: ours(x)),
                   timed(lambda: (native(x) * g).sum().backward()), timed(lambda: (ours(x) * g).sum().backward())]
            print(f"{str(shape):>22} {stride:>6} " + " ".join(f"{v:>{w}.1f}" for v, w in zip(row, (11, 9, 11, 9))))


if __name__ == "__main__":
    main()
