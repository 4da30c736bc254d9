"""Batches of an ``ImageSet`` on a device, shuffled and augmented (crop, flip, cutout) by tensor ops on whole
batches.

Why not ``torch.utils.data.DataLoader`` with per-image PIL transforms: per-image Python work (and worker processes
to hide it) would dominate a search's run; here the loader is a handful of kernel launches, on the CPU or a GPU.

Why random numbers come from a CPU ``torch.Generator`` seeded by ``(seed, epoch)``: a search resumed from a
checkpoint at an epoch boundary must see exactly the batches the uninterrupted run saw, on any device.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from nni_offpolicy.data.imageset import ImageSet
from nni_offpolicy.data.split import mix_seed
from nni_offpolicy.errors import UserError


# --------------------------------------------------------------------------------------------------------------
# Vectorised augmentation
# --------------------------------------------------------------------------------------------------------------
def crop_with_offsets(x: torch.Tensor, pad: int, tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut each sample's HxW window at its own (top, left), equal to torchvision's pad +
    crop per image. Offsets are in the padded frame, 0..2*pad. The windows are a strided view of the padded
    batch, so the crop is one indexed copy (several times faster on CPU than gathering pixel indices)."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).contiguous()
    s = padded.stride()
    windows = padded.as_strided((b, c, 2 * pad + 1, 2 * pad + 1, h, w), (s[0], s[1], s[2], s[3], s[2], s[3]))
    batch = torch.arange(b, device=x.device)
    return windows[batch, :, tops.to(x.device, torch.long), lefts.to(x.device, torch.long)]


def flip_with_flags(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Mirror left-right exactly the samples whose flag is set."""
    flags = flags.to(x.device, torch.bool)[:, None, None, None]
    return torch.where(flags, x.flip(3), x)


def cutout_with_centres(x: torch.Tensor, length: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """DARTS' Cutout for a batch: zero rows [y-L//2, y+L//2) x cols [x-L//2, x+L//2), clipped at the border."""
    if length <= 0:
        return x
    _, _, h, w = x.shape
    ys, xs = ys.to(x.device, torch.long)[:, None], xs.to(x.device, torch.long)[:, None]
    r, c = torch.arange(h, device=x.device)[None, :], torch.arange(w, device=x.device)[None, :]
    row_in = (r >= (ys - length // 2).clamp(0, h)) & (r < (ys + length // 2).clamp(0, h))  # [B,H]
    col_in = (c >= (xs - length // 2).clamp(0, w)) & (c < (xs + length // 2).clamp(0, w))  # [B,W]
    mask = row_in[:, :, None] & col_in[:, None, :]
    return x.masked_fill(mask[:, None], 0)


def _draw_crop_flip(n: int, pad: int, flip: bool, generator: torch.Generator
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    tops = lefts = flags = None
    if pad > 0:
        tops = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        lefts = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    if flip:
        flags = torch.rand(n, generator=generator) < 0.5
    return tops, lefts, flags


# --------------------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------------------
class BatchLoader:
    """Batches of an ImageSet on a device; shuffling and augmentation depend only on (seed, epoch), so a run
    resumed at an epoch boundary sees exactly the batches the uninterrupted run saw."""

    def __init__(self, data: ImageSet, batch_size: int, device: str | torch.device = "cpu", train: bool = True,
                 cutout: int = 0, drop_last: bool | None = None, seed: int = 0) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch size {batch_size!r} is not allowed: it must be a positive integer")
        if not isinstance(cutout, int) or cutout < 0:
            raise UserError(f"cutout length {cutout!r} is not allowed: it must be 0 (off) or a positive integer")
        self.data = data
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.cutout = cutout if train else 0
        self.drop_last = train if drop_last is None else drop_last
        self.seed = seed
        self.current_epoch = 0
        self.images = data.images.to(self.device)  # once: the "GPU-resident loader"
        self.labels = data.labels.to(self.device)
        mean = torch.tensor(data.mean, dtype=torch.float32)[None, :, None, None]
        std = torch.tensor(data.std, dtype=torch.float32)[None, :, None, None]
        self._scale, self._shift = (1.0 / (255.0 * std)).to(self.device), (mean / std).to(self.device)
        if len(self) == 0:
            raise UserError(f"batch size {batch_size} is larger than the {len(data)} images of {data.name} with "
                            f"drop_last: use a batch size of at most {len(data)}")

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """All batches of one epoch; a pure function of (data, seed, epoch).

        Every random number of the epoch (order, crop offsets, flips, cutout centres) is drawn up front, in the
        order the batches use them, and reaches the device in one copy: a copy from host memory per batch would
        make the host wait for the GPU at every step."""
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        n, size = len(self.data), self.batch_size
        order = torch.randperm(n, generator=generator) if self.train else torch.arange(n)
        sizes = [min(size, n - i * size) for i in range(len(self))]
        draws = [self._draw(k, generator) for k in sizes] if self.train else []
        used = sum(sizes)
        params = torch.cat(draws, dim=1) if draws else torch.zeros(5, 0, dtype=torch.long)  # [5, used]
        blob = torch.cat([order[:used], params.flatten()]).to(self.device)
        order, params = blob[:used], (blob[used:].view(5, used) if draws else None)
        for i, k in enumerate(sizes):
            start = i * size
            yield self._batch(order[start:start + k], None if params is None else params[:, start:start + k])

    def _draw(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """One batch's random numbers as rows (top, left, flip, cutout y, cutout x), drawn in the order the
        per-batch augmentation functions draw them; rows of an augmentation that is off stay 0 and draw nothing."""
        rows = torch.zeros(5, k, dtype=torch.long)
        tops, lefts, flags = _draw_crop_flip(k, self.data.pad, self.data.flip, generator)
        if tops is not None:
            rows[0], rows[1] = tops, lefts
        if flags is not None:
            rows[2] = flags
        if self.cutout:
            h, w = self.data.images.shape[2:]
            rows[3] = torch.randint(0, h, (k,), generator=generator)
            rows[4] = torch.randint(0, w, (k,), generator=generator)
        return rows

    def _batch(self, idx: torch.Tensor, params: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        if params is not None:
            if self.data.pad > 0:
                x = crop_with_offsets(x, self.data.pad, params[0], params[1])
            if self.data.flip:
                x = flip_with_flags(x, params[2])
        x = x.float().mul_(self._scale).sub_(self._shift)
        if params is not None and self.cutout:  # after normalising: the square is the mean, as in DARTS
            x = cutout_with_centres(x, self.cutout, params[3], params[4])
        return x, self.labels[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The next epoch; the counter advances when iteration starts, so a loop that breaks early still moves
        on to a fresh epoch next time."""
        batches = self.epoch(self.current_epoch)
        self.current_epoch += 1
        return batches
