"""Which dataset a ``--dataset`` spec names (``DATASETS_HELP``), loaded whole as an ``ImageSet`` or checked
without loading: the embedded digits, torchvision's CIFAR files, the local CIFAR-10 JPEG archive and image folders
(decoded by ``archive.py``), resized to one image size on request. The one entry point the search, retrain and
benchmarks load data through.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from nni_offpolicy.data.archive import check_imagefolder, default_root, load_imagefolder
from nni_offpolicy.data.imageset import SPLITS, ImageSet, channel_stats
from nni_offpolicy.data.split import split_indices
from nni_offpolicy.errors import UserError

DATASETS_HELP = (
    "digits (sklearn 8x8, embedded) | cifar10 | cifar100 (torchvision files in the data dir, or --download) | "
    "imagefolder:PATH (directory or .tar/.tar.gz/.tgz in ImageFolder layout, optional train/ and test/) | "
    "cifar10-jpeg (shared/data/cifar10-jpeg.tar.gz next to or above the working directory or the repository)"
)
CIFAR10_ARCHIVE = "cifar10-jpeg.tar.gz"

# DARTS / P-DARTS constants (utils.py of both repositories).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def load_dataset(spec: str, split: str = "train", data_dir: str | None = None, download: bool = False,
                 cache_dir: str | None = None, image_size: int | None = None) -> ImageSet:
    """One entry point for every dataset the CLI accepts (see ``DATASETS_HELP``).

    ``image_size=N`` makes every image NxN: an image folder's images are resized as they are decoded (shorter
    side to N, then the centre NxN; cached apart from the unresized copy), so a folder of mixed sizes loads; an
    embedded or torchvision set is resized as a whole. None keeps the images' own size, which must then be one
    size for all (the first image's)."""
    if split not in SPLITS:
        raise UserError(f"split {split!r} is not allowed: use one of {', '.join(SPLITS)}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise UserError(f"image_size {image_size!r} is not allowed: use a positive number of pixels N (images "
                        f"become NxN) or none (their own size)")
    if spec.startswith("imagefolder:") and spec[len("imagefolder:"):]:
        return load_imagefolder(spec[len("imagefolder:"):], split, cache_dir, image_size)
    if spec == "cifar10-jpeg":
        return load_imagefolder(str(local_cifar10_archive()), split, cache_dir, image_size)
    if spec == "digits":
        return resize_set(_load_digits(split), image_size)
    if spec in ("cifar10", "cifar100"):
        return resize_set(_load_cifar(spec, split, data_dir, download), image_size)
    raise UserError(f"dataset {spec!r} is not allowed: use {DATASETS_HELP}")


def check_dataset(spec: str, splits: Iterable[str] = SPLITS, data_dir: str | None = None,
                  download: bool = False) -> None:
    """Raise the ``UserError`` that ``load_dataset`` would for each of ``splits``, without loading anything: the
    files are there (torchvision's CIFAR files unless ``download``; an image folder or archive), an image folder has
    the split (its cache says so, or its file names: train/ and test/ folders) and two classes or more. What only
    decoding can tell (a broken image, mixed sizes) is left to the load. For a harness that loads a dataset only
    after hours of other work (``ablate --retrain-epochs``)."""
    splits = list(splits)
    for split in splits:
        if split not in SPLITS:
            raise UserError(f"split {split!r} is not allowed: use one of {', '.join(SPLITS)}")
    if spec.startswith("imagefolder:") and spec[len("imagefolder:"):]:
        check_imagefolder(spec[len("imagefolder:"):], splits)
    elif spec == "cifar10-jpeg":
        check_imagefolder(str(local_cifar10_archive()), splits)
    elif spec in ("cifar10", "cifar100"):
        if download:
            return  # fetched when loaded; whether the network answers is not known before
        from torchvision import datasets

        root = Path(data_dir).expanduser() if data_dir else default_root() / "data"
        cls = datasets.CIFAR10 if spec == "cifar10" else datasets.CIFAR100
        names = [name for name, _ in (cls.train_list if "train" in splits else [])
                 + (cls.test_list if "test" in splits else [])] + [cls.meta["filename"]]
        missing = [name for name in names if not (root / cls.base_folder / name).is_file()]
        if missing:
            raise UserError(f"{spec} files not found under {root}: pass --download (needs internet) or use "
                            f"imagefolder:PATH with a local copy ({root / cls.base_folder / missing[0]} is missing)")
    elif spec != "digits":
        raise UserError(f"dataset {spec!r} is not allowed: use {DATASETS_HELP}")


def resize_set(data: ImageSet, image_size: int | None) -> ImageSet:
    """``data`` with every image NxN (bilinear, antialiased when shrinking), its crop padding scaled as an image
    folder's is (an eighth of the side); unchanged when ``image_size`` is None or already the size."""
    h, w = data.images.shape[2:]
    if image_size is None or (h, w) == (image_size, image_size):
        return data
    resized = F.interpolate(data.images.float(), size=(image_size, image_size), mode="bilinear",
                            align_corners=False, antialias=True)
    images = resized.round_().clamp_(0, 255).to(torch.uint8)
    return replace(data, images=images, pad=max(1, image_size // 8))


def local_cifar10_archive(roots: Iterable[Path] | None = None) -> Path:
    """The CIFAR-10 JPEG archive in ``shared/data`` next to or above the working directory or the repository
    (where these machines keep it), so presets and benchmarks run on it without a path; a clear error naming the
    places looked at otherwise."""
    repo = Path(__file__).resolve().parents[2]  # nni_offpolicy/data/datasets.py -> the repository
    roots = list(roots) if roots is not None else [Path.cwd(), Path.cwd().parent, repo, repo.parent]
    tried = list(dict.fromkeys(root / "shared" / "data" / CIFAR10_ARCHIVE for root in roots))
    for path in tried:
        if path.exists():
            return path
    raise UserError(f"no CIFAR-10 archive found (looked for {', '.join(str(p) for p in tried)}); pass "
                    f"--dataset imagefolder:PATH/{CIFAR10_ARCHIVE} (or cifar10 with --set data_dir=DIR)")


def _load_digits(split: str) -> ImageSet:
    """UCI digits need no download, so the whole pipeline can be demonstrated offline; they ship without a test
    split, so we fix a seeded 80/20 one."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images.astype(np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels[:, None, :, :].copy())
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = split_indices(len(labels), 0.8, seed=0)
    mean, std = channel_stats(images[train_idx])
    idx = train_idx if split == "train" else test_idx
    return ImageSet(images=images[idx].contiguous(), labels=labels[idx].contiguous(),
                    classes=[str(int(c)) for c in bunch.target_names], mean=mean, std=std, pad=1, flip=False,
                    name="digits")


def _load_cifar(spec: str, split: str, data_dir: str | None, download: bool) -> ImageSet:
    """torchvision's own files, so numbers are comparable with the papers; no internet here, so a missing
    download is a user error that names the offline alternative."""
    from torchvision import datasets

    root = Path(data_dir).expanduser() if data_dir else default_root() / "data"
    cls, mean, std = ((datasets.CIFAR10, CIFAR10_MEAN, CIFAR10_STD) if spec == "cifar10"
                      else (datasets.CIFAR100, CIFAR100_MEAN, CIFAR100_STD))
    try:
        ds = cls(root=str(root), train=split == "train", download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise UserError(f"{spec} files not found under {root}: pass --download (needs internet) or use "
                        f"imagefolder:PATH with a local copy ({exc})") from None
    except OSError as exc:  # URLError etc. when downloading without a network
        raise UserError(f"{spec} download into {root} failed ({exc}): use imagefolder:PATH with a local copy") \
            from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return ImageSet(images=images, labels=labels, classes=list(ds.classes), mean=mean, std=std, pad=4, flip=True,
                    name=spec)
