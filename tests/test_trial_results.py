"""What an NNI trial reports and logs, without an NNI manager: one unit for the intermediate and the final
'default', the useful fields first, architectures as readable text (not JSON inside NNI's JSON), one trial.log line
per epoch, the sibling-parameters correction as an expected INFO line, and a quickstart space whose every knob is
read by the search it tunes. (tests/test_experiments.py runs the same through a real NNI manager.)"""
from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pytest
import yaml

from nni_offpolicy.cli import build_parser
from nni_offpolicy.commands.trial import (SEARCH_METRICS, architecture_text, epoch_reporter,
                                          final_search_result)
from search_spaces.genotypes import PUBLISHED, genotype_to_dict

ROOT = Path(__file__).resolve().parent.parent
PDARTS = PUBLISHED["pdarts"]
DOC = {"family": "darts", "genotype": genotype_to_dict(PDARTS), "genotype_str": str(PDARTS),
       "derived_valid_acc": 41.5, "derived_reward": 0.4, "params_m": 0.21, "flops_m": 2.6, "wall_time_s": 60.0,
       "best_sampled": {"genotype": genotype_to_dict(PUBLISHED["darts_v2"]), "reward": 0.45}}
RECORD = {"stage": 2, "epoch": 1, "total_epochs": 6, "global_epoch": 3, "train_loss": 1.2, "train_acc": 55.0,
          "valid_acc": 48.0, "greedy_acc": 47.0, "greedy_reward": 0.47, "greedy_params_m": 0.2,
          "greedy_flops_m": 2.5, "seconds": 3.0}


class Recorder:
    def __init__(self):
        self.sent: list[dict] = []

    def report_intermediate(self, metrics):
        self.sent.append(dict(metrics))
        return True


def test_the_default_metric_is_the_derived_accuracy_in_percent_per_epoch_and_at_the_end():
    """Breakage caught (issue 27): the intermediate 'default' was the supernet's validation accuracy in % and the
    final one derived_reward on a 0-1 scale, so the web UI's two charts had different units."""
    args = build_parser("trial").parse_args(["trial", "search"])
    assert args.metric == "derived_valid_acc"
    for metric in SEARCH_METRICS:
        final = final_search_result(DOC, metric)
        session = Recorder()
        epoch_reporter(session, metric)(RECORD)
        per_epoch = session.sent[0]["default"]
        # the same quantity: the derived cell's at the end, the cell the policy would derive now per epoch
        assert final["default"] == DOC[metric]
        assert per_epoch == RECORD[{"derived_valid_acc": "greedy_acc", "derived_reward": "greedy_reward",
                                    "params_m": "greedy_params_m", "flops_m": "greedy_flops_m"}[metric]]


def test_the_final_result_puts_the_useful_fields_first_and_the_genotype_as_text():
    """Breakage caught (issue 27): the useful fields were behind "Add/Remove columns", and ``nnictl trial ls``
    showed the genotype triple-escaped (json.dumps inside NNI's own two layers of JSON)."""
    final = final_search_result(DOC, "derived_valid_acc")
    assert list(final)[:4] == ["default", "derived_valid_acc", "params_m", "genotype"]
    assert final["genotype"] == str(PDARTS) and final["best_sampled"] == str(PUBLISHED["darts_v2"])
    # what the manager stores (two layers of JSON, nni_glue/store.decode_metric) holds no escaped quote in quotes
    stored = json.dumps(json.dumps(final))
    assert '\\\\' not in stored  # one layer of escaping (NNI's), none of ours
    assert json.loads(json.loads(stored))["genotype"] == str(PDARTS)


def test_export_reads_genotypes_reported_as_text_and_as_json():
    from nni_offpolicy.tools.export import decode_architecture

    assert decode_architecture(str(PDARTS)) == genotype_to_dict(PDARTS)
    assert decode_architecture(json.dumps(genotype_to_dict(PDARTS))) == genotype_to_dict(PDARTS)  # older trials
    arch = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"
    assert decode_architecture(arch) == arch and architecture_text("nb201", arch) == arch


def test_each_epoch_is_a_line_in_the_trial_log(caplog):
    """Breakage caught (issue 27): trial.log had a start and an end line, nothing for each epoch."""
    with caplog.at_level(logging.INFO, logger="nni_offpolicy.trial"):
        epoch_reporter(Recorder(), "derived_valid_acc")(RECORD)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "nni_offpolicy.trial"]
    assert line.startswith("epoch 3/6 (stage 2 epoch 1): ") and "valid acc 48.0%" in line and "greedy" in line


def test_a_sibling_trials_parameters_are_an_expected_info_line(tmp_path, monkeypatch, caplog):
    """Breakage caught (issue 27): the correction of NNI 3.0's parameter swap read like an error in trial.log."""
    import nni
    import nni.runtime.trial_command_channel as channels

    from nni_offpolicy.nni_glue import trial as glue

    monkeypatch.setenv("NNI_PLATFORM", "local")
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("NNI_TRIAL_JOB_ID", "Abc12")
    received = {"parameter_id": 1, "parameters": {"epsilon": 0.5}}
    assigned = {"parameter_id": 0, "parameters": {"epsilon": 0.1}}

    def next_parameter():
        nni.trial._params = received
        return received["parameters"]

    monkeypatch.setattr(nni, "get_next_parameter", next_parameter)
    monkeypatch.setattr(nni.trial, "_params", None)
    monkeypatch.setattr(channels, "get_default_trial_command_channel", lambda: object())
    monkeypatch.setattr(glue.TrialSession, "_assigned_record", lambda self: assigned)
    with caplog.at_level(logging.INFO, logger="nni_offpolicy.trial"):
        session = glue.TrialSession().start()
    assert session.parameters == {"epsilon": 0.1} and session.parameter_id == 0
    (swap,) = [r for r in caplog.records if "sibling trial" in r.getMessage()]
    assert swap.levelno == logging.INFO and "expected" in swap.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_quickstart_space_tunes_only_knobs_its_trials_read():
    """Breakage caught (issue 27): the quickstart tuned epsilon beside the uniform behaviour (which ignores it)
    and controller_lr alone (Adam's first steps are scale-free: 0.01 and 0.08 gave the same genotype), so TPE
    "tuned" nothing. Every knob must be read by every trial it is given to, and within its range."""
    from nni_offpolicy.settings import load_settings

    space = json.loads((ROOT / "experiments" / "quickstart_space.json").read_text())
    config = yaml.safe_load((ROOT / "experiments" / "quickstart.yml").read_text())
    argv = shlex.split(config["trialCommand"])
    fixed = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--set")
    preset = argv[argv.index("--preset") + 1]
    assert "controller_lr" not in space and len(space) >= 3
    if "epsilon" in space:
        assert set(space["behaviour"]["_value"]) <= {"egreedy", "multinomial"}  # the behaviours that read it
    settings = load_settings(preset, fixed)
    for name, spec in space.items():
        assert spec["_type"] == "choice" and len(spec["_value"]) >= 2, name
        for value in spec["_value"]:
            load_settings(preset, {**fixed, name: value})  # each value valid with the trial's fixed settings
    if "warmup_epochs" in space:  # a warm-up as long as the stage leaves the controller nothing to do
        assert max(space["warmup_epochs"]["_value"]) < min(settings.epochs)
    assert re.search(r"--metric\b", config["trialCommand"]) is None  # the default metric: accuracy in %
