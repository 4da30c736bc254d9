"""Image folders and archives (``imagefolder:PATH``, ImageFolder layout): their layout read from file names,
their images decoded once into one ``.npz`` per source version and image size, and that cache read back.

Why decoded once and cached: decoding 60k JPEGs takes tens of seconds; reading the cache takes well under one.
The cache lives under ``default_root()`` (``NNI_OFFPOLICY_CACHE``), which torchvision's files share.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
import torch

from nni_offpolicy.console import bars_wanted
from nni_offpolicy.data.imageset import SPLITS, ImageSet, channel_stats
from nni_offpolicy.errors import UserError
from nni_offpolicy.files.atomic import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".gif", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CACHE_FORMAT = 1  # bump when the .npz layout changes, so old caches are ignored rather than misread


def _imagefolder_source(path_text: str) -> Path:
    """The folder or archive an ``imagefolder:`` names, resolved; one line when it is missing or another kind."""
    source = Path(path_text).expanduser().resolve()
    if not source.exists():
        raise UserError(f"imagefolder path {path_text} does not exist")
    if not source.is_dir() and not _is_archive(source):
        raise UserError(f"imagefolder path {path_text} is not allowed: use a directory or a "
                        f"{'/'.join(ARCHIVE_SUFFIXES)} archive")
    return source


def check_imagefolder(path_text: str, splits: list[str]) -> None:
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


def default_root() -> Path:
    return Path(os.environ.get("NNI_OFFPOLICY_CACHE") or Path.home() / ".cache" / "nni-offpolicy")


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
    root = Path(cache_dir).expanduser() if cache_dir else default_root()
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


def load_imagefolder(path_text: str, split: str, cache_dir: str | None, image_size: int | None = None
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
