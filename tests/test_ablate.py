"""The ablation harness: a real grid (5 variants x 2 seeds) at tiny size on the embedded digits, its table and
plot, resume-by-skipping, retrain, bad input. (The pieces the variants need are tested with their modules:
DARTS' alpha step in test_learners, random shrinking/derivation and the edge-strength rule in test_search.)"""
from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.tools.ablate import COLUMNS, VARIANTS, plan_ablation
from nni_offpolicy.cli import main
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.progressive import derive
from search_spaces.genotypes import genotype_from_dict, sample_to_genotype, validate_genotype
from search_spaces.presets import initial_edge_ops

from fixtures import ONE_VALUE_PER_STAGE, TINY_TWO_STAGES, set_flags

SEEDS = [0, 1]
# the nb201-proxy preset cut to two stages
NB201_TWO_STAGES = {**ONE_VALUE_PER_STAGE, "layers": "1,1", "ops_kept": "2,1", "epochs": "1,1",
                    "warmup_epochs": "0,0"}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The whole grid, once, through the CLI."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ablate") / "grid"
    code = main(["ablate", "--seeds", ",".join(map(str, SEEDS)), "--output", str(out), *set_flags(TINY_TWO_STAGES)])
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
    for variant in ("offpolicy-naswot-taper", "random-naswot-taper"):  # the zero-cost weight's last stage: 1
        assert _doc(grid, variant, 0)["settings"]["zero_cost_exponent"] == [4.0, 1.0]


def test_a_tapered_variant_fits_its_stage_list_to_the_grids_stages(tmp_path):
    three = plan_ablation("nb201-proxy", "offpolicy-naswot-taper", "0", output=tmp_path / "a")
    assert three.runs[0].settings.zero_cost_exponent == [4.0, 4.0, 1.0]
    two = plan_ablation("nb201-proxy", "random-naswot-taper", "0", output=tmp_path / "b",
                        overrides={**NB201_TWO_STAGES})
    assert two.runs[0].settings.zero_cost_exponent == [4.0, 1.0] and two.runs[0].settings.controller == "random"
    mine = plan_ablation("nb201-proxy", "offpolicy-naswot-taper", "0", output=tmp_path / "c",
                         overrides={"zero_cost_exponent": "2"})  # --set still wins over the variant's default
    assert mine.runs[0].settings.zero_cost_exponent == [2.0, 2.0, 2.0]


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
                 *set_flags(TINY_TWO_STAGES)])
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
                 *set_flags(TINY_TWO_STAGES)])
    assert code == 0 and capsys.readouterr().out.count("done already") == 4 + 4 + 2


def test_searches_run_side_by_side_give_the_grid_run_one_after_another(grid, tmp_path, capsys):
    """--jobs 2 runs each search in its own spawned process; every row (genotypes, accuracies, shares, sizes) must
    be the sequential grid's, wall time aside: a search's result may not depend on what ran beside it."""
    out = tmp_path / "parallel"
    code = main(["ablate", "--variants", "offpolicy-uniform,random,darts", "--seeds", "0,1", "--jobs", "2",
                 "--output", str(out), *set_flags(TINY_TWO_STAGES)])
    assert code == 0 and "6 searches, 2 at a time" in capsys.readouterr().out
    sequential = {(r["variant"], r["seed"]): r for r in _rows(grid / "runs.csv")}
    rows = _rows(out / "runs.csv")
    assert [(r["variant"], int(r["seed"])) for r in rows] == [(v, s) for v in ("offpolicy-uniform", "random", "darts")
                                                              for s in SEEDS]
    for row in rows:
        expected = sequential[(row["variant"], row["seed"])]
        assert {k: v for k, v in row.items() if k != "wall_time_s"} == \
            {k: v for k, v in expected.items() if k != "wall_time_s"}, row["variant"]


def test_rerun_with_other_settings_is_refused_before_anything_runs(grid, tmp_path, capsys):
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code = main(["ablate", "--seeds", "0,1", "--output", str(out), *set_flags({**TINY_TWO_STAGES, "channels": 6})])
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
    (["--jobs", "0"], "--jobs must be a whole number >= 1, got 0"),
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


def test_parameter_free_share_counts_the_derived_cells_weightless_ops():
    """Catches a collapse column that counts the wrong ops: an NB201 cell of 3 weightless ops in 6 is 0.5, a DARTS
    genotype counts only its kept edges (normal and reduce), not the op decisions of dropped ones."""
    from nni_offpolicy.tools.ablate import parameter_free_share
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
    args = ["ablate", "--variants", "offpolicy-uniform", "--seeds", "0", "--output", str(out),
            *set_flags(TINY_TWO_STAGES)]
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


def test_a_presets_recipe_stays_out_of_the_grids_controls(tmp_path):
    """nb201-proxy carries the NASWOT recipe as its own reward and pick; the controls of a grid on it must still
    be the plain method they are named for (before, every variant inherited the preset's zero-cost term)."""
    plan = plan_ablation("nb201-proxy", "random,darts,offpolicy-uniform,offpolicy-naswot-space", "0",
                         output=tmp_path / "grid")
    planned = {run.variant: run.settings for run in plan.runs}
    for control in ("random", "darts", "offpolicy-uniform"):
        assert planned[control].zero_cost is None and planned[control].final_pick == "policy", control
        assert planned[control].epochs == [6, 6, 6], control  # their pick needs the last stage trained
    assert planned["offpolicy-naswot-space"].epochs == [6, 6, 0]
    preset = load_settings("nb201-proxy", {"seed": 0, "progress": False, "controller": "reinforce"})
    assert planned["offpolicy-naswot-space"].to_dict() == preset.to_dict()  # the preset is that variant
    mine = plan_ablation("nb201-proxy", "random", "0", output=tmp_path / "mine", overrides={"zero_cost": "naswot"})
    assert mine.runs[0].settings.zero_cost == "naswot"  # --set still reaches a control


def test_the_cli_default_runs_every_variant():
    """The CLI keeps its own list (importing the grid's module would load torch for ``--help``)."""
    from nni_offpolicy.commands.ablate import VARIANT_NAMES

    assert VARIANT_NAMES == tuple(VARIANTS)


# -------------------------------------------------- inputs that only the end of a grid reads, checked when planning
# (issue 29 item 6: a size_budget no table cell meets, a retrain dataset that cannot load; before, both failed only
# after every search had run)
ALL_CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ONE_TINY_NB201_RUN = ["--space", "nb201", "--variants", "random", "--seeds", "0", *set_flags(TINY_TWO_STAGES)]


def _one_line_exit_2_before_any_search(argv: list[str], out: Path, capsys) -> str:
    code = main(["ablate", "--output", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    assert not out.exists(), sorted(p.relative_to(out) for p in out.rglob("*"))  # no search ran, nothing written
    return err


def test_a_size_budget_no_table_cell_meets_is_refused_before_the_first_search(tmp_path, capsys):
    table = tmp_path / "convs.csv"
    table.write_text(f"arch,acc\n{ALL_CONV_CELL},70\n")  # one cell, all convolutions: far above 1e-4 M params
    err = _one_line_exit_2_before_any_search([*ONE_TINY_NB201_RUN, "--table", f"{table}:acc", "--set",
                                              "size_budget=0.0001"], tmp_path / "out", capsys)
    assert "size_budget" in err and "0.0001" in err and str(table) in err, err


def test_a_size_budget_some_table_cell_meets_plans_with_its_optimum(tmp_path):
    """The in-budget optimum is what the summary measures against: found when planning, at the runs' evaluation
    size (digits: 8 px, 1 channel, 10 classes), and the same answer the rows are given later."""
    table = tmp_path / "two.csv"
    light = "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"
    table.write_text(f"arch,acc\n{ALL_CONV_CELL},70\n{light},40\n")
    overrides = {**TINY_TWO_STAGES, "size_budget": 0.01}
    plan = plan_ablation(variants="random", seeds="0", overrides=overrides, output=tmp_path / "out", space="nb201",
                         table=f"{table}:acc")
    assert not (tmp_path / "out").exists()
    [(_, answer)] = plan.budget_optima.items()
    assert answer[0] == 40.0 and answer[2] == 1
    assert plan.budget_eval_size == {"layers": 3, "channels": 4, "input_size": 8, "in_channels": 1,
                                     "num_classes": 10}


def _image_folder(root: Path, splits: bool) -> Path:
    from PIL import Image

    for split in (("train", "test") if splits else ("",)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            Image.new("L", (8, 8), 10 if cls == "a" else 200).save(folder / "0.png")
    return root


@pytest.mark.parametrize("case,expected", [
    ("missing-folder", "does not exist"),
    ("no-test-split", "has no train/ and test/ folders, so split 'test' is not available"),
    ("cifar-not-downloaded", "cifar10 files not found under"),
])
def test_a_retrain_dataset_that_cannot_load_is_refused_before_the_first_search(tmp_path, capsys, case, expected):
    dataset = {"missing-folder": [f"dataset=imagefolder:{tmp_path / 'nowhere'}"],
               "no-test-split": [f"dataset=imagefolder:{_image_folder(tmp_path / 'flat', splits=False)}"],
               "cifar-not-downloaded": ["dataset=cifar10", f"data_dir={tmp_path / 'empty'}"]}[case]
    flags = [f for item in dataset for f in ("--retrain-set", item)]
    err = _one_line_exit_2_before_any_search([*ONE_TINY_NB201_RUN, "--retrain-epochs", "1", *flags],
                                             tmp_path / "out", capsys)
    assert expected in err, err
    assert not (tmp_path / "empty").exists()  # nothing downloaded or created for the check


def test_a_retrain_dataset_with_both_splits_plans(tmp_path):
    folder = _image_folder(tmp_path / "split", splits=True)
    plan = plan_ablation(variants="random", seeds="0", overrides=TINY_TWO_STAGES, output=tmp_path / "out",
                         space="nb201", retrain_epochs=1, retrain_overrides={"dataset": f"imagefolder:{folder}"})
    assert plan.retrain_epochs == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset,plain", [
    ("pdarts-proxy", {"size_exponent": [-0.45, -0.25, -0.2], "size_abs_penalty": [0.0] * 3}),
    ("demo", {"size_exponent": [-0.1] * 3, "size_abs_penalty": [0.0] * 3}),
    ("own-small", {"size_exponent": [-0.1] * 3, "size_abs_penalty": [0.0] * 3}),
])
def test_controls_start_from_the_presets_plain_size_terms_not_its_recipe(tmp_path, preset, plain):
    """A preset's recipe (here its absolute size term) is what the variants are compared against, so the controls
    must not inherit it: the demo's offpolicy-uniform silently ran the demo's new absolute term, and so stopped
    being the ratio-term search its table row names. The recipe's own variant reproduces the preset."""
    plan = plan_ablation(preset=preset, variants="offpolicy-uniform,random,darts,offpolicy-size-abs-naswot",
                         seeds="0", output=tmp_path / "grid",
                         overrides={"dataset": "digits"} if preset == "own-small" else None)
    by_variant = {run.variant: run.settings for run in plan.runs}
    for variant in ("offpolicy-uniform", "random", "darts"):
        assert {k: getattr(by_variant[variant], k) for k in plain} == plain, variant
        assert by_variant[variant].zero_cost is None and by_variant[variant].final_pick == "policy"
    recipe = by_variant["offpolicy-size-abs-naswot"]
    assert recipe.size_exponent == [0.0] * 3 and recipe.size_abs_penalty == [0.2] * 3
    if preset == "pdarts-proxy":  # the preset's recipe is that variant's
        own = load_settings(preset)
        same = ("size_exponent", "size_abs_penalty", "size_target", "zero_cost", "zero_cost_exponent", "final_pick",
                "behaviour")
        assert {k: getattr(recipe, k) for k in same} == {k: getattr(own, k) for k in same}
