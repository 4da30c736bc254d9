"""What the outputs hold, not only that they exist: the search's TensorBoard scalars by name and value, cell.png,
--print-settings, --config naming a preset, and export's --minimize and ``-o -`` on an experiment database."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from nni_offpolicy.cli import main
from nni_offpolicy.settings import load_settings

from fixtures import TINY_NB201, set_flags


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("outputs") / "run"
    assert main(["search", "--preset", "nb201", "--dataset", "digits", "--quiet", "--output", str(out),
                 *set_flags(TINY_NB201)]) == 0
    return out


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (run / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# epoch record key -> its TensorBoard tag (stage 1); the headline quantities have groups of their own
EPOCH_TAGS = {"valid_acc": "Accuracy/stage1/valid", "greedy_acc": "Accuracy/stage1/greedy",
              "train_acc": "Accuracy/stage1/train", "greedy_reward": "Reward/stage1/greedy",
              "greedy_params_m": "Params/stage1/greedy_m", "greedy_flops_m": "Params/stage1/greedy_flops_m",
              "train_loss": "stage1/epoch/train_loss", "lr": "stage1/epoch/lr"}
# controller update statistic -> its tag (stage 1)
UPDATE_TAGS = {"reward/mean": "Reward/stage1/mean", "reward/max": "Reward/stage1/max", "reward/min": "Reward/stage1/min",
               "controller/entropy": "Entropy/stage1", "sample/acc_mean": "Accuracy/stage1/sampled_mean",
               "controller/baseline": "stage1/controller/baseline", "importance/mean": "stage1/importance/mean"}


def test_tensorboard_holds_the_epoch_records_rewards_and_policy_by_name(searched):
    """Breakage caught: scalars logged under other names, at other steps, or with other values than
    metrics.jsonl's (the lab log's TensorBoard views read these names)."""
    scalars = _scalars(searched)
    records = [json.loads(line) for line in (searched / "metrics.jsonl").read_text().splitlines()]
    steps = 0
    for r in records:
        steps += r["steps"]
        for name, tag in EPOCH_TAGS.items():
            tag = tag.replace("stage1", f"stage{r['stage']}")
            assert (steps, pytest.approx(r[name], rel=1e-6)) in scalars[tag], (name, scalars[tag])
    for stage in (1, 2, 3):
        # rewards and the controller's own numbers at each update (epoch 2 of each stage: 2 updates of 4 steps)
        for name, tag in UPDATE_TAGS.items():
            assert len(scalars[tag.replace("stage1", f"stage{stage}")]) == 2, (stage, name)
        # the policy: every edge's argmax index and per-op probabilities, once per epoch
        argmax = [t for t in scalars if t.startswith(f"edges/stage{stage}/argmax/cell/op_")]
        assert len(argmax) == 6 and all(len(scalars[t]) == 2 for t in argmax)
    doc = json.loads((searched / "genotype.json").read_text())
    for label, probs in doc["stages"][0]["probabilities"].items():
        for op, p in probs.items():
            assert scalars[f"edges/stage1/prob/{label}/{op}"][-1][1] == pytest.approx(p, rel=1e-6)
    rewards = scalars["Reward/stage1/mean"]
    assert all(lo <= mean <= hi for (_, lo), (_, mean), (_, hi) in
               zip(scalars["Reward/stage1/min"], rewards, scalars["Reward/stage1/max"]))


def test_tensorboard_shows_the_headline_groups_first_and_the_edges_under_one_prefix(searched):
    """Breakage caught (issue 27): 707 tags in stage1/2/3 groups, 264 of them stage1/prob/..., buried the few a user
    opens TensorBoard for. TensorBoard groups tags by their first segment, orders groups by character code (upper
    case first) and opens the first two: the headline quantities come first, every per-edge series is under
    edges/, and nothing else is a group of its own."""
    tags = sorted(_scalars(searched))
    groups = list(dict.fromkeys(tag.split("/", 1)[0] for tag in tags))
    assert groups == ["Accuracy", "Entropy", "Params", "Reward", "edges", "stage1", "stage2", "stage3"], groups
    per_edge = [t for t in tags if "/op_" in t]
    assert per_edge and all(t.startswith("edges/") for t in per_edge)
    headline = [t for t in tags if t[0].isupper()]
    assert 10 <= len(headline) <= 60 and not any("/op_" in t for t in headline), headline


def test_search_draws_the_derived_cell(searched):
    """cell.png is a picture of the derived cell (a real PNG of some size), next to genotype.json."""
    with Image.open(searched / "cell.png") as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 100
    doc = json.loads((searched / "genotype.json").read_text())
    assert doc["arch"].count("~") == 6


def test_print_settings_prints_the_resolved_settings_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--preset", "nb201", "--layers", "1,3,5", "--set", "seed=7", "--print-settings"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == load_settings("nb201", {"layers": "1,3,5", "seed": 7}).to_dict()
    assert printed["space"] == "nb201" and printed["seed"] == 7 and printed["layers"] == [1, 3, 5]
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, no checkpoint


def test_config_naming_a_preset_starts_from_that_preset_and_flags_win(tmp_path, capsys):
    """A --config file with ``preset: nb201`` resolves over the nb201 preset whatever --preset says; its own
    settings override the preset's, and --set overrides both."""
    config = tmp_path / "run.yml"
    config.write_text("preset: nb201\nepochs: [2, 2, 2]\nwarmup_epochs: 1\ncontroller_lr: 0.01\nseed: 3\n")
    assert main(["search", "--config", str(config), "--set", "seed=5", "--print-settings"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = load_settings("nb201", {"epochs": [2, 2, 2], "warmup_epochs": 1, "controller_lr": 0.01, "seed": 5})
    assert printed == expected.to_dict()
    assert printed["space"] == "nb201" and printed["layers"] == [1, 3, 5]  # the nb201 preset's, not demo's
    assert (printed["epochs"], printed["controller_lr"], printed["seed"]) == ([2, 2, 2], 0.01, 5)


def _experiment_db(root: Path, exp_id: str, finals: dict[str, dict]) -> Path:
    """An NNI 3.0 experiment directory as a stopped manager leaves it: db/nni.sqlite's three tables (the columns
    export reads), one SUCCEEDED trial per entry of ``finals``, their FINAL metrics stored as the manager stores
    them (JSON of the trial's JSON)."""
    exp = root / exp_id
    (exp / "db").mkdir(parents=True)
    conn = sqlite3.connect(exp / "db" / "nni.sqlite")
    conn.execute("create table ExperimentProfile (params text, id text, execDuration integer, startTime integer, "
                 "endTime integer, logDir text, nextSequenceId integer, revision integer)")
    conn.execute("create table TrialJobEvent (timestamp integer, trialJobId text, event text, data text, "
                 "logPath text, sequenceId integer, message text)")
    conn.execute("create table MetricData (timestamp integer, trialJobId text, parameterId text, type text, "
                 "sequence integer, data text)")
    conn.execute("insert into ExperimentProfile values ('{}', ?, 0, 0, 0, ?, 0, 1)", (exp_id, str(root)))
    for seq, (trial, final) in enumerate(finals.items()):
        params = json.dumps({"parameter_id": seq, "parameter_source": "algorithm",
                             "parameters": {"seed": seq}, "parameter_index": 0})
        conn.execute("insert into TrialJobEvent values (?, ?, 'WAITING', ?, '', ?, null)",
                     (1000 + seq, trial, params, seq))
        conn.execute("insert into TrialJobEvent values (?, ?, 'SUCCEEDED', null, '', null, null)", (2000 + seq, trial))
        conn.execute("insert into MetricData values (?, ?, ?, 'FINAL', 0, ?)",
                     (1500 + seq, trial, str(seq), json.dumps(json.dumps(final))))
    conn.commit()
    conn.close()
    return exp


def test_export_minimize_ranks_lowest_first_and_dash_writes_json_to_stdout(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no nnictl registry: the database is read
    genotype = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    finals = {"trialAAA": {"default": 0.9, "params_m": 0.3, "genotype": genotype},
              "trialBBB": {"default": 0.7, "params_m": 0.1, "genotype": genotype},
              "trialCCC": {"default": 0.8, "params_m": 0.2, "genotype": genotype}}
    _experiment_db(tmp_path / "exps", "Ab12Cd34", finals)
    args = ["export", "--experiment", "Ab12Cd34", "--experiment-dir", str(tmp_path / "exps"), "--top", "2"]
    assert main([*args, "--minimize", "-o", "-"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # stdout holds the JSON document and nothing else
    assert doc["mode"] == "min" and doc["source"] == "db" and doc["ranked_trials"] == 3
    assert [(a["rank"], a["trial_id"], a["metrics"]["default"]) for a in doc["architectures"]] == \
        [(1, "trialBBB", 0.7), (2, "trialCCC", 0.8)]
    assert doc["architectures"][0]["parameters"] == {"seed": 1} and doc["architectures"][0]["family"] == "nb201"
    assert "exported 2 of 3" in err and not list(Path.cwd().glob("-"))
    # by another metric, highest first (the default mode), into a file
    assert main([*args, "--metric", "params_m", "-o", str(tmp_path / "top.json")]) == 0
    ranked = json.loads((tmp_path / "top.json").read_text())["architectures"]
    assert [a["trial_id"] for a in ranked] == ["trialAAA", "trialCCC"]
