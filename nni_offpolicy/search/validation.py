"""The validation half on the device: the batches rewards are scored on and evaluations count.

Normalised once, in the model's memory layout, so a controller step costs forwards only. ``search_split`` hands
the half over class-mixed, so each batch holds the split's classes in proportion. Rewards cycle through the
batches, one per controller step; evaluations read the first ``eval_images`` only (a CPU proxy allows 512).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nni_offpolicy.data.batches import BatchLoader
from nni_offpolicy.data.imageset import ImageSet
from nni_offpolicy.search.accel import Accel
from nni_offpolicy.settings import SearchSettings


class Validation:
    def __init__(self, valid_set: ImageSet, settings: SearchSettings, device: torch.device, accel: Accel,
                 replicas: Any):
        loader = BatchLoader(valid_set, settings.reward_batch, device, train=False, drop_last=False)
        self.batches = [(accel.prepare_input(x), y) for x, y in loader.epoch(0)]
        self.eval_batches = (len(self.batches) if settings.eval_images is None else
                             min(len(self.batches), -(-settings.eval_images // settings.reward_batch)))
        self.accel, self.replicas, self.device = accel, replicas, device

    def accuracy(self, supernet: nn.Module, batches: int | None = None) -> float:
        """% correct of ``supernet`` as it is set (a path or a mixture) on the first ``batches`` (None: the
        ``eval_images``' batches), summed over replicas."""
        correct = torch.zeros((), device=self.device)
        total = 0
        with torch.no_grad():
            for batch in self.batches[: batches or self.eval_batches]:
                x, y = self.replicas.shard(*batch)
                correct += (self.accel.forward(supernet, x).argmax(1) == y).sum()
                total += batch[1].shape[0]
        return 100.0 * float(self.replicas.sum(correct)) / max(total, 1)

    def sample_accuracies(self, supernet: Any, samples: list[dict], update: int) -> tuple[list[float], tuple]:
        """Each path's accuracy (a fraction) on the batch of controller update ``update`` (cycled), and that
        batch as this replica scored it; one all-reduce and one host sync for all samples."""
        x_all, y_all = self.batches[update % len(self.batches)]
        x, y = self.replicas.shard(x_all, y_all)
        hits = []
        with torch.no_grad():
            for sample in samples:
                supernet.set_path(sample)
                hits.append((self.accel.forward(supernet, x).argmax(1) == y).sum().float())
        return (self.replicas.sum(torch.stack(hits)) / y_all.shape[0]).cpu().tolist(), (x, y)
