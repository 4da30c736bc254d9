"""Issue 29, items 4 and 9: a resume refuses changed inputs, and a checkpoint's contents are validated as settings
are. Each run is tiny and finished once, then its result removed (what a kill just before the end leaves), so
``--resume`` has a checkpoint to continue from."""
from __future__ import annotations

import csv
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nni_offpolicy.cli import main
from search_spaces.genotypes import NB201_EDGES, sample_to_nb201
from search_spaces.ops import NB201_OPS

from test_hostile import RETRAIN_TINY, TINY, one_line_error

EDGES = [f"cell/op_{j}_{i}" for j, i in NB201_EDGES]


def _table(path: Path, seed: int) -> Path:
    """Every NB201 cell with a made-up accuracy column (seeded)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "acc"])
        for ops in itertools.product(NB201_OPS, repeat=len(EDGES)):
            writer.writerow([sample_to_nb201(dict(zip(EDGES, ops))), round(float(rng.uniform(10, 90)), 3)])
    return path


def _images(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(2):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(60 + 120 * c + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _finished_then_cut(argv: list[str], out: Path, result: str) -> None:
    assert main([*argv, "-o", str(out)]) == 0
    (out / result).unlink()  # a run killed after its last checkpoint: --resume continues it


# ------------------------------------------------------------------------------------ 4. changed inputs
TABLE_SEARCH = ["search", "--preset", "nb201", "--set", "reward_source=table", "--set", "epochs=2",
                "--set", "warmup_epochs=1", "--set", "max_steps_per_epoch=5", "--quiet"]


def test_resume_refuses_a_rewritten_reward_table(tmp_path, capsys):
    """Issue 29.4: the table's values rewritten after a kill; the resumed search mixed two tables (derived 34.11
    against 45.11)."""
    table = _table(tmp_path / "table.csv", seed=1)
    argv = [*TABLE_SEARCH, "--set", f"reward_table={table}:acc"]
    _finished_then_cut(argv, tmp_path / "s", "genotype.json")
    capsys.readouterr()
    _table(table, seed=2)  # same cells, other values
    one_line_error(capsys, main([*argv, "-o", str(tmp_path / "s"), "--resume"]), "the reward table changed",
                   "--overwrite")
    assert not (tmp_path / "s" / "genotype.json").exists()


def test_resume_refuses_a_changed_metric_module_and_takes_an_unchanged_one(tmp_path, monkeypatch, capsys):
    module = tmp_path / "resume_metric_mod.py"
    module.write_text("def latency(family, arch):\n    return 2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["search", *TINY, "--set", "metric=resume_metric_mod:latency"]
    _finished_then_cut(argv, tmp_path / "s", "genotype.json")
    keep = tmp_path / "copy"
    shutil.copytree(tmp_path / "s", keep)
    assert main([*argv, "-o", str(keep), "--resume"]) == 0  # unchanged: resumed
    capsys.readouterr()
    module.write_text("def latency(family, arch):\n    return 3.0  # measured again\n")
    one_line_error(capsys, main([*argv, "-o", str(tmp_path / "s"), "--resume"]), "the metric's module changed")


@pytest.mark.parametrize("command", ["search", "retrain"])
def test_resume_refuses_a_changed_image_folder(tmp_path, monkeypatch, capsys, command):
    monkeypatch.setenv("NNI_OFFPOLICY_CACHE", str(tmp_path / "cache"))
    images = _images(tmp_path / "img")
    dataset = f"imagefolder:{images}"
    if command == "search":
        argv = ["search", *TINY, "--dataset", dataset, "--set", "batch_size=4"]
        result = "genotype.json"
    else:
        flags = [f for f in RETRAIN_TINY if f not in ("digits",)]
        flags[flags.index("--dataset") + 1:flags.index("--dataset") + 1] = [dataset]
        flags[flags.index("--batch-size") + 1] = "8"
        argv = ["retrain", "--genotype", "darts_v2", *flags]
        result = "result.json"
    _finished_then_cut(argv, tmp_path / "run", result)
    capsys.readouterr()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "train" / "c0" / "new.png")  # one image more
    one_line_error(capsys, main([*argv, "-o", str(tmp_path / "run"), "--resume"]), "the dataset changed")


# -------------------------------------------------------------------------------- 9. checkpoint contents
@pytest.fixture(scope="module")
def cut_search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cut") / "s"
    _finished_then_cut(["search", *TINY], out, "genotype.json")
    return out


@pytest.mark.parametrize("edit,expected", [
    ({"stage": 99}, "stage 99"),                       # was UnboundLocalError
    ({"stage": True}, "stage True"),
    ({"stage_state": {}}, "stage_state"),              # was KeyError
    ({"next_epoch": -3}, "next_epoch -3"),             # was a dropout error
    ({"next_epoch": 2.5}, "next_epoch 2.5"),
    ({"global_step": "x"}, "global_step"),
    ({"elapsed": float("nan")}, "elapsed"),
    ({"tracker": {}}, "tracker"),
    ({"rng": {"python": 1}}, "rng"),
])
def test_an_edited_search_checkpoint_is_one_line(cut_search, tmp_path, capsys, edit, expected):
    out = tmp_path / "s"
    shutil.copytree(cut_search, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state.update(edit)
    torch.save(state, out / "checkpoint.pt")
    one_line_error(capsys, main(["search", *TINY, "-o", str(out), "--resume"]), "damaged", expected)


def test_a_search_checkpoint_whose_weights_do_not_fit_is_one_line(cut_search, tmp_path, capsys):
    out = tmp_path / "s"
    shutil.copytree(cut_search, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    name = next(iter(state["stage_state"]["supernet"]))
    state["stage_state"]["supernet"][name] = torch.zeros(7, 7, 7)
    torch.save(state, out / "checkpoint.pt")
    one_line_error(capsys, main(["search", *TINY, "-o", str(out), "--resume"]), "damaged")


@pytest.fixture(scope="module")
def cut_retrain(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cut") / "r"
    _finished_then_cut(["retrain", "--genotype", "darts_v2", *RETRAIN_TINY], out, "result.json")
    return out


@pytest.mark.parametrize("edit,expected", [
    ({"epoch": -5}, "epoch -5"),                       # trained epochs -4..1
    ({"epoch": 7}, "epoch 7"),
    ({"history": []}, "history"),
    ({"best_valid_acc": "high"}, "best_valid_acc"),
])
def test_an_edited_retrain_checkpoint_is_one_line(cut_retrain, tmp_path, capsys, edit, expected):
    out = tmp_path / "r"
    shutil.copytree(cut_retrain, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state.update(edit)
    torch.save(state, out / "checkpoint.pt")
    one_line_error(capsys, main(["retrain", "--genotype", "darts_v2", *RETRAIN_TINY, "-o", str(out), "--resume"]),
                   "damaged", expected)


@pytest.mark.parametrize("genotype", [[], ["--genotype", "darts_v2"]])
def test_a_retrain_checkpoint_holding_nothing_is_not_said_to_be_missing(cut_retrain, tmp_path, capsys, genotype):
    """Issue 29.9: retrain --resume on a checkpoint holding {} said the file does not exist."""
    out = tmp_path / "r"
    shutil.copytree(cut_retrain, out)
    torch.save({}, out / "checkpoint.pt")
    flags = [f for f in RETRAIN_TINY]
    err = one_line_error(capsys, main(["retrain", *genotype, *flags, "-o", str(out), "--resume"]),
                         "not a retrain checkpoint")
    assert "does not exist" not in err


def test_the_shared_cifar10_archive_is_identified_like_any_image_archive(tmp_path, monkeypatch):
    """The nb201-proxy preset's dataset ``cifar10-jpeg`` is an archive load_dataset finds: a resume must notice a
    replaced archive as it notices a changed ``imagefolder:``."""
    from nni_offpolicy.data.datasets import local_cifar10_archive
    from nni_offpolicy.errors import UserError
    from nni_offpolicy.files.inputs import dataset_identity

    try:
        archive = local_cifar10_archive()
    except UserError:
        pytest.skip("no shared cifar10-jpeg archive here")
    assert dataset_identity("cifar10-jpeg") == dataset_identity(f"imagefolder:{archive}") is not None
    assert dataset_identity("digits") is None
