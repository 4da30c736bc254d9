"""Data loading and batching: the search trusts these to give the same images, splits and batches on every run,
so each test checks real pixels and indices, not just that something came back."""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

import nni_offpolicy.data.archive as archive_mod
import nni_offpolicy.data.batches as batches_mod
import nni_offpolicy.data.split as split_mod
from nni_offpolicy.data.batches import BatchLoader, crop_with_offsets, cutout_with_centres, flip_with_flags
from nni_offpolicy.data.datasets import DATASETS_HELP, load_dataset
from nni_offpolicy.data.imageset import ImageSet
from nni_offpolicy.data.split import search_split, stable_permutation
from nni_offpolicy.errors import UserError


# ---------------------------------------------------------------------------------------------------- helpers
# Reference augmentation, batch by batch (the loader draws a whole epoch up front; it must give these batches).
def crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    tops, lefts, flags = batches_mod._draw_crop_flip(x.shape[0], pad, flip, generator)
    if tops is not None:
        x = crop_with_offsets(x, pad, tops, lefts)
    if flags is not None:
        x = flip_with_flags(x, flags)
    return x


def cutout_batch(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout with centres drawn uniformly over the image on the CPU ``generator``."""
    if length <= 0:
        return x
    n, _, h, w = x.shape
    ys = torch.randint(0, h, (n,), generator=generator)
    xs = torch.randint(0, w, (n,), generator=generator)
    return cutout_with_centres(x, length, ys, xs)


def augment_batch(x_uint8: torch.Tensor, pad: int, flip: bool, cutout: int, generator: torch.Generator
                  ) -> torch.Tensor:
    """Random crop, flip and cutout for a whole batch on its own device; random numbers come from the CPU
    ``generator`` so CPU and CUDA runs agree bit for bit. (``BatchLoader`` applies cutout after normalising, as
    DARTS does; here the cut square is 0 in the input's units.)"""
    x = crop_flip(x_uint8, pad, flip, generator)
    return cutout_batch(x, cutout, generator)


def normalize(x_uint8: torch.Tensor, mean: Iterable[float], std: Iterable[float]) -> torch.Tensor:
    """uint8 -> float32 in [0,1] -> (x - mean) / std per channel, in one fused multiply-subtract."""
    mean_t = torch.tensor(tuple(mean), dtype=torch.float32, device=x_uint8.device)[None, :, None, None]
    std_t = torch.tensor(tuple(std), dtype=torch.float32, device=x_uint8.device)[None, :, None, None]
    return x_uint8.float().mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


def indexed_set(n: int, size: int = 8, channels: int = 3, value: int | None = None) -> ImageSet:
    """Labels are the sample indices, so any batch or split says exactly which samples it holds; pixels encode
    the index too (unless a constant ``value`` is asked for)."""
    if value is None:
        images = (torch.arange(n, dtype=torch.int64) % 200 + 20).to(torch.uint8)[:, None, None, None]
        images = images.expand(n, channels, size, size).contiguous()
        images[:, :, 0, 0] = 255  # a marker pixel, so crops and flips are visible
    else:
        images = torch.full((n, channels, size, size), value, dtype=torch.uint8)
    return ImageSet(images=images, labels=torch.arange(n, dtype=torch.int64), classes=[str(i) for i in range(n)],
                    mean=(0.5,) * channels, std=(0.25,) * channels, pad=2, flip=True, name="indexed")


COLOURS = {"cat": (200, 10, 10), "ant": (10, 200, 10), "bee": (10, 10, 200)}  # created in unsorted order


def write_folder(root: Path, splits: bool = True, per_class: int = 3, size: int = 12, mode: str = "RGB") -> None:
    """A tiny ImageFolder: each class has one colour, so a label can be checked against its pixels."""
    for split in (["train", "test"] if splits else [""]):
        for cls, colour in COLOURS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixel = colour if mode == "RGB" else colour[0] // 2 + colour[1] // 3
                Image.new(mode, (size, size), pixel).save(folder / f"{i:03d}.png")


def make_tar(src: Path, dest: Path, top: str) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=top)
    return dest


# ---------------------------------------------------------------------------------------------------- digits
def test_digits_shapes_classes_and_80_20_split():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    for part in (train, test):
        assert part.images.dtype == torch.uint8 and part.labels.dtype == torch.int64
        assert part.images.shape[1:] == (1, 8, 8)
        assert part.classes == [str(i) for i in range(10)]
        assert (part.in_channels, part.input_size, part.num_classes, part.pad, part.flip) == (1, 8, 10, 1, False)
    assert (len(train), len(test)) == (1437, 360)
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # Together the two splits are exactly sklearn's images (as a multiset): disjoint and covering.
    full = np.rint(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    both = torch.cat([train.images, test.images]).reshape(1797, -1).numpy()
    assert sorted(map(bytes, full)) == sorted(map(bytes, both))
    # mean/std come from the train split
    pixels = train.images.double() / 255
    assert train.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-9)
    assert train.std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-9)
    assert test.mean == train.mean
    assert torch.equal(load_dataset("digits", "train").images, train.images)  # fixed split


def test_bad_split_and_unknown_spec():
    with pytest.raises(UserError, match="'valid'"):
        load_dataset("digits", "valid")
    with pytest.raises(UserError, match="'mnist'.*digits.*imagefolder:PATH"):
        load_dataset("mnist")
    assert "\n" not in DATASETS_HELP and "cifar100" in DATASETS_HELP


# ---------------------------------------------------------------------------------------------------- search split
def test_search_split_deterministic_disjoint_covering():
    data = indexed_set(50)
    a1, b1 = search_split(data, 0.5, seed=3)
    a2, b2 = search_split(data, 0.5, seed=3)
    assert torch.equal(a1.labels, a2.labels) and torch.equal(b1.labels, b2.labels)
    assert torch.equal(a1.images, data.images[a1.labels])
    first, second = set(a1.labels.tolist()), set(b1.labels.tolist())
    assert len(first) == len(second) == 25
    assert not first & second and first | second == set(range(50))
    c, _ = search_split(data, 0.5, seed=4)
    assert set(c.labels.tolist()) != first
    small, large = search_split(data, 0.2, seed=3)
    assert (len(small), len(large)) == (10, 40)
    assert (a1.mean, a1.std, a1.classes) == (data.mean, data.std, data.classes)


def test_split_permutation_is_pinned():
    """The split must not change with a numpy/torch upgrade or across machines: pin the hash permutation."""
    assert stable_permutation(10, 0).tolist() == [1, 4, 5, 7, 6, 9, 0, 3, 2, 8]
    assert stable_permutation(10, 1).tolist() == [8, 6, 9, 0, 7, 3, 5, 2, 4, 1]


@pytest.mark.parametrize("portion", [0, 1, -0.5, 1.5, 0.001])
def test_search_split_bad_portion(portion):
    with pytest.raises(UserError, match=str(portion)):
        search_split(indexed_set(50), portion)


# ---------------------------------------------------------------------------------------------------- imagefolder
def assert_colour_labels(data: ImageSet) -> None:
    names = data.classes
    for img, label in zip(data.images, data.labels):
        assert tuple(int(v) for v in img[:, 0, 0]) == COLOURS[names[int(label)]]


def test_imagefolder_directory_labels_and_cache(tmp_path, monkeypatch):
    root, cache = tmp_path / "imgs", tmp_path / "cache"
    write_folder(root)
    train = load_dataset(f"imagefolder:{root}", "train", cache_dir=str(cache))
    test = load_dataset(f"imagefolder:{root}", "test", cache_dir=str(cache))
    assert train.classes == ["ant", "bee", "cat"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and len(test) == 9
    assert train.images.shape == (9, 3, 12, 12) and (train.pad, train.flip) == (1, True)
    assert_colour_labels(train)
    assert_colour_labels(test)
    expected_mean = tuple(sum(c[i] for c in COLOURS.values()) / 3 / 255 for i in range(3))
    assert train.mean == pytest.approx(expected_mean)
    assert train.name == f"imagefolder:{root}"
    assert len(list(cache.glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(archive_mod, "_decode", no_decoding)
    again = load_dataset(f"imagefolder:{root}", "train", cache_dir=str(cache))
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    assert again.mean == train.mean


def test_imagefolder_tar_matches_directory(tmp_path):
    root, cache = tmp_path / "imgs", tmp_path / "cache"
    write_folder(root)
    archive = make_tar(root, tmp_path / "imgs.tar.gz", top="mydata")  # train/ test/ under one extra folder
    for split in ("train", "test"):
        from_dir = load_dataset(f"imagefolder:{root}", split, cache_dir=str(cache))
        from_tar = load_dataset(f"imagefolder:{archive}", split, cache_dir=str(cache))
        assert from_tar.classes == from_dir.classes
        assert torch.equal(from_tar.images, from_dir.images) and torch.equal(from_tar.labels, from_dir.labels)
    assert len(list(cache.glob("*.npz"))) == 2
    assert not list(cache.glob(".*tmp*"))  # the atomic write left no temporary behind


def test_imagefolder_without_splits_is_train_only_and_grey(tmp_path):
    root = tmp_path / "flat"
    write_folder(root, splits=False, per_class=2, size=16, mode="L")
    train = load_dataset(f"imagefolder:{root}", "train", cache_dir=str(tmp_path / "c"))
    assert train.images.shape == (6, 1, 16, 16) and train.pad == 2
    assert train.classes == ["ant", "bee", "cat"] and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(UserError, match="no train/ and test/.*'test'"):
        load_dataset(f"imagefolder:{root}", "test", cache_dir=str(tmp_path / "c"))


def test_imagefolder_bad_inputs(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=str(missing)):
        load_dataset(f"imagefolder:{missing}", cache_dir=str(tmp_path / "c"))
    root = tmp_path / "mixed"
    write_folder(root, splits=False, per_class=1)
    Image.new("RGB", (10, 12)).save(root / "bee" / "odd.png")
    with pytest.raises(UserError, match=r"bee/odd.png.*10x12.*one size"):
        load_dataset(f"imagefolder:{root}", cache_dir=str(tmp_path / "c"))
    assert not list((tmp_path / "c").glob("*.npz"))  # nothing cached for a rejected source


def test_imagefolder_mixed_sizes_name_the_file_its_size_the_expected_one_and_image_size(tmp_path):
    """Breakage caught: the refusal of a mixed-size folder saying neither which size was expected (the first
    image's) nor how to resize instead."""
    root = tmp_path / "mixed"
    write_folder(root, splits=False, per_class=1)  # 12x12
    Image.new("RGB", (64, 48)).save(root / "bee" / "wide.png")
    with pytest.raises(UserError, match=r"bee/wide.png.*64x48.*12x12.*image_size=N"):
        load_dataset(f"imagefolder:{root}", cache_dir=str(tmp_path / "c"))


def test_imagefolder_image_size_resizes_every_image_and_caches_apart(tmp_path):
    """``image_size=N``: every image (any size or shape) becomes NxN (shorter side to N, centre crop), labels and
    colours kept; the resized copy is cached beside the unresized one, not over it."""
    root, cache = tmp_path / "imgs", tmp_path / "cache"
    write_folder(root)  # 12x12
    for cls, colour in COLOURS.items():
        Image.new("RGB", (30, 18), colour).save(root / "train" / cls / "wide.png")
        Image.new("RGB", (7, 9), colour).save(root / "test" / cls / "small.png")
    train = load_dataset(f"imagefolder:{root}", "train", cache_dir=str(cache), image_size=8)
    test = load_dataset(f"imagefolder:{root}", "test", cache_dir=str(cache), image_size=8)
    assert train.images.shape == (12, 3, 8, 8) and test.images.shape == (12, 3, 8, 8)
    assert train.input_size == 8 and train.pad == 1
    assert_colour_labels(train)
    assert_colour_labels(test)
    solid = train.images.reshape(12, 3, -1)
    assert bool((solid == solid[:, :, :1]).all())  # a solid colour stays solid: no border, no blur to black
    for path in root.rglob("wide.png"):
        path.unlink()
    for path in root.rglob("small.png"):
        path.unlink()
    unresized = load_dataset(f"imagefolder:{root}", "train", cache_dir=str(cache))
    assert unresized.images.shape == (9, 3, 12, 12)
    assert load_dataset(f"imagefolder:{root}", "train", cache_dir=str(cache), image_size=8).images.shape[2:] == (8, 8)


def test_image_size_resizes_embedded_datasets_too():
    digits = load_dataset("digits", "train", image_size=16)
    assert digits.images.shape[1:] == (1, 16, 16) and digits.input_size == 16
    assert len(digits) == len(load_dataset("digits", "train"))
    assert load_dataset("digits", "train", image_size=8).images.equal(load_dataset("digits", "train").images)
    with pytest.raises(UserError, match="image_size"):
        load_dataset("digits", "train", image_size=0)


def test_cifar10_missing_files_without_download(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}.*--download"):
        load_dataset("cifar10", "train", data_dir=str(tmp_path), download=False)


# ---------------------------------------------------------------------------------------------------- augmentation
def test_crop_matches_torchvision_pad_then_crop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 10, 10), dtype=torch.uint8, generator=gen)
    pad = 3
    tops = torch.randint(0, 2 * pad + 1, (16,), generator=gen)
    lefts = torch.randint(0, 2 * pad + 1, (16,), generator=gen)
    tops[:2], lefts[:2] = torch.tensor([0, 6]), torch.tensor([6, 0])  # include the extreme offsets
    out = crop_with_offsets(x, pad, tops, lefts)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(16):
        expected = TF.crop(TF.pad(x[i], pad), int(tops[i]), int(lefts[i]), 10, 10)
        assert torch.equal(out[i], expected)
    assert torch.equal(crop_with_offsets(x, pad, torch.full((16,), pad), torch.full((16,), pad)), x)


def test_flip_only_flagged_samples():
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    flags = torch.tensor([True, False, True, True, False, False])
    out = flip_with_flags(x, flags)
    for i in range(6):
        assert torch.equal(out[i], torch.flip(x[i], dims=[2]) if flags[i] else x[i])


def test_cutout_zeroes_a_clipped_square_only():
    x = torch.ones(3, 2, 10, 10)
    out = cutout_with_centres(x, 4, torch.tensor([5, 0, 9]), torch.tensor([5, 0, 2]))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1])  # all channels alike
    assert zero[0, 0, 3:7, 3:7].all() and zero[0, 0].sum() == 16  # interior: the full 4x4 square
    assert zero[1, 0, 0:2, 0:2].all() and zero[1, 0].sum() == 4  # corner: clipped
    assert zero[2, 0, 7:10, 0:4].all() and zero[2, 0].sum() == 12  # bottom edge: rows 7..9, cols 0..3
    assert torch.equal(out[~zero], x[~zero])


def test_augment_batch_random_cutout_and_reproducibility():
    x = torch.full((32, 1, 8, 8), 100, dtype=torch.uint8)
    out = augment_batch(x, pad=0, flip=False, cutout=3, generator=torch.Generator().manual_seed(5))
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros >= 1).all() and (zeros <= 9).all()
    assert ((out == 0) | (out == 100)).all()  # only the square was touched
    y = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    a = augment_batch(y, 2, True, 4, torch.Generator().manual_seed(9))
    b = augment_batch(y, 2, True, 4, torch.Generator().manual_seed(9))
    c = augment_batch(y, 2, True, 4, torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, y)


def test_normalize_constant_image():
    x = torch.full((2, 3, 4, 4), 51, dtype=torch.uint8)  # 0.2 in [0,1] units
    mean, std = (0.1, 0.2, 0.4), (0.5, 0.25, 0.1)
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[:, c].mean().item() == pytest.approx((0.2 - mean[c]) / std[c], abs=1e-6)


# ---------------------------------------------------------------------------------------------------- BatchLoader
def batches(iterator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in iterator]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_loader_shapes_and_lengths():
    data = indexed_set(50)
    train = BatchLoader(data, 16, cutout=3)
    assert len(train) == 3 and train.drop_last
    out = batches(train.epoch(0))
    assert len(out) == 3
    for x, y in out:
        assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(set(torch.cat([y for _, y in out]).tolist())) == 48  # a shuffle without repeats
    keep_last = BatchLoader(data, 16, drop_last=False)
    assert len(keep_last) == 4 and batches(keep_last.epoch(0))[-1][0].shape[0] == 2
    with pytest.raises(UserError, match="batch size 64"):
        BatchLoader(data, 64)
    with pytest.raises(UserError, match="batch size 0"):
        BatchLoader(data, 0)


def test_loader_epochs_depend_only_on_seed_and_epoch():
    data = indexed_set(40)
    loader = BatchLoader(data, 8, cutout=2, seed=7)
    three = batches(loader.epoch(3))
    assert same(three, batches(loader.epoch(3)))
    assert not same(three, batches(loader.epoch(4)))
    assert not same(three, batches(BatchLoader(data, 8, cutout=2, seed=8).epoch(3)))
    # A resumed run: a fresh loader asked for epoch 3 sees what the one that iterated 0, 1, 2, 3 saw.
    running = BatchLoader(data, 8, cutout=2, seed=7)
    seen = [batches(iter(running)) for _ in range(4)]
    assert running.current_epoch == 4 and same(seen[3], three) and same(seen[0], batches(loader.epoch(0)))


def test_loader_draws_the_epoch_up_front_exactly_as_batch_by_batch():
    """The loader draws an epoch's random numbers before its first batch (one copy to the device instead of one
    per batch); the batches must be those of drawing batch by batch with the same generator, so a search resumed
    across this change, or on another device, sees the same images."""
    data = indexed_set(45)
    for cutout, drop_last in ((0, True), (3, True), (2, False)):
        loader = BatchLoader(data, 8, cutout=cutout, seed=3, drop_last=drop_last)
        generator = torch.Generator().manual_seed(split_mod.mix_seed(3, 2))
        order = torch.randperm(len(data), generator=generator)
        expected = []
        for i in range(len(loader)):
            idx = order[i * 8:(i + 1) * 8]
            x = crop_flip(data.images[idx], data.pad, data.flip, generator)
            x = normalize(x, data.mean, data.std)
            expected.append((cutout_batch(x, cutout, generator), data.labels[idx]))
        got = batches(loader.epoch(2))
        assert len(got) == len(expected) and all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(got, expected))
        assert all(torch.allclose(x1, x2) for (x1, _), (x2, _) in zip(got, expected))


def test_eval_loader_in_order_without_augmentation():
    data = indexed_set(20)
    loader = BatchLoader(data, 6, train=False, cutout=4)
    assert len(loader) == 4 and not loader.drop_last
    out = batches(loader.epoch(5))
    assert torch.cat([y for _, y in out]).tolist() == list(range(20))
    assert torch.allclose(torch.cat([x for x, _ in out]), normalize(data.images, data.mean, data.std))


def test_train_loader_augments_and_cuts_out_after_normalising():
    data = indexed_set(64, size=8, channels=1, value=200)
    data.pad, data.flip = 0, False  # only cutout acts
    x, _ = next(iter(BatchLoader(data, 64, cutout=4)))
    normalised = (200 / 255 - 0.5) / 0.25
    zeros = (x == 0).flatten(1).sum(1)
    assert ((x == 0) | torch.isclose(x, torch.tensor(normalised))).all()
    assert (zeros >= 4).all() and (zeros <= 16).all()  # a 4x4 square, clipped to at least 2x2 at a corner
    # Crop and flip act too: the marker pixel at (0,0) moves in some samples.
    marked = indexed_set(64)
    xm, ym = next(iter(BatchLoader(marked, 64)))
    plain = normalize(marked.images[ym], marked.mean, marked.std)
    moved = [not torch.equal(xm[i], plain[i]) for i in range(64)]
    assert sum(moved) > 48


def test_the_cifar10_archive_beside_the_repository_is_found_from_any_working_directory(tmp_path, monkeypatch):
    """``shared/data`` beside the repository (where these machines keep it) is found wherever a user runs from.
    The repository's place was once taken one folder too deep (the package's folder), which only went unnoticed
    because runs started in the repository, whose parent is looked at anyway."""
    import nni_offpolicy.data.datasets as datasets_mod
    from nni_offpolicy.data.datasets import CIFAR10_ARCHIVE, local_cifar10_archive

    expected = Path(datasets_mod.__file__).resolve().parents[2].parent / "shared" / "data" / CIFAR10_ARCHIVE
    monkeypatch.chdir(tmp_path)
    if expected.exists():
        assert local_cifar10_archive() == expected
    else:
        with pytest.raises(UserError) as err:
            local_cifar10_archive()
        assert str(expected) in str(err.value)
