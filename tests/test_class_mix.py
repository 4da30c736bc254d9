"""Reward and monitoring batches are representative of the validation split whatever order a dataset is stored in.

The defect these tests pin: an ImageFolder archive decodes class by class, the split kept that order and
validation batches are cut without shuffling, so every reward batch held one class (the controller learned "how
often this path predicts class k") and the per-epoch valid accuracy read 0 % or 100 %-like values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nni_offpolicy.data.datasets import load_dataset
from nni_offpolicy.data.imageset import ImageSet
from nni_offpolicy.data.split import class_mixed_order, search_split
from nni_offpolicy.search.replicas import Replicas
from nni_offpolicy.search.loop import MONITOR_BATCHES, ProgressiveSearch, run_search
from nni_offpolicy.settings import load_settings

from fixtures import ONE_VALUE_PER_STAGE


def _class_sorted(data: ImageSet) -> ImageSet:
    """The same images stored class by class, as the CIFAR-10 JPEG archive decodes."""
    return data.subset(torch.argsort(data.labels, stable=True))


def _assert_proportional(labels: torch.Tensor, share: torch.Tensor, what: str) -> None:
    counts = torch.bincount(labels, minlength=len(share)).float()
    expected = share * labels.numel()
    worst = float((counts - expected).abs().max())
    assert worst <= max(2.0, 0.25 * float(expected.max())), f"{what}: counts {counts.tolist()} vs {expected.tolist()}"


def test_class_mixed_order_interleaves_every_window():
    """Breakage caught: a split that keeps storage order (one class per validation batch)."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([500, 300, 150, 50])]).long()
    order = class_mixed_order(labels, seed=7)
    assert sorted(order.tolist()) == list(range(len(labels)))
    assert torch.equal(order, class_mixed_order(labels, seed=7))  # a pure function: resumable
    share = torch.bincount(labels).float() / len(labels)
    mixed = labels[order]
    for start in range(0, len(labels) - 40, 40):
        _assert_proportional(mixed[start:start + 40], share, f"window at {start}")


def test_every_reward_and_monitoring_batch_of_a_class_sorted_set_covers_its_classes(tmp_path):
    """Breakage caught: validation batches cut from a class-sorted split (the defect itself)."""
    data = _class_sorted(load_dataset("digits"))
    train, valid = search_split(data, 0.5, seed=0)
    share = torch.bincount(valid.labels, minlength=valid.num_classes).float() / len(valid)
    for half, name in ((train, "train"), (valid, "valid")):
        assert set(half.labels[:100].tolist()) == set(range(10)), f"{name} half starts with one class"
    settings = load_settings("demo", {"reward_batch_size": 64, "progress": False, "threads": 1})
    search = ProgressiveSearch(settings, tmp_path, train, valid, Replicas(torch.device("cpu")), progress=False)
    batches = search.valid_batches
    assert all(x.shape[0] == 64 for x, _ in batches[:-1]) and len(batches) >= MONITOR_BATCHES
    for i, (_, y) in enumerate(batches[:-1]):  # every reward batch (the last may be a remainder)
        _assert_proportional(y, share, f"reward batch {i}")
    monitored = torch.cat([y for _, y in batches[:MONITOR_BATCHES]])
    _assert_proportional(monitored, share, "monitoring batches")


def _write_sorted_imagefolder(root: Path) -> None:
    """Digits' labels as PNGs in class folders, classes 0-4 an easy grey level each and classes 5-9 noise: a
    batch drawn from the first classes scores near 100 %, one from the whole split near 60 %."""
    data = load_dataset("digits")
    rng = np.random.default_rng(0)
    for i, label in enumerate(data.labels.tolist()):
        noise = rng.integers(0, 256, (8, 8))
        pixels = (noise if label >= 5 else 30 + 45 * label + noise // 16).astype(np.uint8)
        folder = root / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def test_search_on_a_class_sorted_imagefolder_monitors_the_whole_split(tmp_path, monkeypatch):
    """Breakage caught: per-epoch valid accuracy measured on one class region of a class-sorted split (it read
    the noise classes only, tens of points below the whole-split accuracy)."""
    monkeypatch.setenv("NNI_OFFPOLICY_CACHE", str(tmp_path / "cache"))  # the decoded copy stays in tmp_path
    folder = tmp_path / "sorted"
    _write_sorted_imagefolder(folder)
    overrides = {**ONE_VALUE_PER_STAGE, "dataset": f"imagefolder:{folder}", "layers": "3", "epochs": "4",
                 "warmup_epochs": "1", "ops_kept": "1", "zero_cost_target": "1", "zero_cost_exponent": "0",
                 "batch_size": 32, "reward_batch_size": 32, "rl_interval_steps": 4, "samples_per_update": 4,
                 "weight_mode": "path", "train_portion": 0.5, "lr": 0.1, "eval_layers": 5, "eval_channels": 8, "progress": False, "threads": 1}
    records: list[dict] = []
    doc = run_search(load_settings("demo", overrides), tmp_path / "run", on_epoch=records.append)
    last, stage = records[-1], doc["stages"][-1]
    whole = stage["greedy_valid_acc"]  # the same greedy path, same weights, on the whole split
    # train-mode BN on one-class batches normalises the grey level away: 12-14 % on stored-order batches. A
    # learned split scores 47-57 % over seeds 0-8 here and 39.5 % on CI's machine for seed 0 (this is a short
    # path-mode search whose trajectory follows the CPU's float rounding), so the line sits between the two bands.
    assert whole > 25.0, f"the easy classes were not learned or not measured ({whole:.1f} %)"
    assert abs(last["greedy_acc"] - whole) < 6.0, (last["greedy_acc"], whole)
    assert doc["valid_images"] == len(search_split(load_dataset(overrides["dataset"]), 0.5, 0)[1])


@pytest.mark.parametrize("images, expected_batches", [(None, 12), (100, 2), (128, 2), (129, 3)])
def test_eval_images_caps_stage_end_and_final_evaluations(tmp_path, images, expected_batches):
    """Stage-end and final evaluations walk only the first ``eval_images`` (whole batches), the whole split by
    default."""
    train, valid = search_split(load_dataset("digits"), 0.5, seed=0)
    settings = load_settings("demo", {"reward_batch_size": 64, "eval_images": images, "progress": False})
    search = ProgressiveSearch(settings, tmp_path, train, valid, Replicas(torch.device("cpu")), progress=False)
    assert len(search.valid_batches) == 12  # 719 validation images in batches of 64
    assert search.eval_batches == expected_batches
