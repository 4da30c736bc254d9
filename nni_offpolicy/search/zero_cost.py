"""Zero-cost scores: how promising a cell is, from one forward pass of its untrained evaluation network.

Why a reward term: a weight-sharing supernet trained for minutes ranks NAS-Bench-201 cells poorly, and early in
training it prefers parameter-free ops because they need no training (the lab log's all-pooling runs). NASWOT
(Mellor et al., "Neural Architecture Search without Training", ICML 2021) scores a network at initialisation by
how differently its ReLUs split a batch of images: for each image the binary code of which units are active, the
kernel K[i, j] = number of units on which images i and j agree, and the score log|det K|. Networks whose codes
tell the images apart train well. It needs no labels and no training, and it is non-differentiable: exactly
what the controller's reward takes (R = acc x (score / target) ^ w, see ``rewards.py``).

Each cell's score is computed once per search with weights drawn from a seed derived from the cell itself, so a
cell scores the same whenever it is sampled and a resumed search gives the same rewards.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from nni_offpolicy.profiling import build_eval_network

ZERO_COST_SCORES = ("naswot",)


def naswot_score(network: nn.Module, images: torch.Tensor) -> float:
    """log|det K| of the ReLU-code agreement kernel over ``images``, divided by the batch size (so a score does
    not grow with the number of images and a target of ~1-10 is natural)."""
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # agreements = both on + both off = 2 c_i.c_j - |c_i| - |c_j| + units: one float32 product instead of two
        # float64 ones (a third of a DARTS cell's scoring time), exact while a layer has < 2^24 units (counts of
        # 0/1 products are integers float32 holds exactly), so every score is the same to the last bit
        codes = (output.detach().reshape(n, -1) > 0).to(torch.float32)
        units = codes.shape[1]
        if units >= 2 ** 24:
            codes64 = codes.double()
            kernel.add_(codes64 @ codes64.t()).add_((1.0 - codes64) @ (1.0 - codes64).t())
            return
        both_on = (codes @ codes.t()).double()
        on = both_on.diagonal().clone()
        kernel.add_(2.0 * both_on - on[:, None] - on[None, :] + units)

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            network.train()  # batch statistics, as in the paper: an untrained net has no running statistics
            network(images)
    finally:
        for handle in handles:
            handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    if not bool(sign > 0) or not torch.isfinite(logdet):
        return 0.0  # a singular kernel: images the network cannot tell apart at all
    return float(logdet) / n


class ZeroCostScorer:
    """Scores architectures of one family at a fixed network size on a fixed batch; one score per cell."""

    def __init__(self, family: str, images: torch.Tensor, layers: int, channels: int, num_classes: int,
                 score: str = "naswot"):
        if score not in ZERO_COST_SCORES:
            raise ValueError(f"unknown zero-cost score {score!r}; allowed: {', '.join(ZERO_COST_SCORES)}")
        self.family, self.layers, self.channels, self.num_classes = family, layers, channels, num_classes
        self.images = images.detach().float().cpu().contiguous()
        self._cache: dict[str, float] = {}

    def __call__(self, arch: Any, key: str) -> float:
        if key not in self._cache:
            seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "big")
            with torch.random.fork_rng(devices=[]):  # never moves the search's own random stream
                torch.manual_seed(seed)
                network = build_eval_network(arch, self.family, layers=self.layers, channels=self.channels,
                                             num_classes=self.num_classes, in_channels=self.images.shape[1],
                                             input_size=self.images.shape[2])
                self._cache[key] = naswot_score(network, self.images)
        return self._cache[key]
