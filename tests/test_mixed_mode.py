"""Mixed weight mode (the pdarts preset's: every op of every edge, softmax(alpha)-weighted) end to end: a whole tiny
search, and the same search killed with SIGKILL in stage 2 and resumed, which must end exactly where the
uninterrupted search ends. (A kill in stage 1 is test_search's path-mode test; one kill keeps this one cheap.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_offpolicy.search.loop import run_search
from nni_offpolicy.settings import load_settings
from search_spaces.genotypes import genotype_from_dict, validate_genotype

from fixtures import TINY_MIXED, set_flags

EPOCHS = [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (2, 4), (3, 1), (3, 2)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("mixed") / "ref"
    return run_search(load_settings("demo", TINY_MIXED), out), out


def _records(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_whole_mixed_search_ends_with_a_valid_genotype_of_its_last_stage(reference):
    doc, out = reference
    assert doc["settings"]["weight_mode"] == "mixed"
    genotype = genotype_from_dict(doc["genotype"])
    validate_genotype(genotype, distinct_inputs=True)
    final_ops = doc["stages"][-1]["edge_ops"]
    assert all(len(ops) == 2 for ops in final_ops["normal"].values())
    for k, (op, i) in enumerate(genotype.normal):
        assert op in final_ops["normal"][f"{2 + k // 2}_{i}"]
    records = _records(out)
    assert [(r["stage"], r["epoch"]) for r in records] == EPOCHS
    # mixed mode monitors the weighted supernet (valid_acc) apart from the greedy path (greedy_acc)
    assert any(r["valid_acc"] != r["greedy_acc"] for r in records)
    assert all(0 <= s["supernet_valid_acc"] <= 100 for s in doc["stages"])
    assert [r["controller_updates"] for r in records] == [0, 1, 1, 2, 3, 4, 4, 5]


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nni_offpolicy.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_after(proc: subprocess.Popen, out: Path, records: int) -> None:
    """SIGKILL once metrics.jsonl holds ``records`` epochs (that epoch's checkpoint follows its metrics line, so
    the resume starts from it or from the epoch before)."""
    deadline = time.time() + 240
    while time.time() < deadline and len(_records(out)) < records and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, f"the search ended before it could be killed:\n{proc.communicate()[0]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "genotype.json").exists()


def test_mixed_search_killed_in_stage_2_resumes_to_the_same_result(reference, tmp_path):
    """Breakages caught: a resumed stage that does not restore its controller (alpha, Adam state, baseline, sampling
    generator), its supernet or optimiser, or the RNG; a resume that rebuilds a later stage from the wrong
    (unshrunk) op lists -- in mixed mode, in stage 2."""
    doc, ref_out = reference
    out = tmp_path / "killed"
    command = ["search", "--preset", "demo", "--output", str(out), *set_flags(TINY_MIXED)]
    # killed in stage 2 once its 3rd epoch is logged: the checkpoint on disk is then that of epoch 2 or 3, so the
    # resumed stage holds a controller that has already learned (epoch 1 is warm-up: restoring a controller that
    # never updated would test nothing) and more stage-2 epochs are left to run with it
    _kill_after(_cli(command, tmp_path), out, 5)
    resumed = _cli([*command, "--resume"], tmp_path)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    result = json.loads((out / "genotype.json").read_text())
    assert result["genotype"] == doc["genotype"]
    assert result["derived_valid_acc"] == pytest.approx(doc["derived_valid_acc"])
    assert result["best_sampled"]["genotype"] == doc["best_sampled"]["genotype"]
    for got, want in zip(result["stages"], doc["stages"], strict=True):
        assert got["edge_ops"] == want["edge_ops"]
        for label, probs in want["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(probs, rel=1e-6, abs=1e-9), label
    records, ref_records = _records(out), _records(ref_out)
    assert [(r["stage"], r["epoch"]) for r in records] == EPOCHS
    for got, want in zip(records, ref_records):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
        assert got["greedy_reward"] == pytest.approx(want["greedy_reward"], rel=1e-6)
