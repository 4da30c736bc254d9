"""Retrain: real runs at tiny size on the embedded digits (8x8 grey, no download)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nni_offpolicy.files.checkpoint import load
from nni_offpolicy.cli import main as cli_main
from nni_offpolicy.errors import UserError
from nni_offpolicy.retrain import RetrainSettings, run_retrain

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", layers=3, channels=4, batch_size=64, cutout=0, max_steps=8, device="cpu")
TINY_ARGS = ["--dataset", "digits", "--layers", "3", "--channels", "4", "--batch-size", "64", "--cutout", "0",
             "--max-steps", "8", "--device", "cpu"]
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"



def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_retrain_writes_result_metrics_tensorboard_and_checkpoint(tmp_path):
    seen = []
    settings = RetrainSettings(genotype="darts_v2", epochs=2, **TINY)
    result = run_retrain(settings, tmp_path / "run", on_epoch=seen.append, progress=False)

    out = tmp_path / "run"
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk == result
    assert result["family"] == "darts" and result["genotype"]["normal"][0] == ["sep_conv_3x3", 0]
    assert 0 <= result["test_acc"] <= 100 and 0 <= result["best_valid_acc"] <= 100
    assert result["test_acc"] == result["final_valid_acc"] and result["valid_split"] == "test"
    assert result["params"] > 0 and result["params_m"] == round(result["params"] / 1e6, 4)
    assert result["network"] == {"layers": 3, "channels": 4, "auxiliary": True, "drop_path": 0.2}
    assert result["epochs"] == 2 and result["settings"]["genotype"] == "darts_v2" and result["wall_time_s"] > 0

    rows = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and rows == seen
    assert set(rows[0]) >= {"epoch", "epochs", "train_loss", "train_acc", "valid_acc", "lr"}
    assert rows[0]["lr"] == pytest.approx(0.025) and rows[1]["lr"] == pytest.approx(0.0125)  # cosine over 2
    assert rows[0]["drop_path"] == 0.0 and rows[1]["drop_path"] == pytest.approx(0.1)  # 0.2 * e / E
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = load(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["settings"]["epochs"] == 2

    # Params are reported without the auxiliary head.
    no_aux = run_retrain(RetrainSettings(genotype="darts_v2", epochs=1, auxiliary=False, **TINY), tmp_path / "na",
                         progress=False)
    assert no_aux["params"] == result["params"] and no_aux["network"]["auxiliary"] is False

    with pytest.raises(UserError, match="already holds a finished retrain .*--overwrite"):
        run_retrain(settings, out, progress=False)


def test_killed_run_resumes_to_the_same_accuracy_and_weights(tmp_path, capsys):
    straight = run_retrain(RetrainSettings(genotype="darts_v2", epochs=3, **TINY), tmp_path / "a", progress=False)

    out = tmp_path / "b"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "nni_offpolicy.cli", "retrain", "--genotype", "darts_v2",
                             "--epochs", "3", *TINY_ARGS, "-o", str(out), "--no-progress"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").exists() and read_metrics(out / "metrics.jsonl")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "result.json").exists()
    killed_at = load(out / "checkpoint.pt")["epoch"]
    assert 1 <= killed_at < 3

    # A different architecture is refused; the checkpoint is left alone.
    assert cli_main(["retrain", "--genotype", "pdarts", "--epochs", "3", *TINY_ARGS, "-o", str(out), "--resume",
                     "--no-progress"]) == 2
    assert "different architecture" in capsys.readouterr().err
    # Settings come from the checkpoint, so --resume needs neither --genotype nor the other options.
    assert cli_main(["retrain", "-o", str(out), "--resume", "--no-progress"]) == 0
    assert "test acc" in capsys.readouterr().out

    resumed = json.loads((out / "result.json").read_text())
    assert resumed["test_acc"] == straight["test_acc"]
    assert resumed["best_valid_acc"] == straight["best_valid_acc"]
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert read_metrics(out / "metrics.jsonl")[-1]["train_loss"] == \
        read_metrics(tmp_path / "a" / "metrics.jsonl")[-1]["train_loss"]
    a, b = load(tmp_path / "a" / "checkpoint.pt")["model"], load(out / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nb201_arch_string_retrains_with_a_holdout_split(tmp_path):
    settings = RetrainSettings(genotype=NB201_ARCH, epochs=1, valid_portion=0.2, **{**TINY, "layers": 1})
    result = run_retrain(settings, tmp_path / "nb", progress=False)
    assert result["family"] == "nb201" and result["genotype"] == NB201_ARCH
    assert result["network"] == {"layers": 1, "channels": 4, "auxiliary": False, "drop_path": 0.0}
    assert result["valid_split"] == "holdout" and 0 <= result["test_acc"] <= 100
    assert result["final_valid_acc"] == result["best_valid_acc"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import nni_offpolicy.retrain as retrain_module

    built = []
    build = retrain_module.build_network
    monkeypatch.setattr(retrain_module, "build_network", lambda *a, **k: built.append(build(*a, **k)) or built[-1])

    def poison(row):  # called after epoch 1's checkpoint is on disk: break the weights for epoch 2
        with torch.no_grad():
            built[-1].classifier.weight.fill_(float("nan"))

    settings = RetrainSettings(genotype="darts_v2", epochs=2, **{**TINY, "max_steps": 2})
    with pytest.raises(UserError, match="epoch 2 step 1"):
        run_retrain(settings, tmp_path / "nan", on_epoch=poison, progress=False)
    ckpt = load(tmp_path / "nan" / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and torch.isfinite(ckpt["model"]["classifier.weight"]).all()
    assert not (tmp_path / "nan" / "result.json").exists()


@pytest.mark.parametrize("extra, message", [
    (["--index", "5"], "index 5"),
    (["--epochs", "0"], "epochs"),
    (["--drop-path", "1.0"], "drop_path"),
    (["--valid-portion", "1"], "valid_portion"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    entry = {"genotype": {"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4, "normal_concat": [2, 3, 4, 5],
                          "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5]}}
    exported = tmp_path / "top2.json"
    exported.write_text(json.dumps([entry, entry]))
    out = tmp_path / "out"
    assert cli_main(["retrain", "--genotype", str(exported), *TINY_ARGS, "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not out.exists()


def test_unknown_genotype_name_and_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["retrain", "--genotype", "no_such_net", *TINY_ARGS, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no_such_net" in err
    assert cli_main(["retrain", "--genotype", "darts_v2", *TINY_ARGS, "-o", str(out), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert cli_main(["retrain", *TINY_ARGS, "-o", str(out)]) == 2
    assert "--genotype is required" in capsys.readouterr().err
    assert not out.exists()
