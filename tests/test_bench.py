"""The benchmark, on the CPU: its arithmetic must add up, a tiny bench must run every asked configuration on the
same schedule, and bad input must be one line and exit 2. (The fast path itself is test_accel's.)"""
from __future__ import annotations

import json

import pytest
import torch

from nni_offpolicy.tools.bench import default_dataset, extrapolate, plan_bench
from nni_offpolicy.cli import main
from nni_offpolicy.errors import UserError

# A tiny P-DARTS-shaped bench on digits: three stages, 8 -> 5 -> 3 ops, a few steps per epoch.
TINY_BENCH = ["--device", "cpu", "--dataset", "digits", "--layers", "3,3,3", "--batch-size", "64", "--steps", "3",
              "--set", "channels=4", "--set", "rl_interval_steps=2", "--set", "samples_per_update=2",
              "--set", "eval_layers=5", "--set", "eval_channels=8", "--set", "threads=1"]


# ---------------------------------------------------------------------------------------------------- arithmetic
def _epochs(cycles_and_loops: list[list[tuple[float, float]]], steps: int, start: float, evals: list[float]):
    """Synthetic records: per stage, per epoch (cycle seconds, loop seconds); 'epoch' 1..n."""
    epochs, t = [], start
    for s, stage in enumerate(cycles_and_loops, start=1):
        for e, (cycle, loop) in enumerate(stage, start=1):
            t += cycle
            epochs.append({"stage": s, "epoch": e, "seconds": loop, "steps": steps, "t": t})
        t += evals[s - 1]
    return epochs, t


def test_extrapolation_is_warm_epochs_scaled_plus_the_measured_rest():
    stage = [(5.0, 2.0), (3.0, 2.0), (4.0, 2.5), (3.5, 2.5)]  # cold/warm weights-only, first/warm controller
    epochs, last = _epochs([stage, stage], steps=10, start=100.0, evals=[1.0, 2.0])
    out = extrapolate(epochs, [1.0, 2.0], 100.0, last + 0.5, [10, 10], [25, 25], real_steps=100)
    first = out["stages"][0]
    assert first["weights_only"]["s_per_epoch"] == pytest.approx(3.0 + 90 * 0.2)
    assert first["controller"]["s_per_epoch"] == pytest.approx(3.5 + 90 * 0.25)
    assert first["parts"] == pytest.approx({"weights_only_epochs_s": 10 * 21.0, "controller_epochs_s": 15 * 26.0,
                                            "stage_end_eval_s": 1.0, "fixed_s": (5 - 3) + (4 - 3.5)})
    for st in out["stages"]:
        assert st["seconds"] == pytest.approx(sum(st["parts"].values()))
    assert out["finish_s"] == pytest.approx(0.5)
    assert out["full_protocol_s"] == pytest.approx(sum(st["seconds"] for st in out["stages"]) + 0.5)


def test_an_untrained_last_stage_costs_the_protocol_nothing():
    """The NB201 presets' last stage has 0 epochs (the zero-cost pick scores it untrained): the bench still
    measures it, but its warm-up (4 in the preset) must not turn into negative controller epochs."""
    stage = [(5.0, 2.0), (3.0, 2.0), (4.0, 2.5), (3.5, 2.5)]
    epochs, last = _epochs([stage] * 3, steps=10, start=0.0, evals=[1.0, 2.0, 3.0])
    out = extrapolate(epochs, [1.0, 2.0, 3.0], 0.0, last + 0.5, [4, 4, 4], [10, 10, 0], real_steps=10)
    third = out["stages"][2]
    assert (third["warmup_epochs"], third["controller_epochs"], third["seconds"]) == (0, 0, 0.0)
    assert out["stages"][1]["seconds"] > 0 and out["finish_s"] == pytest.approx(0.5)
    assert out["full_protocol_s"] == pytest.approx(sum(st["seconds"] for st in out["stages"][:2]) + 0.5)


def test_extrapolating_a_run_that_measured_the_whole_protocol_gives_its_wall_time():
    stage = [(5.0, 2.0), (3.0, 2.2), (4.0, 2.5), (3.5, 2.9)]
    epochs, last = _epochs([stage] * 3, steps=10, start=0.0, evals=[1.0, 2.0, 3.0])
    out = extrapolate(epochs, [1.0, 2.0, 3.0], 0.0, last + 0.7, [2, 2, 2], [4, 4, 4], real_steps=10)
    assert out["full_protocol_s"] == pytest.approx(out["measured_wall_s"]) == pytest.approx(last + 0.7)


# ---------------------------------------------------------------------------------------------------- the command
def test_bench_cli_end_to_end_same_schedule_in_fp32_and_bf16(tmp_path, capsys):
    out, json_path = tmp_path / "runs", tmp_path / "bench.json"
    code = main(["bench", *TINY_BENCH, "--weight-modes", "path", "--precisions", "bf16,fp32",
                 "--output", str(out), "--json", str(json_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "path bf16" in captured.out and "full protocol" in captured.out
    assert captured.err.count("] path/") == 2  # one result line per measured run
    # and while each runs (issue 27: a bench printed nothing for hours): which run, which epoch, time so far
    assert captured.err.count("bench 1/2 path/bf16: stage 1 epoch 1/4 (") == 1, captured.err
    assert captured.err.count("bench 2/2 path/fp32: stage 3 epoch 4/4 (") == 1, captured.err
    assert "s so far" in captured.err and captured.err.count("bench 1/2 path/bf16: measuring") == 1
    doc = json.loads(json_path.read_text())
    assert doc["steps_per_epoch"] == 718 // 64 and doc["steps_measured"] == 3
    assert doc["anchor"] is None and "layers [3, 3, 3]" in doc["anchor_note"]  # not P-DARTS' shapes
    bf16, fp32 = doc["runs"]
    assert (bf16["precision"], fp32["precision"]) == ("bf16", "fp32")
    for run in doc["runs"]:
        for key in ("full_protocol_s", "full_protocol_h", "finish_s", "measured_wall_s", "stage1_valid_acc",
                    "stage1_valid_acc_delta_vs_fp32", "steps_run", "reward_samples", "output_dir"):
            assert run[key] is not None, key
        assert len(run["stages"]) == 3 and [st["ops_per_edge"] for st in run["stages"]] == [8, 5, 3]
        for st in run["stages"]:
            assert st["peak_memory_gb"] is None  # CPU: nothing comparable to measure
            assert 0 <= st["supernet_valid_acc"] <= 100
            assert st["seconds"] == pytest.approx(sum(st["parts"].values()))
            assert (st["warmup_epochs"], st["controller_epochs"]) == (10, 15)
            for phase in ("weights_only", "controller"):
                figures = st[phase]
                assert figures["s_per_step"] > 0 and figures["images_per_s"] > 0 and figures["measured_steps"] == 3
                assert figures["s_per_epoch"] > figures["loop_s_per_epoch"] - 1e-9
        assert run["full_protocol_s"] == pytest.approx(sum(st["seconds"] for st in run["stages"]) + run["finish_s"])
    # bf16 changes how, not what: the same steps, the same controller updates and reward samples
    assert bf16["steps_run"] == fp32["steps_run"] == 3 * 4 * 3
    assert bf16["controller_updates"] == fp32["controller_updates"] > 0
    assert bf16["reward_samples"] == fp32["reward_samples"]
    assert [e["steps"] for e in bf16["epochs"]] == [e["steps"] for e in fp32["epochs"]]
    assert fp32["stage1_valid_acc_delta_vs_fp32"] == 0.0
    records = [json.loads(line) for line in (out / "path-bf16" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["steps"] == 3 and r["peak_memory_gb"] is None for r in records)
    summary = json.loads((out / "path-bf16" / "genotype.json").read_text())
    assert summary["settings"]["precision"] == "bf16"
    assert all(st["eval_seconds"] > 0 for st in summary["stages"])
    # Again into the same folder: both runs are reused, not measured; with --json - the JSON goes to stdout
    code = main(["bench", *TINY_BENCH, "--weight-modes", "path", "--precisions", "bf16,fp32", "--output", str(out),
                 "--json", "-"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err.count("reused") == 2 and "full protocol" in captured.err, captured.err
    again = json.loads(captured.out)
    assert [r["full_protocol_s"] for r in again["runs"]] == [r["full_protocol_s"] for r in doc["runs"]]


@pytest.mark.parametrize("argv,expected", [
    (["search", "--set", "precision=fp16"], "precision must be one of auto, fp32, bf16, got 'fp16'"),
    (["search", "--set", "channels_last=maybe"], "channels_last must be one of auto, on, off, got 'maybe'"),
    (["search", "--set", "compile=graphs"], "compile must be one of off, ops, got 'graphs'"),
    (["bench", "--dataset", "digits", "--set", "channels_last=sideways"], "channels_last must be one of"),
    (["bench", "--dataset", "digits", "--precisions", "fp16"], "--precisions: 'fp16' is not allowed; allowed: auto"),
    (["bench", "--dataset", "digits", "--weight-modes", "both"], "--weight-modes: 'both' is not allowed"),
    (["bench", "--dataset", "digits", "--steps", "0"], "--steps must be a positive integer"),
    (["bench", "--dataset", "digits", "--steps", "5"], "--steps 5 is below rl_interval_steps (10)"),
    (["bench", "--dataset", "digits", "--set", "weight_mode=path"], "the bench sets it; use --weight-modes"),
    (["bench", "--dataset", "imagefolder:/nonexistent/c.tar.gz"], "/nonexistent/c.tar.gz does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    code = main([*argv, "--output", str(out)] + (["--quiet"] if argv[0] == "search" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_missing_default_dataset_names_where_it_looked(tmp_path):
    with pytest.raises(UserError, match=r"no CIFAR-10 archive found .*shared/data/cifar10-jpeg.tar.gz.*--dataset"):
        default_dataset([tmp_path])
    archive = tmp_path / "shared" / "data" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.touch()
    assert default_dataset([tmp_path]) == f"imagefolder:{archive}"


def test_non_cifar_presets_keep_their_own_data(tmp_path):
    plan = plan_bench("demo", device="cpu", steps=4, output=tmp_path / "b")
    assert plan.protocol.dataset == "digits" and all(r.settings.dataset == "digits" for r in plan.runs)
    # on a CPU auto is fp32: one run per weight mode
    assert [(r.weight_mode, r.precision) for r in plan.runs] == [("mixed", "fp32"), ("path", "fp32")]
    assert all((r.settings.epochs, r.settings.max_steps_per_epoch) == ([4, 4, 4], 4) for r in plan.runs)
    assert plan.protocol.epochs == [8, 8, 8]  # the protocol extrapolated keeps the preset's epochs
