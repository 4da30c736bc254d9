"""Datasets held whole in memory as uint8 tensors, cut into batches and augmented by tensor ops.

Why not ``torch.utils.data.DataLoader`` with per-image PIL transforms: a NAS search touches every CIFAR-10 image
hundreds of times with tiny networks, so per-image Python work (and worker processes to hide it) dominates the run.
Keeping a split as one uint8 tensor on the training device (184 MB for all of CIFAR-10) and augmenting a whole
batch at once makes the loader a handful of kernel launches, on the CPU now and on a GPU later.

Why random numbers come from a CPU ``torch.Generator`` seeded by ``(seed, epoch)``: a search resumed from a
checkpoint at an epoch boundary must see exactly the batches the uninterrupted run saw, on any device.

Why images are decoded once and cached as ``.npz``: decoding 60k JPEGs takes tens of seconds; reading the cache
takes well under one.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from nni_offpolicy.files.atomic import atomic_write
from nni_offpolicy.console import bars_wanted
from nni_offpolicy.errors import UserError

DATASETS_HELP = (
    "digits (sklearn 8x8, embedded) | cifar10 | cifar100 (torchvision files in the data dir, or --download) | "
    "imagefolder:PATH (directory or .tar/.tar.gz/.tgz in ImageFolder layout, optional train/ and test/) | "
    "cifar10-jpeg (shared/data/cifar10-jpeg.tar.gz next to or above the working directory or the repository)"
)
CIFAR10_ARCHIVE = "cifar10-jpeg.tar.gz"

SPLITS = ("train", "test")

# DARTS / P-DARTS constants (utils.py of both repositories).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".gif", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CACHE_FORMAT = 1  # bump when the .npz layout changes, so old caches are ignored rather than misread
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------------------------
# The in-memory split
# --------------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------------
# Deterministic permutations (library-version independent)
# --------------------------------------------------------------------------------------------------------------
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


def _mix_seed(seed: int, epoch: int) -> int:
    """One torch seed per (seed, epoch); hashed so neighbouring epochs/seeds get unrelated streams."""
    h = _splitmix64(np.array([(int(seed) * 0x9E3779B97F4A7C15 + int(epoch)) & _MASK64], dtype=np.uint64))[0]
    return int(h) & ((1 << 63) - 1)


def train_half_size(n: int, portion: float) -> int:
    """How many of ``n`` images the search split's weight-training half holds (the rest validate)."""
    return int(math.floor(portion * n))


def _split_indices(n: int, portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    first, second = _split_indices(len(data), float(portion), seed)
    if len(first) == 0 or len(second) == 0:
        raise UserError(f"train portion {portion} of {len(data)} images leaves one side empty: "
                        f"use a portion between {1 / len(data):.4g} and {1 - 1 / len(data):.4g}")
    first = first[class_mixed_order(data.labels[first], seed)]
    second = second[class_mixed_order(data.labels[second], seed)]
    return data.subset(first), data.subset(second)


# --------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------------
# Loaders per spec
# --------------------------------------------------------------------------------------------------------------
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
        return _load_imagefolder(spec[len("imagefolder:"):], split, cache_dir, image_size)
    if spec == "cifar10-jpeg":
        return _load_imagefolder(str(local_cifar10_archive()), split, cache_dir, image_size)
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
        _check_imagefolder(spec[len("imagefolder:"):], splits)
    elif spec == "cifar10-jpeg":
        _check_imagefolder(str(local_cifar10_archive()), splits)
    elif spec in ("cifar10", "cifar100"):
        if download:
            return  # fetched when loaded; whether the network answers is not known before
        from torchvision import datasets

        root = Path(data_dir).expanduser() if data_dir else _default_root() / "data"
        cls = datasets.CIFAR10 if spec == "cifar10" else datasets.CIFAR100
        names = [name for name, _ in (cls.train_list if "train" in splits else [])
                 + (cls.test_list if "test" in splits else [])] + [cls.meta["filename"]]
        missing = [name for name in names if not (root / cls.base_folder / name).is_file()]
        if missing:
            raise UserError(f"{spec} files not found under {root}: pass --download (needs internet) or use "
                            f"imagefolder:PATH with a local copy ({root / cls.base_folder / missing[0]} is missing)")
    elif spec != "digits":
        raise UserError(f"dataset {spec!r} is not allowed: use {DATASETS_HELP}")


def _imagefolder_source(path_text: str) -> Path:
    """The folder or archive an ``imagefolder:`` names, resolved; one line when it is missing or another kind."""
    source = Path(path_text).expanduser().resolve()
    if not source.exists():
        raise UserError(f"imagefolder path {path_text} does not exist")
    if not source.is_dir() and not _is_archive(source):
        raise UserError(f"imagefolder path {path_text} is not allowed: use a directory or a "
                        f"{'/'.join(ARCHIVE_SUFFIXES)} archive")
    return source


def _check_imagefolder(path_text: str, splits: list[str]) -> None:
    source = _imagefolder_source(path_text)
    cached = _cached_layout(source)  # any decoded copy of this version of the source, whatever its image size
    if cached is not None:
        classes, has_test = cached
    else:  # the names alone: a directory's walk, an archive's member list (read, not decoded)
        if source.is_dir():
            rels = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
        else:
            try:
                with tarfile.open(source, mode="r|*") as tar:
                    rels = [_member_name(m.name) for m in tar if m.isfile()]
            except (tarfile.TarError, OSError) as exc:
                raise UserError(f"cannot read archive {source}: {exc}") from None
        prefix, has_test = _layout([r for r in rels if _is_image_name(r)])
        names = [r.split("/")[len(prefix):] for r in rels if _is_image_name(r)]
        classes = sorted({p[1] for p in names if len(p) >= 3 and p[0] == "train"} if has_test
                         else {p[0] for p in names if len(p) >= 2})
        if not classes:
            raise UserError(f"no images in class folders under {source}: expected CLASS/IMAGE or train/CLASS/IMAGE "
                            f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    if len(classes) < 2:
        raise UserError(f"imagefolder {path_text} holds one class ({classes[0]}): a classifier needs at "
                        f"least two class folders (CLASS/IMAGE or train/CLASS/IMAGE)")
    if "test" in splits and not has_test:
        raise UserError(f"imagefolder {path_text} has no train/ and test/ folders, so split 'test' is not "
                        f"available: use split 'train' (and search_split for validation)")


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _cached_layout(source: Path, cache_dir: str | None = None) -> tuple[list[str], bool] | None:
    """(classes, has a test split) from a cache of ``source`` as it is now (any image size), or None."""
    plain = imagefolder_cache_path(source, cache_dir)
    found = sorted(plain.parent.iterdir()) if plain.parent.is_dir() else []
    for path in (p for p in found if p.name.startswith(plain.stem) and p.name.endswith(".npz")):
        try:
            with np.load(path, allow_pickle=False) as npz:
                if int(npz["format"]) == _CACHE_FORMAT:
                    return [str(c) for c in npz["classes"]], "test_images" in npz.files
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
    return None


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
    repo = Path(__file__).resolve().parent.parent
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
    train_idx, test_idx = _split_indices(len(labels), 0.8, seed=0)
    mean, std = channel_stats(images[train_idx])
    idx = train_idx if split == "train" else test_idx
    return ImageSet(images=images[idx].contiguous(), labels=labels[idx].contiguous(),
                    classes=[str(int(c)) for c in bunch.target_names], mean=mean, std=std, pad=1, flip=False,
                    name="digits")


def _default_root() -> Path:
    return Path(os.environ.get("NNI_OFFPOLICY_CACHE") or Path.home() / ".cache" / "nni-offpolicy")


def _load_cifar(spec: str, split: str, data_dir: str | None, download: bool) -> ImageSet:
    """torchvision's own files, so numbers are comparable with the papers; no internet here, so a missing
    download is a user error that names the offline alternative."""
    from torchvision import datasets

    root = Path(data_dir).expanduser() if data_dir else _default_root() / "data"
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


# --------------------------------------------------------------------------------------------------------------
# imagefolder: decode once, cache as .npz
# --------------------------------------------------------------------------------------------------------------
def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_image_name(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def folder_stats(path: Path) -> tuple[int, int, int]:
    """Files under ``path`` (every depth), their bytes, the newest modification (ns): what tells a changed image
    folder, since adding an image deep inside does not change the top folder's mtime. The decoding cache and a
    resume's input check (files/inputs.py) both identify a folder by it."""
    count, size, mtime = 0, 0, 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            count, size, mtime = count + 1, size + st.st_size, max(mtime, st.st_mtime_ns)
    return count, size, mtime


def _source_fingerprint(path: Path) -> str:
    """Absolute path + size + mtime: a changed source gets a new cache entry. A directory's fingerprint covers
    every file under it (``folder_stats``)."""
    parts = [f"v{_CACHE_FORMAT}", str(path)]
    if path.is_dir():
        count, size, mtime = folder_stats(path)
        parts += [f"dir:{count}", str(size), str(mtime)]
    else:
        st = path.stat()
        parts += [str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def imagefolder_cache_path(path: str | Path, cache_dir: str | None = None, image_size: int | None = None) -> Path:
    """Where the decoded copy of an imagefolder source lives (one ``.npz`` per source version and image size)."""
    src = Path(path).expanduser().resolve()
    root = Path(cache_dir).expanduser() if cache_dir else _default_root()
    stem = src.name.split(".")[0] or "imagefolder"
    size = "" if image_size is None else f"-{image_size}px"
    return root / f"imagefolder-{stem}-{_source_fingerprint(src)}{size}.npz"


def _decode(data: IO[bytes] | str, rel: str, image_size: int | None = None) -> np.ndarray:
    """One image to uint8 HxW (grey) or HxWx3; other modes become RGB. With ``image_size`` N: the shorter side
    scaled to N (bilinear, PIL's antialiasing when shrinking), then the centre NxN (torchvision's Resize(N) +
    CenterCrop(N)), so no image is squashed."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(data) as img:
            img.load()
            if img.mode not in ("L", "RGB"):
                img = img.convert("L" if img.mode == "1" else "RGB")
            if image_size is not None and img.size != (image_size, image_size):
                w, h = img.size
                scale = image_size / min(w, h)
                size = (max(image_size, round(w * scale)), max(image_size, round(h * scale)))
                img = img.resize(size, Image.BILINEAR)
                left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
                img = img.crop((left, top, left + image_size, top + image_size))
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"cannot decode image {rel}: {exc}") from None


def _progress(total: int | None, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", file=sys.stderr, mininterval=1.0,
                dynamic_ncols=True, leave=False, disable=not bars_wanted())


def _iter_directory(root: Path, image_size: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    files = [f for f in files if _is_image_name(f)]
    with _progress(len(files), f"decoding {root.name}", "img") as bar:
        for rel in files:
            yield rel, _decode(str(root / rel), rel, image_size)
            bar.update(1)


def _iter_archive(path: Path, image_size: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Members in the archive's own order through tarfile's stream mode ("r|*"), which cannot seek: random
    access by name in a gzip stream re-reads it from the start for every member."""
    with open(path, "rb") as raw, _progress(path.stat().st_size, f"decoding {path.name}", "B") as bar:
        try:
            with tarfile.open(fileobj=raw, mode="r|*") as tar:
                for member in tar:
                    rel = _member_name(member.name)
                    if member.isfile() and _is_image_name(rel):
                        handle = tar.extractfile(member)
                        if handle is not None:
                            yield rel, _decode(io.BytesIO(handle.read()), f"{path}:{rel}", image_size)
                    bar.update(raw.tell() - bar.n)
        except tarfile.TarError as exc:
            raise UserError(f"cannot read archive {path}: {exc}") from None


def _layout(rels: Iterable[str]) -> tuple[tuple[str, ...], bool]:
    """(prefix to strip, has train/test splits). ``train/`` and ``test/`` may sit at the top or under a single
    extra folder (how most archives are made); without them every class folder belongs to the train split."""
    parts = [r.split("/") for r in rels]
    tops = {p[0] for p in parts if len(p) >= 2}
    if {"train", "test"} <= tops:
        return (), True
    if len(tops) == 1 and all(len(p) >= 3 for p in parts):
        top = next(iter(tops))
        if {"train", "test"} <= {p[1] for p in parts if len(p) >= 3}:
            return (top,), True
        return (top,), False
    return (), False


def _group(entries: list[tuple[str, np.ndarray]]) -> dict[str, list[tuple[str, str, np.ndarray]]]:
    """split -> [(class, relative path, pixels)], sorted by (class, path) so a directory and an archive of the
    same files give the same order whatever order the archive stores them in."""
    prefix, has_splits = _layout(rel for rel, _ in entries)
    groups: dict[str, list[tuple[str, str, np.ndarray]]] = {s: [] for s in (SPLITS if has_splits else ("train",))}
    for rel, pixels in entries:
        parts = rel.split("/")[len(prefix):]
        if has_splits:
            if len(parts) < 3 or parts[0] not in groups:
                continue  # e.g. a val/ folder or a README image at the top
            split, parts = parts[0], parts[1:]
        else:
            split = "train"
            if len(parts) < 2:
                continue  # an image outside any class folder
        groups[split].append((parts[0], rel, pixels))
    for items in groups.values():
        items.sort(key=lambda item: (item[0], item[1]))
    return groups


def _stack(groups: dict[str, list[tuple[str, str, np.ndarray]]], source: Path) -> dict[str, np.ndarray]:
    """The arrays the cache holds: one size for all images, one channel count (grey is promoted to RGB when
    the set mixes both), labels from the train split's sorted class folders."""
    train = groups["train"]
    if not train:
        raise UserError(f"no images in class folders under {source}: expected CLASS/IMAGE or train/CLASS/IMAGE "
                        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    classes = sorted({cls for cls, _, _ in train})
    label_of = {cls: i for i, cls in enumerate(classes)}
    first_rel, first = train[0][1], train[0][2]
    rgb = any(px.ndim == 3 for items in groups.values() for _, _, px in items)
    out: dict[str, np.ndarray] = {"classes": np.array(classes), "format": np.array(_CACHE_FORMAT)}
    for split, items in groups.items():
        unknown = sorted({cls for cls, _, _ in items} - set(classes))
        if unknown:
            raise UserError(f"{split} class folder {unknown[0]!r} in {source} is not a train class: "
                            f"allowed are {', '.join(classes)}")
        for _, rel, px in items:
            if px.shape[:2] != first.shape[:2]:
                raise UserError(f"image {rel} in {source} is {px.shape[1]}x{px.shape[0]} (width x height) but "
                                f"the first image, {first_rel}, is {first.shape[1]}x{first.shape[0]}: all images "
                                f"must have one size; resize them all with --set image_size=N (retrain: "
                                f"--image-size N), e.g. image_size={_suggested_side(first.shape)}")
        arrays = [np.repeat(px[:, :, None], 3, axis=2) if rgb and px.ndim == 2 else px for _, _, px in items]
        stacked = np.stack(arrays) if arrays else np.zeros((0, *first.shape[:2], 3 if rgb else 1), np.uint8)
        stacked = stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
        out[f"{split}_images"] = np.ascontiguousarray(stacked)
        out[f"{split}_labels"] = np.array([label_of[cls] for cls, _, _ in items], dtype=np.int64)
    mean, std = channel_stats(out["train_images"])
    out["mean"], out["std"] = np.array(mean), np.array(std)
    return out


def _suggested_side(shape: tuple[int, ...]) -> int:
    """A side to suggest for ``image_size``: the first image's shorter side, at most 32 (what CIFAR-sized
    networks and a CPU search afford)."""
    return min(32, int(min(shape[:2])))


def _write_cache(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Through ``atomic_write``: a killed process never leaves a half-written cache."""
    # uncompressed: loading must be fast, the bytes are already small
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _read_cache(path: Path, split: str) -> dict[str, np.ndarray] | None:
    """The cached split, or None when there is no usable cache (missing, or unreadable from another version)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if int(npz["format"]) != _CACHE_FORMAT:
                return None
            keys = ("classes", "mean", "std", f"{split}_images", f"{split}_labels")
            return {k: npz[k] for k in keys if k in npz.files} | {"has_test": np.array("test_images" in npz.files)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _load_imagefolder(path_text: str, split: str, cache_dir: str | None, image_size: int | None = None
                      ) -> ImageSet:
    """Any labelled image set on disk, decoded once; train/ and test/ folders give the splits."""
    source = _imagefolder_source(path_text)
    cache = imagefolder_cache_path(source, cache_dir, image_size)
    cached = _read_cache(cache, split)
    if cached is None:
        entries = list(_iter_archive(source, image_size) if _is_archive(source)
                       else _iter_directory(source, image_size))
        _write_cache(_stack(_group(entries), source), cache)
        cached = _read_cache(cache, split)
        assert cached is not None, f"cache {cache} unreadable right after writing it"
    if len(cached["classes"]) < 2:  # every answer is right: "100 % valid accuracy" of nothing
        raise UserError(f"imagefolder {path_text} holds one class ({cached['classes'][0]}): a classifier needs at "
                        f"least two class folders (CLASS/IMAGE or train/CLASS/IMAGE)")
    if f"{split}_images" not in cached:
        raise UserError(f"imagefolder {path_text} has no train/ and test/ folders, so split {split!r} is not "
                        f"available: use split 'train' (and search_split for validation)")
    images = torch.from_numpy(cached[f"{split}_images"])
    return ImageSet(images=images, labels=torch.from_numpy(cached[f"{split}_labels"]),
                    classes=[str(c) for c in cached["classes"]], mean=tuple(float(v) for v in cached["mean"]),
                    std=tuple(float(v) for v in cached["std"]), pad=max(1, images.shape[2] // 8), flip=True,
                    name=f"imagefolder:{source}")


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
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, epoch))
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
