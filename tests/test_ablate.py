"""The ablation harness: a real grid (5 variants x 2 seeds) at tiny size on the embedded digits, its table and
plot, resume-by-skipping, retrain, bad input; and the pieces the variants need (DARTS' alpha gradient, random
shrinking/derivation, DARTS' edge-strength input rule)."""
from __future__ import annotations

import csv
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from nni_offpolicy import checkpoint as ckpt
from nni_offpolicy.ablate import COLUMNS, VARIANTS
from nni_offpolicy.cli import main
from nni_offpolicy.controller import Decision, OffPolicyController
from nni_offpolicy.learners import darts_alpha_step
from nni_offpolicy.progressive import build_decisions, derive, shrink
from nni_offpolicy.supernet import Supernet
from search_spaces.genotypes import genotype_from_dict, sample_to_genotype, validate_genotype
from search_spaces.presets import build_space, initial_edge_ops

# Two stages of 3 cells, one warm-up epoch and one controlled epoch each, 4 steps per epoch, path-mode weights:
# every phase of every variant runs (warm-up, controller/DARTS/random steps, random or pi shrinking, derivation)
# in about 4 s a run on one thread. Stage lists the demo preset gives 3 entries are set for 2 stages.
TINY2 = {"layers": "3,3", "epochs": "2,2", "warmup_epochs": "1,1", "ops_kept": "2,1", "channels": 4,
         "batch_size": 32, "train_portion": 0.8, "weight_mode": "path", "max_steps_per_epoch": 4,
         "rl_interval_steps": 2, "samples_per_update": 4, "eval_layers": 3, "eval_channels": 4, "threads": 1,
         "skip_dropout": 0, "size_target": 0.3, "size_exponent": -0.1, "flops_target": 600, "flops_exponent": 0,
         "metric_target": 1, "metric_exponent": 0}
SEEDS = [0, 1]


def _flags(overrides):
    return [f for k, v in overrides.items() for f in ("--set", f"{k}={v}")]



@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The whole grid, once, through the CLI."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ablate") / "grid"
    code = main(["ablate", "--seeds", ",".join(map(str, SEEDS)), "--output", str(out), *_flags(TINY2)])
    assert code == 0
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _doc(grid: Path, variant: str, seed: int) -> dict:
    import json

    return json.loads((grid / variant / f"seed{seed}" / "genotype.json").read_text())


# ------------------------------------------------------------------------------------------------ the grid
def test_grid_table_has_one_row_per_run_with_every_column_filled(grid):
    rows = _rows(grid / "runs.csv")
    assert [(r["variant"], int(r["seed"])) for r in rows] == [(v, s) for v in VARIANTS for s in SEEDS]
    assert list(rows[0]) == COLUMNS
    for row in rows:
        for column in COLUMNS:
            assert row[column].strip() not in ("", "nan", "n/a"), (row["variant"], row["seed"], column)
        for column in ("params_m", "flops_m", "derived_valid_acc", "best_sampled_valid_acc", "argmax_frozen_share",
                       "top_op_share", "wall_time_s"):
            assert math.isfinite(float(row[column])), column
        assert 0 <= float(row["argmax_frozen_share"]) <= 1 and 0 < float(row["top_op_share"]) <= 1
        assert row["genotype"].startswith("Genotype(normal=") and row["best_sampled"].startswith("Genotype(")
        # the row is the run's own genotype.json
        doc = _doc(grid, row["variant"], int(row["seed"]))
        assert row["genotype"] == doc["genotype_str"]
        assert float(row["derived_valid_acc"]) == pytest.approx(doc["derived_valid_acc"], abs=1e-4)
        assert float(row["top_op_share"]) == pytest.approx(doc["stages"][-1]["top_op_share"], abs=1e-4)
    summary = (grid / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| ") and "±" in line]
    assert [line.split("|")[1].strip() for line in table] == list(VARIANTS)
    assert all("nan" not in line for line in table)
    assert summary.count("`Genotype(normal=") == 2 * len(rows)  # derived + best sampled per run
    png = (grid / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_every_variant_produces_a_valid_genotype_of_its_last_stage(grid):
    for variant, extra in VARIANTS.items():
        for seed in SEEDS:
            doc = _doc(grid, variant, seed)
            assert doc["settings"]["controller"] == extra["controller"] and doc["settings"]["seed"] == seed
            if "behaviour" in extra:
                assert doc["settings"]["behaviour"] == extra["behaviour"]
            genotype = validate_genotype(genotype_from_dict(doc["genotype"]), distinct_inputs=True)
            ops = [op for op, _ in genotype.normal + genotype.reduce]
            assert "none" not in ops and [op for op, _ in genotype.normal].count("skip_connect") <= 2
            final = doc["stages"][-1]["edge_ops"]
            for kind in ("normal", "reduce"):
                for k, (op, i) in enumerate(getattr(genotype, kind)):
                    assert op in final[kind][f"{2 + k // 2}_{i}"], (variant, seed, kind, k)
            assert all(len(ops) == 2 for ops in final["normal"].values())  # ops_kept 2 after stage 1
            assert doc["best_sampled"]["stage"] == 2 and doc["params_m"] > 0
    egreedy = _doc(grid, "offpolicy-egreedy", 0)["settings"]
    assert egreedy["epsilon"] == 0.3


def test_random_variant_differs_across_seeds_and_shrinks_at_random(grid):
    docs = [_doc(grid, "random", seed) for seed in SEEDS]
    assert docs[0]["genotype"] != docs[1]["genotype"]
    initial = initial_edge_ops("pdarts")
    for doc in docs:
        kept = doc["stages"][-1]["edge_ops"]  # what stage 1's shrink kept, 2 of 8 ops per edge
        first_two = sum(kept[kind][key] == initial[kind][key][:2] for kind in kept for key in kept[kind])
        assert first_two < 8, "random shrinking kept the first ops of the list (uniform pi's tie order)"
        # no learning: alpha stayed at zero, so pi stayed uniform
        for stage in doc["stages"]:
            for probs in stage["probabilities"].values():
                assert max(probs.values()) == pytest.approx(min(probs.values()))


def test_darts_variant_learns_op_alphas_by_gradient_and_no_input_alphas(grid):
    doc = _doc(grid, "darts", 0)
    probs = doc["stages"][0]["probabilities"]
    op_spread = [max(p.values()) - min(p.values()) for label, p in probs.items() if "/op_" in label]
    input_spread = [max(p.values()) - min(p.values()) for label, p in probs.items() if "/input_" in label]
    assert min(op_spread) > 1e-3  # every edge's op alphas moved
    assert max(input_spread) == pytest.approx(0.0, abs=1e-12)  # DARTS has no input-pair parameters
    state = ckpt.load(grid / "darts" / "seed0" / "checkpoint.pt")
    assert state["stage_state"]["controller"]["updates"] > 0
    # its inputs are the 2 strongest edges per node (edge strength), not a learned pair
    last = doc["stages"][-1]
    again = derive("darts", last["edge_ops"], last["probabilities"], inputs="edge_strength")
    assert sample_to_genotype(again) == genotype_from_dict(doc["genotype"])


# ------------------------------------------------------------------------------------------------ resume, retrain
def test_rerun_skips_finished_runs_and_retrains_with_the_reference(grid, tmp_path, capsys):
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/genotype.json")}
    capsys.readouterr()
    code = main(["ablate", "--seeds", "0,1", "--variants", "random,darts", "--retrain-epochs", "1",
                 "--retrain-set", "max_steps=2", "--retrain-set", "batch_size=64", "--output", str(out),
                 *_flags(TINY2)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.count("done already") == 4 and "skipped" in printed
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no search ran again
    rows = _rows(out / "runs.csv")
    assert [(r["variant"], int(r["seed"])) for r in rows] == [("random", 0), ("random", 1), ("darts", 0),
                                                              ("darts", 1)]
    for row in rows:
        assert 0 <= float(row["retrain_test_acc"]) <= 100 and float(row["retrain_params_m"]) > 0
        assert (out / row["variant"] / f"seed{row['seed']}" / "retrain" / "result.json").exists()
    reference = _rows(out / "reference.csv")
    assert [int(r["seed"]) for r in reference] == [0, 1] and all(r["genotype"] == "pdarts" for r in reference)
    summary = (out / "summary.md").read_text()
    assert "retrain test acc (%)" in summary and "Published P-DARTS cell, same retrain schedule" in summary
    # a second re-run retrains nothing either
    code = main(["ablate", "--seeds", "0,1", "--variants", "random,darts", "--retrain-epochs", "1",
                 "--retrain-set", "max_steps=2", "--retrain-set", "batch_size=64", "--output", str(out),
                 *_flags(TINY2)])
    assert code == 0 and capsys.readouterr().out.count("done already") == 4 + 4 + 2


def test_rerun_with_other_settings_is_refused_before_anything_runs(grid, tmp_path, capsys):
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code = main(["ablate", "--seeds", "0,1", "--output", str(out), *_flags({**TINY2, "channels": 6})])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "other settings (channels)" in err, err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("flags,expected", [
    (["--variants", "offpolicy-uniform,greedy"], "unknown variant 'greedy'; allowed: offpolicy-uniform, "
                                                 "offpolicy-egreedy, on-policy, random, darts, "
                                                 "offpolicy-naswot"),
    (["--variants", ""], "--variants: give at least one of"),
    (["--seeds", ""], "--seeds: give at least one seed"),
    (["--seeds", " , "], "--seeds: give at least one seed"),
    (["--seeds", "0,x"], "--seeds: expected an integer, got 'x'"),
    (["--epsilon", "1.5"], "--epsilon must be in [0, 1]"),
    (["--set", "controller=darts"], "--set controller: the harness sets it per run; use --variants"),
    (["--set", "seed=3"], "use --seeds"),
    (["--set", "layers=5,11"], "has 3 entries but layers has 2 stages"),
    (["--set", "colour=blue"], "unknown setting 'colour'"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--retrain-epochs", "0"], "--retrain-epochs must be >= 1"),
    (["--retrain-set", "max_steps=2"], "--retrain-set needs --retrain-epochs"),
    (["--retrain-epochs", "1", "--retrain-set", "epochs=3"], "--retrain-set epochs: set by --retrain-epochs"),
    (["--retrain-epochs", "1", "--retrain-set", "lr=-1"], "lr must be > 0"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, flags, expected):
    out = tmp_path / "out"
    code = main(["ablate", "--output", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_unknown_controller_setting_is_one_line(tmp_path, capsys):
    code = main(["search", "--output", str(tmp_path / "out"), "--set", "controller=evolution"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown controller 'evolution'; allowed: reinforce, darts, random" in err
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------------ the pieces
class TwoOpNet(nn.Module):
    """A contrived one-edge supernet: op "good" maps x to the right logits, op "bad" to a wrong class; the mixed
    output is w_good * good(x) + w_bad * bad(x)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0))  # a weight, which the alpha step must leave alone
        self.weights = None

    def set_mixed(self, weights):
        self.weights = weights["cell/op_1_0"]

    def forward(self, x):
        good, bad = self.scale * x, self.scale * x.roll(1, dims=1)
        return self.weights[0] * bad + self.weights[1] * good  # options ("bad", "good"): no tie favours good


def test_darts_step_moves_alpha_toward_the_op_with_lower_validation_loss():
    controller = OffPolicyController([Decision("cell/op_1_0", ("bad", "good"), "op")], lr=0.1)
    net = TwoOpNet()
    y = torch.arange(8) % 4
    x = nn.functional.one_hot(y, 4).float()
    losses = []
    for _ in range(10):
        stats = darts_alpha_step(controller, net, [0], x, y)
        assert stats["darts/alpha_grad_norm"] > 0  # softmax(alpha) is not detached
        losses.append(stats["darts/valid_loss"])
    pi = controller.probabilities()["cell/op_1_0"]
    assert pi["good"] > 0.7 > 0.3 > pi["bad"]
    assert losses[-1] < losses[0]
    assert net.scale.grad is None and net.scale.item() == 3.0  # weights frozen: no gradient computed
    assert controller.updates == 10


def test_darts_step_on_the_real_supernet_changes_op_alphas_only():
    edge_ops = initial_edge_ops("darts")
    supernet = Supernet(build_space("darts", edge_ops, layers=3, channels=4, num_classes=4))
    supernet.train()
    controller = OffPolicyController(build_decisions("darts", edge_ops), lr=0.05)
    op_rows = [r for r, d in enumerate(controller.decisions) if d.kind == "op"]
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)
    stats = darts_alpha_step(controller, supernet, op_rows, x, y)
    assert stats["darts/alpha_grad_norm"] > 0 and math.isfinite(stats["darts/valid_loss"])
    alpha = controller.alpha.detach()
    moved = (alpha != 0).any(dim=1)
    assert moved[op_rows].all()
    assert not moved[[r for r in range(len(controller.decisions)) if r not in op_rows]].any()
    assert all(p.grad is None for p in supernet.parameters())


def test_random_shrink_is_uniform_seeded_and_unbiased():
    edge_ops = initial_edge_ops("darts")
    probs = OffPolicyController(build_decisions("darts", edge_ops)).probabilities()  # uniform pi
    ops = edge_ops["normal"]["2_0"]
    # uniform pi without a generator: the tie order keeps the first ops (the bias the random variant avoids)
    assert shrink(edge_ops, probs, 2)["normal"]["2_0"] == ops[:2]
    counts: Counter = Counter()
    for seed in range(200):
        kept = shrink(edge_ops, probs, 2, generator=torch.Generator().manual_seed(seed))
        assert all(len(v) == 2 for kind in kept.values() for v in kind.values())
        counts.update(kept["normal"]["2_0"])
    assert set(counts) == set(ops) and max(counts.values()) < 2 * min(counts.values())  # ~50 each
    same = [shrink(edge_ops, probs, 3, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert same[0] == same[1]


def test_random_derivation_gives_valid_different_genotypes():
    edge_ops = initial_edge_ops("darts")
    probs = OffPolicyController(build_decisions("darts", edge_ops)).probabilities()
    genotypes = set()
    for seed in range(20):
        sample = derive("darts", edge_ops, probs, 2, generator=torch.Generator().manual_seed(seed))
        genotype = validate_genotype(sample_to_genotype(sample), distinct_inputs=True)
        assert "none" not in [op for op, _ in genotype.normal + genotype.reduce]
        assert [op for op, _ in genotype.normal].count("skip_connect") <= 2
        genotypes.add(str(genotype))
    assert len(genotypes) == 20
    nb = initial_edge_ops("nb201")
    nb_probs = OffPolicyController(build_decisions("nb201", nb)).probabilities()
    archs = {str(derive("nb201", nb, nb_probs, generator=torch.Generator().manual_seed(s))) for s in range(10)}
    assert len(archs) > 1


def test_edge_strength_picks_the_two_strongest_edges_not_the_pair_probabilities():
    edge_ops = initial_edge_ops("darts")
    probs = OffPolicyController(build_decisions("darts", edge_ops)).probabilities()
    n = len(edge_ops["normal"]["3_0"])
    for i, strongest in ((0, 0.2), (1, 0.5), (2, 0.6)):  # node 3's edges: best non-none op probability
        probs[f"normal/op_3_{i}"] = {op: (strongest if op == "sep_conv_3x3" else (1 - strongest) / (n - 1))
                                     for op in edge_ops["normal"]["3_0"]}
    probs["normal/op_3_0"]["none"] = 0.9  # `none` does not count toward an edge's strength
    probs["normal/input_3"] = {"0+1": 0.8, "0+2": 0.1, "1+2": 0.1}
    assert derive("darts", edge_ops, probs)["normal/input_3"] == [0, 1]
    by_strength = derive("darts", edge_ops, probs, inputs="edge_strength")
    assert by_strength["normal/input_3"] == [1, 2]
    validate_genotype(sample_to_genotype(by_strength), distinct_inputs=True)
    with pytest.raises(ValueError, match="unknown input rule"):
        derive("darts", edge_ops, probs, inputs="strongest")


class _Killed(Exception):
    pass


@pytest.mark.parametrize("controller", ["darts", "random"])
def test_darts_and_random_searches_resume_to_the_same_result(tmp_path, controller):
    from nni_offpolicy.search import run_search
    from nni_offpolicy.settings import load_settings

    overrides = {"space": "nb201", "layers": "1,1,1", "epochs": "2,2,2", "warmup_epochs": "1,1,1",
                 "ops_kept": "3,2,1", "channels": 4, "batch_size": 128, "max_steps_per_epoch": 4,
                 "rl_interval_steps": 2, "samples_per_update": 4, "eval_layers": 1, "eval_channels": 4,
                 "progress": False, "threads": 1, "controller": controller, "seed": 3}
    reference = run_search(load_settings("demo", overrides), tmp_path / "ref")
    seen = []

    def kill_in_stage_2(record):
        seen.append(record)
        if (record["stage"], record["epoch"]) == (2, 2):  # its checkpoint is not written: resume from (2, 1)
            raise _Killed

    with pytest.raises(_Killed):
        run_search(load_settings("demo", overrides), tmp_path / "run", on_epoch=kill_in_stage_2)
    resumed = run_search(load_settings("demo", overrides), tmp_path / "run", resume=True)
    assert resumed["arch"] == reference["arch"]
    assert resumed["derived_valid_acc"] == pytest.approx(reference["derived_valid_acc"])
    def untimed(stages):  # everything but the stage-end evaluation's wall time
        return [{k: v for k, v in st.items() if k != "eval_seconds"} for st in stages]

    assert untimed(resumed["stages"]) == untimed(reference["stages"])


def test_parameter_free_share_counts_the_derived_cells_weightless_ops():
    """Catches a collapse column that counts the wrong ops: an NB201 cell of 3 weightless ops in 6 is 0.5, a DARTS
    genotype counts only its kept edges (normal and reduce), not the op decisions of dropped ones."""
    from nni_offpolicy.ablate import parameter_free_share
    from search_spaces.genotypes import genotype_to_dict, published_genotype

    nb201 = {"family": "nb201", "sample": {"cell/op_1_0": "none", "cell/op_2_0": "skip_connect",
                                           "cell/op_2_1": "nor_conv_1x1", "cell/op_3_0": "avg_pool_3x3",
                                           "cell/op_3_1": "nor_conv_3x3", "cell/op_3_2": "nor_conv_3x3"}}
    assert parameter_free_share(nb201) == 0.5
    pdarts = genotype_to_dict(published_genotype("pdarts"))
    ops = [op for op, _ in pdarts["normal"] + pdarts["reduce"]]
    expected = sum(op in ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3") for op in ops) / len(ops)
    assert 0 < expected < 1
    assert parameter_free_share({"family": "darts", "genotype": pdarts}) == pytest.approx(expected)


def test_a_grid_killed_mid_run_resumes_that_run_from_its_checkpoint(grid, tmp_path, capsys):
    """ablate SIGKILLed in the middle of a search (at its first epoch's checkpoint): the rerun resumes that
    search (not from scratch, not skipped) and it ends exactly as the uninterrupted grid's same run did."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "grid"
    args = ["ablate", "--variants", "offpolicy-uniform", "--seeds", "0", "--output", str(out), *_flags(TINY2)]
    proc = subprocess.Popen([sys.executable, "-m", "nni_offpolicy.cli", *args], cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    metrics = out / "offpolicy-uniform" / "seed0" / "metrics.jsonl"
    checkpoint = out / "offpolicy-uniform" / "seed0" / "checkpoint.pt"  # written after the epoch's metrics line
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not checkpoint.exists():
        time.sleep(0.02)
    assert proc.poll() is None, f"the grid ended before it could be killed:\n{proc.communicate()[0]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = out / "offpolicy-uniform" / "seed0"
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "genotype.json").exists()
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/1] offpolicy-uniform seed 0 (resumed): derived valid acc" in printed, printed
    resumed, straight = json.loads((run_dir / "genotype.json").read_text()), _doc(grid, "offpolicy-uniform", 0)
    assert resumed["genotype"] == straight["genotype"]
    assert resumed["derived_valid_acc"] == pytest.approx(straight["derived_valid_acc"])
    assert [{k: v for k, v in s.items() if k != "eval_seconds"} for s in resumed["stages"]] == \
        [{k: v for k, v in s.items() if k != "eval_seconds"} for s in straight["stages"]]
    assert [(r["stage"], r["epoch"]) for r in map(json.loads, metrics.read_text().splitlines())] == \
        [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [r["variant"] for r in _rows(out / "runs.csv")] == ["offpolicy-uniform"]
