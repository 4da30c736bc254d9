"""A dataset split held whole in memory as uint8 tensors (``ImageSet``), the names of the splits, and the exact
per-channel statistics it is normalised by.

Why whole and uint8: a NAS search touches every CIFAR-10 image hundreds of times with tiny networks, so per-image
Python work dominates the run; one uint8 tensor (184 MB for all of CIFAR-10) can sit on the training device and be
cut and augmented a whole batch at once (``batches.py``). Apart as the record every data module reads or builds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

SPLITS = ("train", "test")


@dataclass
class ImageSet:
    """A whole split in memory as uint8, so batches are cut and augmented by tensor ops, never per-image PIL."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    classes: list[str]
    mean: tuple[float, ...]  # per-channel mean in [0,1] units, for normalisation
    std: tuple[float, ...]
    pad: int  # random-crop padding for augmentation
    flip: bool  # horizontal flip in augmentation
    name: str

    def __post_init__(self) -> None:
        # Programming errors, not user errors: every loader here builds these, so fail loudly and early.
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")
        if not len(self.mean) == len(self.std) == self.images.shape[1]:
            raise ValueError(f"mean/std need {self.images.shape[1]} channels, got {len(self.mean)}/{len(self.std)}")

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """Same dataset, fewer images: mean/std stay those of the parent split, so a search's train and
        valid halves are normalised identically."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, images=self.images[indices], labels=self.labels[indices], classes=list(self.classes))

    def __repr__(self) -> str:
        return (f"ImageSet({self.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, "
                f"classes={self.num_classes})")


def channel_stats(images: np.ndarray | torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std in [0,1] units of uint8 [N,C,H,W], from a 256-bin histogram per channel, so
    even all of CIFAR-10 needs no float copy of the pixels."""
    arr = images.numpy() if isinstance(images, torch.Tensor) else images
    means, stds = [], []
    values = np.arange(256, dtype=np.float64) / 255.0
    for c in range(arr.shape[1]):
        hist = np.bincount(np.ascontiguousarray(arr[:, c]).reshape(-1), minlength=256).astype(np.float64)
        total = hist.sum()
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(max(math.sqrt(var), 1e-6))  # a constant channel must not divide by zero
    return tuple(means), tuple(stds)
