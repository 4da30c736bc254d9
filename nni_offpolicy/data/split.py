"""The search's split: the weight-training and architecture-validation halves of a training set, both in a
class-mixed order, and the hash-based permutations they rest on.

Why hashes, not an RNG: a split must be a pure function of its inputs on any machine, OS, numpy or torch version,
so a resumed or re-run search trains and validates on the same images; the batches' per-epoch seeds
(``mix_seed``) come from the same hash.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nni_offpolicy.data.imageset import ImageSet
from nni_offpolicy.errors import UserError

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array; written out so a split never depends on a library's RNG stream."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stable_permutation(n: int, seed: int) -> np.ndarray:
    """A permutation of ``range(n)`` that is a pure function of ``(n, seed)``: the same on any machine, OS, numpy
    or torch version, because it sorts indices by a fixed integer hash instead of drawing from an RNG."""
    key = _splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))[0]
    hashes = _splitmix64(np.arange(n, dtype=np.uint64) ^ key)
    return np.argsort(hashes, kind="stable")


def mix_seed(seed: int, epoch: int) -> int:
    """One torch seed per (seed, epoch); hashed so neighbouring epochs/seeds get unrelated streams."""
    h = _splitmix64(np.array([(int(seed) * 0x9E3779B97F4A7C15 + int(epoch)) & _MASK64], dtype=np.uint64))[0]
    return int(h) & ((1 << 63) - 1)


def train_half_size(n: int, portion: float) -> int:
    """How many of ``n`` images the search split's weight-training half holds (the rest validate)."""
    return int(math.floor(portion * n))


def split_indices(n: int, portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = stable_permutation(n, seed)
    cut = train_half_size(n, portion)
    first, second = np.sort(perm[:cut]), np.sort(perm[cut:])
    return torch.from_numpy(first.astype(np.int64)), torch.from_numpy(second.astype(np.int64))


def class_mixed_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed order of ``labels``' positions in which every run of consecutive images holds each class in about
    its share of the whole (within one image per class for any window).

    Why: validation batches are cut in order without shuffling (rewards cycle through them; a resumed search must
    see the same ones), and datasets are often stored class by class (an ImageFolder archive decodes 0...0, 1...1).
    In that order a reward batch held one class, so a controller learned "how often this path says class k", not
    accuracy. Here class c's images take the evenly spaced slots (k + u_c) / n_c, k = 0..n_c-1, with a per-class
    offset u_c, and all images are sorted by slot: a stratified interleave. Within a class the images keep a
    seeded hash order, so which airplanes come first does not depend on how the files were named. A pure
    function of ``(labels, seed)``, like the split itself."""
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    n = int(labels.numel())
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    lab = labels.numpy()
    shuffled = stable_permutation(n, seed)  # ties inside a class broken by a hash, not by storage order
    slots = np.empty(n, dtype=np.float64)
    for c in np.unique(lab):
        members = shuffled[lab[shuffled] == c]  # class c's positions, in hash order
        offset = float(_splitmix64(np.array([int(c) ^ (int(seed) << 20)], dtype=np.uint64))[0]) / 2.0 ** 64
        slots[members] = (np.arange(len(members), dtype=np.float64) + offset) / len(members)
    order = np.lexsort((np.argsort(shuffled, kind="stable"), slots))  # by slot, then by hash rank
    return torch.from_numpy(order.astype(np.int64))


def search_split(data: ImageSet, portion: float = 0.5, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Split a training set into the search's weight-training and architecture-validation halves (P-DARTS uses
    25k/25k of CIFAR-10). A pure function of ``(len(data), labels, portion, seed)``, so a resumed or re-run
    search, on any machine, trains and validates on the same images. Both halves come out in
    ``class_mixed_order``: the validation half is batched in order, and its batches must be representative of the
    split whatever order the dataset was stored in."""
    if not isinstance(portion, (int, float)) or not 0.0 < float(portion) < 1.0:
        raise UserError(f"train portion {portion!r} is not allowed: it must be strictly between 0 and 1")
    first, second = split_indices(len(data), float(portion), seed)
    if len(first) == 0 or len(second) == 0:
        raise UserError(f"train portion {portion} of {len(data)} images leaves one side empty: "
                        f"use a portion between {1 / len(data):.4g} and {1 - 1 / len(data):.4g}")
    first = first[class_mixed_order(data.labels[first], seed)]
    second = second[class_mixed_order(data.labels[second], seed)]
    return data.subset(first), data.subset(second)
