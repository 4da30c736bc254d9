"""A user's own folder of images, as the README's "search your own images" section has it: images of several
sizes, a batch size too big for a small set, the own-small preset with and without --dataset, and retrain on the
same folder. The images are made here (PIL, solid colours per class, several sizes)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from nni_offpolicy.cli import main

# own-small made a few seconds long: the preset's image size and batch size stay, the stages shrink
QUICK = ["--set", "layers=3,3,3", "--set", "epochs=1,1,1", "--set", "warmup_epochs=0,0,0", "--set",
         "max_steps_per_epoch=2", "--set", "eval_images=16", "--set", "eval_layers=3", "--set", "eval_channels=4",
         "--set", "channels=4"]
COLOURS = {"apple": (220, 30, 30), "leaf": (30, 200, 40), "sky": (40, 60, 230)}


def own_folder(root: Path, per_class: int, sizes=((40, 30), (32, 32), (24, 48))) -> Path:
    """CLASS/IMAGE files whose sizes cycle through ``sizes`` (width, height): what a phone or a web scrape gives."""
    for cls, colour in COLOURS.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", sizes[i % len(sizes)], colour).save(root / cls / f"{i:04d}.jpg")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNI_OFFPOLICY_CACHE", str(tmp_path / "cache"))


def test_mixed_sizes_without_image_size_is_one_line_naming_the_file_and_the_fix(tmp_path, capsys):
    """Breakage caught: a mixed-size folder failing with a traceback, or naming no file, or not saying how to
    resize (the issue's 64x48 image among 32x32 ones)."""
    folder = own_folder(tmp_path / "photos", per_class=4)
    rc = main(["search", "--dataset", f"imagefolder:{folder}", "-o", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "apple/0001.jpg" in err[0] and "32x32" in err[0] and "40x30" in err[0], err[0]
    assert "image_size" in err[0], err[0]


def test_batch_size_too_big_for_half_the_images_states_the_rule_and_a_size(tmp_path, capsys):
    """60 images, the demo preset's batch of 32: the search's training half holds 30, so the error says why a
    batch must fit half the images and which batch size would run."""
    folder = own_folder(tmp_path / "photos", per_class=20, sizes=((16, 16),))
    rc = main(["search", "--dataset", f"imagefolder:{folder}", "-o", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "batch_size 32" in err[0] and "30 of the 60 images" in err[0] and "train_portion" in err[0], err[0]
    assert "--set batch_size=8" in err[0], err[0]
    # and the suggested size runs (one stage keeps it seconds long)
    assert main(["search", "--dataset", f"imagefolder:{folder}", "-o", str(tmp_path / "run"), "--quiet",
                 "--set", "batch_size=8", "--set", "layers=3", "--set", "epochs=1", "--set", "warmup_epochs=0",
                 "--set", "ops_kept=1", "--set", "skip_dropout=0", "--set", "size_target=1", "--set",
                 "size_exponent=0", "--set", "flops_target=1", "--set", "flops_exponent=0", "--set",
                 "metric_target=1", "--set", "metric_exponent=0", "--set", "max_steps_per_epoch=1"]) == 0


def test_own_small_without_a_dataset_is_one_line(tmp_path, capsys):
    rc = main(["search", "--preset", "own-small", "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "own-small" in err[0] and "--dataset imagefolder:" in err[0], err[0]
    assert not (tmp_path / "run").exists()


def test_own_small_searches_a_folder_of_mixed_sizes_at_its_image_size(tmp_path, capsys):
    """The preset resizes (image_size), so a folder of mixed sizes runs; genotype.json records the input size
    the search trained at, and profile of that genotype.json gives the search's own FLOPs and params."""
    folder = own_folder(tmp_path / "photos", per_class=30)
    out = tmp_path / "run"
    assert main(["search", "--preset", "own-small", "--dataset", f"imagefolder:{folder}", "-o", str(out),
                 "--quiet", *QUICK]) == 0
    doc = json.loads((out / "genotype.json").read_text())
    size = doc["settings"]["image_size"]
    assert size is not None
    assert doc["eval_size"] == {"layers": 3, "channels": 4, "input_size": size, "in_channels": 3, "num_classes": 3}
    capsys.readouterr()
    assert main(["profile", str(out / "genotype.json"), "--json"]) == 0
    profiled = json.loads(capsys.readouterr().out)
    assert (profiled["params"], profiled["flops"]) == (doc["params"], doc["flops"])
    assert profiled["input_size"] == size and profiled["in_channels"] == 3 and profiled["num_classes"] == 3


def test_retrain_takes_the_same_image_size(tmp_path, capsys):
    folder = tmp_path / "photos"
    own_folder(folder / "train", per_class=6)
    own_folder(folder / "test", per_class=3)
    common = ["retrain", "--genotype", "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_1x1~2|",
              "--dataset", f"imagefolder:{folder}", "--epochs", "1", "--batch-size", "4", "--max-steps", "1",
              "--layers", "1", "--channels", "4", "--no-progress"]
    assert main([*common, "-o", str(tmp_path / "a")]) == 2
    assert "image_size" in capsys.readouterr().err
    assert main([*common, "--image-size", "12", "-o", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b" / "result.json").read_text())
    assert result["settings"]["image_size"] == 12
