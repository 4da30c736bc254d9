"""``bench --against nni`` and scripts/device_check.sh at toy size on the CPU: NNI 3.0's own strategies and ours
side by side, every side's figures and every pair's ratio present; bad input is one line and exit 2.

NasExperiment writes into ``~/nni-experiments``: $HOME points at a private tmp folder (conftest's private_home).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nni_offpolicy.tools.bench_nni import PAIRS, SIDES
from nni_offpolicy.cli import main

REPO = Path(__file__).resolve().parents[1]
MPLCONFIGDIR = os.environ.get("MPLCONFIGDIR") or str(Path.home() / ".cache" / "matplotlib")
# 3 cells (the fewest with two reduction cells), 4 channels, batch 8, 3 timed steps, one round: a few seconds
TINY = ["bench", "--against", "nni", "--device", "cpu", "--dataset", "digits", "--layers", "3", "--batch-size", "8",
        "--steps", "3", "--set", "channels=4", "--set", "threads=1", "--rounds", "1"]


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("argv,expected", [
    (["--against", "tensorflow"], "the only comparison is --against nni"),
    (["--against", "nni", "--rounds", "0"], "--rounds must be a positive integer"),
    (["--against", "nni", "--warm-skip", "-1"], "--warm-skip must be >= 0"),
    (["--against", "nni", "--layers", "5,11,17"], "--layers with --against nni is one cell count"),
    (["--against", "nni", "--layers", "2"], "--layers must be >= 3 cells"),
    (["--against", "nni", "--steps", "0"], "--steps must be a positive integer"),
    (["--against", "nni", "--sides", "nni-enas"], "--sides: 'nni-enas' is not allowed"),
    (["--against", "nni", "--set", "lr=0.1"], "--set lr: --against nni takes only"),
    (["--against", "nni", "--weight-modes", "path"], "--against nni runs its own fixed sides"),
    (["--against", "nni", "--precisions", "fp32,bf16"], "--precisions with --against nni takes one value"),
    (["--rounds", "3"], "--rounds only applies with --against nni"),
    (["--sides", "ours-path"], "--sides only applies with --against nni"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    code = main(["bench", "--device", "cpu", "--dataset", "digits", *argv, "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_tiny_side_by_side_gives_every_side_and_every_ratio(tmp_path, private_home, capsys):
    out, js = tmp_path / "b", tmp_path / "b.json"
    code = main([*TINY, "--output", str(out), "--json", str(js)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(js.read_text())
    assert list(doc["sides"]) == list(SIDES) and doc["shape"] == {"cells": 3, "channels": 4, "batch_size": 8}
    for name, side in doc["sides"].items():
        assert side["ran"] and side["s_per_step"] > 0 and side["peak_memory_gb"] > 0, name
        assert math.isclose(side["images_per_s"], 8 / side["s_per_step"])
        assert all(r["steps_timed"] == 3 for r in side["rounds"]), (name, side["rounds"])
    assert [(p["ours"], p["nni"]) for p in doc["pairs"]] == list(PAIRS)
    for p in doc["pairs"]:
        ratio = doc["sides"][p["nni"]]["s_per_step"] / doc["sides"][p["ours"]]["s_per_step"]
        assert math.isclose(p["speedup"], ratio) and p["memory_ratio"] > 0
    assert doc["sides"]["ours-darts"]["rounds"][0]["rl_interval_steps"] == 1  # one alpha step per batch
    # NNI ran in the private HOME, not in the real ~/nni-experiments
    assert (private_home / "nni-experiments").is_dir()
    for name in SIDES:
        assert name in captured.out
    assert "speed-up" in captured.out and "NNI 3.0 strategy.DARTS()" in captured.out


def test_device_check_script_at_toy_size_on_cpu(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "MPLCONFIGDIR": MPLCONFIGDIR, "OMP_NUM_THREADS": "1",
           "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    (tmp_path / "home").mkdir()
    out = tmp_path / "dc"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "device_check.sh"), "--device", "cpu", "--tiny",
                           "--no-install", "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "device_check.json").read_text())
    assert doc["device"] == "cpu" and doc["tiny"] is True
    for part in ("bench_mixed", "bench_path", "against_nni", "nb201"):
        assert doc["parts"][part]["rc"] == 0, (part, doc["parts"][part], proc.stdout, proc.stderr)
    assert doc["parts"]["install"]["status"] == "skipped"
    assert len(doc["parts"]["nb201"]["seeds"]) == 3
    assert doc["results"]["against_nni"]["pairs"] and doc["results"]["bench"]["runs"]
    assert "device check" in proc.stdout
