"""Benchmark tables: parsing and ranking, `lookup` end to end, every bad input, `ablate --table`, and the table
reward source (the controller must find a planted best cell; no supernet may be trained).

Every table here is made by the test: a CSV over all 15,625 NB201 cells whose `score` is a sum of random per-edge
op scores with one planted cell taking the best op on every edge (so it is the unique optimum), and small JSON
tables for ranks, ties and formats."""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.cli import main
from nni_offpolicy.data.tables import canonical_arch, load_table, open_table, reward_scale
from search_spaces.genotypes import NB201_EDGES, sample_to_nb201
from search_spaces.ops import NB201_OPS

from fixtures import TINY_TWO_STAGES, set_flags

EDGES = [f"cell/op_{j}_{i}" for j, i in NB201_EDGES]
# an arbitrary cell (not a known good NB201 one): each edge's best op in the synthetic column
PLANTED = dict(zip(EDGES, ["avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3"]))


def _arch(ops) -> str:
    return sample_to_nb201(dict(zip(EDGES, ops)))


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> dict:
    """All 15,625 cells. score (in %): mean over edges of a per-(edge, op) score in [0, 60), the planted op 90..95;
    params_cost: a cost column (lower is better); note: text."""
    rng = np.random.default_rng(7)
    per_edge = {e: dict(zip(NB201_OPS, rng.uniform(0, 60, len(NB201_OPS)))) for e in EDGES}
    for e, op in PLANTED.items():
        per_edge[e][op] = 90 + 5 * rng.uniform()
    path = tmp_path_factory.mktemp("tables") / "full.csv"
    rows = []
    for ops in itertools.product(NB201_OPS, repeat=len(EDGES)):
        score = sum(per_edge[e][op] for e, op in zip(EDGES, ops)) / len(EDGES)
        rows.append((_arch(ops), round(score, 4), sum(op.startswith("nor_conv") for op in ops), "x"))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "score", "params_cost", "note"])
        writer.writerows(rows)
    scores = np.array([r[1] for r in rows])
    return {"path": path, "scores": scores, "archs": [r[0] for r in rows], "median": float(np.median(scores)),
            "best": _arch(PLANTED.values())}


def _brute_rank(scores: np.ndarray, value: float) -> int:
    return 1 + int((scores > value).sum())


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ tables.py
def test_ranks_share_ties_percentiles_formats_canonical_archs_and_the_cache(tmp_path):
    archs = [_arch([op] * 6) for op in NB201_OPS]  # 5 cells
    acc = [50.0, 70.0, 70.0, 90.0, 10.0]
    loss = [0.5, 0.3, 0.3, 0.1, 0.9]
    by_arch = tmp_path / "t.json"
    by_arch.write_text(json.dumps({a: {"acc": v, "train_loss": w} for a, v, w in zip(archs, acc, loss)}))
    rows = tmp_path / "rows.json"  # the other JSON form, arch column under another name, found by its values
    rows.write_text(json.dumps([{"cell": a, "acc": v} for a, v in zip(archs, acc)]))
    table = load_table(by_arch)
    assert table.columns == ["acc", "train_loss"] and len(table) == 5
    ranks = [table.lookup(a, "acc").rank for a in archs]
    assert ranks == [4, 2, 2, 1, 5]  # ties share the better rank
    assert [table.lookup(a, "train_loss").rank for a in archs] == [4, 2, 2, 1, 5]  # a loss: lower is better
    assert table.lookup(archs[1], "acc").percentile == pytest.approx(80.0)  # at least as good as 4 of 5
    assert table.optimum("acc") == (90.0, archs[3]) and table.median("acc") == 70.0
    assert table.optimum("train_loss") == (0.1, archs[3])
    other = load_table(rows)
    assert other.arch_column == "cell" and other.lookup(archs[2], "acc") == table.lookup(archs[2], "acc")
    pasted = " " + archs[3].replace("|", " | ").replace("+", " +\n")  # whitespace a paste picks up
    assert canonical_arch(pasted) == archs[3] and table.lookup(pasted, "acc").value == 90.0
    assert load_table(by_arch) is table  # cached while unchanged ...
    by_arch.write_text(json.dumps({a: {"acc": 1.0} for a in archs}))
    assert load_table(by_arch) is not table and load_table(by_arch).columns == ["acc"]  # ... re-read when changed
    assert reward_scale(load_table(by_arch), "acc") == 1.0 and reward_scale(table, "acc") == 0.01


# ------------------------------------------------------------------------------------------------ lookup
@pytest.fixture(scope="module")
def search_dir(full, tmp_path_factory) -> Path:
    """A real (short) table-reward search: its genotype.json has a derived and a best-sampled cell."""
    out = tmp_path_factory.mktemp("lookup") / "search"
    code = main(["search", "--preset", "nb201", "--set", f"reward_source=table", "--set",
                 f"reward_table={full['path']}:score", "--set", "epochs=2", "--set", "warmup_epochs=1",
                 "--set", "max_steps_per_epoch=20", "--seed", "3", "--output", str(out)])
    assert code == 0
    return out


def test_the_table_source_runs_the_nb201_preset_plain(search_dir):
    """The nb201 preset carries a NASWOT reward and a best-of-sampled pick; the table source scores no images, so
    it runs the plain controller (before: the preset with reward_source=table stopped on 'zero_cost needs
    probe_images')."""
    settings = json.loads((search_dir / "genotype.json").read_text())["settings"]
    assert (settings["zero_cost"], settings["final_pick"]) == (None, "policy")
    assert set(settings["zero_cost_exponent"]) == {0.0}


def test_lookup_prints_every_cell_of_folders_files_top_json_and_arch_strings(full, search_dir, tmp_path, capsys):
    doc = json.loads((search_dir / "genotype.json").read_text())
    derived, best = doc["arch"], doc["best_sampled"]["genotype"]
    top = tmp_path / "top.json"  # export.py's format
    top.write_text(json.dumps({"experiment": "abcd1234", "metric": "default", "architectures": [
        {"rank": 1, "trial_id": "t1", "genotype": full["best"], "family": "nb201"},
        {"rank": 2, "trial_id": "t2", "genotype": full["archs"][0], "family": "nb201"}]}))
    code, out, err = _run(capsys, "lookup", search_dir, search_dir / "genotype.json", top, full["archs"][100],
                          "--table", f"{full['path']}:score", "--json")
    assert code == 0, err
    result = json.loads(out)
    cells = [(r["source"].split("/")[-1], r["which"], r["arch"]) for r in result["results"]]
    assert cells == [("genotype.json", "derived", derived), ("genotype.json", "best sampled", best)] * 2 + [
        ("top.json", "#1", full["best"]), ("top.json", "#2", full["archs"][0]),
        ("arch string", "arch", full["archs"][100])]
    scores = full["scores"]
    for r in result["results"]:
        value = scores[full["archs"].index(r["arch"])]
        got = r["values"]["score"]
        assert list(r["values"]) == ["score"]  # the named column only
        assert got["value"] == pytest.approx(value) and got["rank"] == _brute_rank(scores, value)
        assert got["cells"] == 15625
        assert got["percentile"] == pytest.approx(100 * (scores <= value).mean())
    assert result["results"][4]["values"]["score"]["rank"] == 1  # the planted cell is the optimum
    summary = result["columns"]["score"]
    assert summary["optimum_arch"] == full["best"] and summary["median"] == pytest.approx(full["median"])
    # human: one line per cell and column (every numeric column when none is named), optimum and median
    code, out, err = _run(capsys, "lookup", full["best"], "--table", full["path"])
    assert code == 0, err
    assert "score (higher is better): optimum" in out and "params_cost (lower is better)" in out
    assert f"median {full['median']:.4g}" in out and "note" not in out  # a text column is no numeric column
    line = next(line for line in out.splitlines() if line.startswith("arch string") and " score " in line)
    assert "1 / 15625" in line and line.rstrip().endswith("100.00")
    cost_line = next(line for line in out.splitlines() if line.startswith("arch string") and " params_cost " in line)
    cost = [sum(op.startswith("nor_conv") for op in PLANTED.values())] * 1
    costs = np.array([a.count("nor_conv") for a in full["archs"]])
    assert int(cost_line.split()[-4]) == 1 + int((costs < cost[0]).sum())  # lower is better; ties share a rank


BAD = [
    (["lookup", "{best}", "--table", "{dir}/missing.csv"], "table not found"),
    (["lookup", "{best}", "--table", "{dir}/noarch.csv"], "no arch column"),
    (["lookup", "{best}", "--table", "{full}:nope"], "no numeric column 'nope'; numeric columns: score, params_cost"),
    (["lookup", "{best}", "--table", "{full}:note"], "column 'note' is not numeric (row 1 has 'x')"),
    (["lookup", "{best}", "--table", "{full}:arch"], "is the arch column"),
    (["lookup", "{best}", "--table", "{dir}/small.csv"], "is not in"),
    (["lookup", "{best}", "--table", "{dir}/dup.csv"], "appears twice (rows 1 and 2) with different values"),
    (["lookup", "{best}", "--table", "{dir}"], "is a directory"),
    (["lookup", "{best}", "--table", "{dir}/bad.json"], "not valid JSON"),
    (["lookup", "pdarts", "--table", "{full}"], "benchmark tables are NAS-Bench-201"),
    (["lookup", "{dir}/darts.json", "--table", "{full}"], "DARTS-family genotype"),
    (["lookup", "|nor_conv_3x3~0|+|bogus~0|", "--table", "{full}"], "NAS-Bench-201 arch string needs 3 nodes"),
    (["lookup", "{dir}/nothing.json", "--table", "{full}"], "file not found"),
    (["lookup", "{dir}", "--table", "{full}"], "folder without a genotype.json"),
    (["search", "--preset", "nb201", "--set", "reward_source=table", "--set", "reward_table={full}:nope",
      "--output", "{dir}/out"], "no numeric column 'nope'"),
    (["search", "--preset", "nb201", "--set", "reward_source=table", "--set", "reward_table={dir}/missing.csv:a",
      "--output", "{dir}/out"], "table not found"),
    (["search", "--preset", "nb201", "--set", "reward_source=table", "--set", "reward_table={full}:params_cost",
      "--output", "{dir}/out"], "reads as a cost"),
    (["search", "--preset", "nb201", "--set", "reward_source=table", "--output", "{dir}/out"],
     "needs reward_table=TABLE.csv:COLUMN"),
    (["search", "--preset", "nb201", "--set", "reward_source=table", "--set", "reward_table={full}:score",
      "--set", "controller=darts", "--output", "{dir}/out"], "no gradient for controller=darts"),
    (["search", "--preset", "demo", "--set", "reward_source=table", "--set", "reward_table={full}:score",
      "--output", "{dir}/out"], "needs the nb201 space"),
    (["search", "--preset", "nb201", "--set", "reward_source=table", "--set", "reward_table={full}:score",
      "--set", "zero_cost=naswot", "--output", "{dir}/out"], "loads no images, so zero_cost=naswot has nothing"),
    (["search", "--preset", "nb201", "--set", "reward_source=bench", "--output", "{dir}/out"],
     "unknown reward_source 'bench'; allowed: supernet, table"),
    (["ablate", "--preset", "demo", "--variants", "offpolicy-uniform,random", "--table", "{full}:score", "--output", "{dir}/out"],
     "--table: benchmark tables are NAS-Bench-201"),
    (["ablate", "--preset", "nb201", "--variants", "offpolicy-uniform,random", "--table", "{full}", "--output", "{dir}/out"],
     "has 2 numeric columns; name one"),
    (["ablate", "--preset", "nb201", "--variants", "random", "--table", "{dir}/noarch.csv", "--output", "{dir}/out"], "no arch column"),
]


@pytest.mark.parametrize("argv,expected", BAD, ids=[f"{a[0]}-{e[:30]}" for a, e in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_written(full, tmp_path, capsys, argv, expected):
    best = full["best"]
    (tmp_path / "noarch.csv").write_text("name,acc\na,1\nb,2\n")
    (tmp_path / "small.csv").write_text(f"arch,acc\n{full['archs'][0]},50\n")
    (tmp_path / "dup.csv").write_text(f"arch,acc\n{best},50\n{best.replace('|', '| ', 1)},60\n")
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "darts.json").write_text(json.dumps({"family": "darts", "genotype": {"normal": []}}))
    args = [a.format(best=best, dir=tmp_path, full=full["path"]) for a in argv]
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    assert expected in err, err
    assert not (tmp_path / "out").exists()
    if "is not in" in expected:
        assert canonical_arch(best) in err  # the missing cell, printed canonically


# ------------------------------------------------------------------------------------------------ the reward source
@pytest.fixture(scope="module")
def table_grid(full, tmp_path_factory) -> Path:
    """The nb201 preset's whole controller schedule (3 stages, 30 epochs, 260 steps each) on the table, for the
    off-policy controller and random, 2 seeds each; with --table the same column is looked up."""
    out = tmp_path_factory.mktemp("table-grid") / "grid"
    code = main(["ablate", "--preset", "nb201", "--variants", "offpolicy-uniform,random", "--seeds", "0,1",
                 "--set", "reward_source=table", "--set", f"reward_table={full['path']}:score",
                 "--table", f"{full['path']}:score", "--output", str(out)])
    assert code == 0
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_table_reward_controller_finds_a_top_cell_random_does_not(full, table_grid):
    rows = _rows(table_grid / "runs.csv")
    scores = full["scores"]
    top_percent = np.percentile(scores, 99.5)
    learned = [float(r["derived_table"]) for r in rows if r["variant"] == "offpolicy-uniform"]
    chance = [float(r["derived_table"]) for r in rows if r["variant"] == "random"]
    assert len(learned) == len(chance) == 2
    # a learning controller ends in the table's top 0.5 % (here it finds the planted optimum or a neighbour);
    # a uniformly random derivation of the shrunk op lists lands far below that
    assert min(learned) >= top_percent, (learned, top_percent)
    assert max(chance) < top_percent and np.mean(learned) - np.mean(chance) > 10, (learned, chance)
    for row in rows:  # the reward source's accuracies are the table's values, in %
        assert float(row["derived_valid_acc"]) == pytest.approx(float(row["derived_table"]), abs=1e-3)
        assert int(row["derived_table_rank"]) == _brute_rank(scores, float(row["derived_table"]))


def test_table_reward_trains_no_supernet_and_loads_no_data(full, table_grid):
    doc = json.loads((table_grid / "offpolicy-uniform" / "seed0" / "genotype.json").read_text())
    assert doc["reward_source"] == "table" and doc["reward_column"] == "score" and doc["reward_scale"] == 0.01
    assert doc["settings"]["dataset"] == "cifar10"  # the preset's; its files are not here, so none were read
    state = ckpt.load(table_grid / "offpolicy-uniform" / "seed0" / "checkpoint.pt")
    assert state["stage_state"] is None or set(state["stage_state"]) == {"controller"}
    # no supernet, so no weight steps were timed or logged (speed itself is a benchmark's business, not a test's)
    records = [json.loads(line) for line in
               (table_grid / "offpolicy-uniform" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 30 and all(r["steps"] == 25_000 // 96 and "train_loss" not in r for r in records)
    assert records[-1]["controller_updates"] == 3 * 6 * (260 // 5)  # the supernet schedule's controller steps
    assert doc["derived_valid_acc"] == pytest.approx(full["scores"][full["archs"].index(doc["arch"])])


def test_ablate_table_summary_and_plot(full, table_grid):
    summary = (table_grid / "summary.md").read_text()
    assert f"table median {full['median']:.2f}, optimum {full['scores'].max():.2f}" in summary
    header = next(line for line in summary.splitlines() if line.startswith("| variant | runs"))
    assert "derived cell in table" in header and "best-sampled cell in table" in header
    assert (table_grid / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_ablate_table_on_a_tiny_supernet_grid(full, tmp_path):
    """The supernet reward source on digits (the tiny grid of test_ablate), its cells looked up afterwards."""
    torch.set_num_threads(1)
    out = tmp_path / "grid"
    code = main(["ablate", "--space", "nb201", "--variants", "offpolicy-uniform,random", "--seeds", "0",
                 "--table", f"{full['path']}:score", "--output", str(out), *set_flags(TINY_TWO_STAGES)])
    assert code == 0
    rows = _rows(out / "runs.csv")
    assert [r["variant"] for r in rows] == ["offpolicy-uniform", "random"]
    table, _ = open_table(str(full["path"]))
    for row in rows:
        doc = json.loads((out / row["variant"] / "seed0" / "genotype.json").read_text())
        assert "reward_source" not in doc  # trained through a supernet
        assert float(row["derived_table"]) == pytest.approx(table.value(doc["arch"], "score"))
        assert float(row["best_sampled_table"]) == pytest.approx(table.value(doc["best_sampled"]["genotype"], "score"))
        assert int(row["derived_table_rank"]) == table.lookup(doc["arch"], "score").rank
    assert "| offpolicy-uniform | 1 | " in (out / "summary.md").read_text()


def test_table_reward_search_killed_and_resumed_ends_as_the_uninterrupted_one(full, tmp_path):
    from nni_offpolicy.search.loop import run_search
    from nni_offpolicy.settings import load_settings

    def settings():
        return load_settings("nb201", {"reward_source": "table", "reward_table": f"{full['path']}:score",
                                       "behaviour": "egreedy", "epsilon": 0.3, "max_steps_per_epoch": 40,
                                       "progress": False, "seed": 4})

    whole = run_search(settings(), tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_at_epoch_13(record):
        if record["global_epoch"] == 13:
            raise Killed

    with pytest.raises(Killed):
        run_search(settings(), tmp_path / "killed", on_epoch=kill_at_epoch_13)
    resumed = run_search(settings(), tmp_path / "killed", resume=True)
    for key in ("arch", "derived_valid_acc", "best_sampled"):
        assert resumed[key] == whole[key], key
    untimed = [[{k: v for k, v in s.items() if k != "eval_seconds"} for s in doc["stages"]] for doc in (whole, resumed)]
    assert untimed[0] == untimed[1]  # the same shrinking and probabilities at every stage end
    assert len((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()) == 30


def test_ablate_row_of_a_cell_the_table_lacks_is_nan_and_a_line(full, tmp_path):
    from nni_offpolicy.tools.ablate import Plan, table_values

    small = tmp_path / "small.csv"
    small.write_text(f"arch,acc\n{full['archs'][5]},50\n")
    table, _ = open_table(str(small))
    plan = Plan("nb201", ["random"], [0], tmp_path, [], {}, 0.3, table=table, table_column="acc")
    lines: list[str] = []
    doc = {"arch": full["archs"][5], "genotype": full["archs"][5], "best_sampled": {"genotype": full["best"]}}
    got = table_values(plan, doc, lines.append)
    assert got["derived_table"] == 50.0 and got["derived_table_rank"] == 1
    assert np.isnan(got["best_sampled_table"]) and len(lines) == 1 and canonical_arch(full["best"]) in lines[0]
