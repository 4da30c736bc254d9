"""settings.resume_differences is the one rule for what a resume may change: a search resumed from its checkpoint
and an ablation grid resumed over its finished runs both accept the runtime settings (how to compute: progress,
device, devices, precision, channels_last, compile, threads) and refuse any other change."""
from __future__ import annotations

import json

import pytest

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.tools.ablate import plan_ablation
from nni_offpolicy.errors import UserError
from nni_offpolicy.search.checkpoint import RESUME_KEYS, load_resume_state
from nni_offpolicy.settings import (RUNTIME_SETTINGS, SEARCH_PRESETS, STAGE_LISTS, load_settings,
                                    resume_differences)

from fixtures import ONE_VALUE_PER_STAGE

RUNTIME_CHANGE = {"progress": True, "device": "cpu", "devices": 2, "precision": "fp32", "channels_last": "off",
                  "compile": "ops", "threads": 3}


def test_the_runtime_settings_are_how_to_compute_and_nothing_else():
    assert RUNTIME_SETTINGS == set(RUNTIME_CHANGE)
    saved = load_settings("demo", {"progress": False}).to_dict()
    assert resume_differences(saved, load_settings("demo", RUNTIME_CHANGE)) == []
    assert resume_differences(saved, load_settings("demo", {**RUNTIME_CHANGE, "channels": 6, "seed": 1})) == [
        "channels", "seed"]


def test_a_record_without_a_newer_setting_is_compared_with_its_default():
    saved = load_settings("demo").to_dict()
    del saved["zero_cost"], saved["reward_source"]
    assert resume_differences(saved, load_settings("demo")) == []
    assert resume_differences(saved, load_settings("demo", {"zero_cost": "naswot"})) == ["zero_cost"]


def _grid_with_a_finished_run(tmp_path, **changed):
    plan = plan_ablation("demo", ["random"], [0], output=tmp_path)
    run = plan.runs[0]
    run.dir.mkdir(parents=True)
    (run.dir / "genotype.json").write_text(json.dumps({"settings": {**run.settings.to_dict(), **changed}}))


def test_an_ablation_grid_resumes_like_a_search_whatever_the_runtime_settings(tmp_path):
    _grid_with_a_finished_run(tmp_path, **{k: v for k, v in RUNTIME_CHANGE.items() if k != "progress"})
    plan_ablation("demo", ["random"], [0], output=tmp_path)  # devices and threads differ: accepted, as in search


def test_an_ablation_grid_refuses_other_changes(tmp_path):
    _grid_with_a_finished_run(tmp_path, channels=6)
    with pytest.raises(UserError, match=r"other settings \(channels\)"):
        plan_ablation("demo", ["random"], [0], output=tmp_path)


@pytest.mark.parametrize("changed,refused", [(RUNTIME_CHANGE, None), ({"channels": 6}, "['channels']")])
def test_a_search_checkpoint_resumes_by_the_same_rule(tmp_path, changed, refused):
    settings = load_settings("demo")
    state = {key: None for key in RESUME_KEYS}
    state.update(stage=0, next_epoch=0, global_step=0, reward_updates=0, jsonl_lines=0, elapsed=0.0, edge_ops={},
                 stage_summaries=[], tracker=dict.fromkeys(("recent", "best", "argmax", "changed", "updates")),
                 rng=dict.fromkeys(("python", "numpy", "torch")))  # contents a resume can take (issue 29.9)
    state["settings"] = {**settings.to_dict(), **changed}
    ckpt.atomic_save(state, tmp_path / "checkpoint.pt")
    if refused is None:
        assert load_resume_state(tmp_path / "checkpoint.pt", settings)["settings"] == state["settings"]
    else:
        with pytest.raises(UserError, match=f"settings differ from the checkpoint's in {refused}".replace("[", r"\[")):
            load_resume_state(tmp_path / "checkpoint.pt", settings)


def test_a_presets_stage_rule_follows_the_users_stage_count(tmp_path):
    """nb201-proxy's NASWOT exponent is "4, then 1 in the last stage": with two or four stages a user gets that,
    not a length error; the user's own value (flag or config file) wins over the rule."""
    assert load_settings("nb201-proxy").zero_cost_exponent == [4.0, 4.0, 1.0]
    two = {**ONE_VALUE_PER_STAGE, "layers": "1,2", "ops_kept": "2,1", "epochs": "1,1", "warmup_epochs": "0,0"}
    assert load_settings("nb201-proxy", two).zero_cost_exponent == [4.0, 1.0]
    four = {**ONE_VALUE_PER_STAGE, "layers": "1,1,1,2", "ops_kept": "4,3,2,1", "epochs": "1", "warmup_epochs": "0"}
    assert load_settings("nb201-proxy", four).zero_cost_exponent == [4.0, 4.0, 4.0, 1.0]
    assert load_settings("nb201-proxy", {"zero_cost_exponent": "2"}).zero_cost_exponent == [2.0, 2.0, 2.0]
    config = tmp_path / "mine.yml"
    config.write_text("zero_cost_exponent: [3, 2, 1]\n")
    assert load_settings("nb201-proxy", config_file=config).zero_cost_exponent == [3.0, 2.0, 1.0]


@pytest.mark.parametrize("preset", list(SEARCH_PRESETS))
def test_another_stage_count_needs_only_the_lists_whose_stages_differ(preset):
    """A list a user never touched and whose entries are all equal (flops_target 600, 600, 600; a preset's
    epochs 8, 8, 8) follows the user's stage count; it was a length error naming a setting the user never gave
    (`--set layers=1,2` on nb201-proxy: "flops_target: has 3 entries but layers has 2 stages")."""
    values = SEARCH_PRESETS[preset]
    differing = {name: value for name, value in values.items()
                 if name in STAGE_LISTS and isinstance(value, list) and len(set(value)) > 1}
    two = {name: ",".join(str(v) for v in value[-2:]) for name, value in differing.items()}
    two.setdefault("ops_kept", "2,1")
    if preset == "own-small":
        two["dataset"] = "imagefolder:/nonexistent"  # read when the search starts, not here
    settings = load_settings(preset, two)
    assert settings.stages == 2 and all(len(getattr(settings, name)) == 2 for name in STAGE_LISTS)
    assert settings.flops_target == [600.0, 600.0] and settings.metric_exponent == [0.0, 0.0]


def test_the_nb201_presets_carry_the_naswot_recipe():
    """The NB201 presets run the recipe their grid measured (the plain nb201 search collapses to parameter-free
    cells on the proxy); a user's own value still wins."""
    for preset in ("nb201", "nb201-proxy"):
        s = load_settings(preset)
        assert (s.zero_cost, s.zero_cost_exponent, s.final_pick) == ("naswot", [4.0, 4.0, 1.0], "zero-cost")
        s = load_settings(preset, {"zero_cost": "none", "final_pick": "policy"})
        assert (s.zero_cost, s.final_pick) == (None, "policy")


def test_a_presets_untrained_last_stage_is_trained_when_the_pick_needs_it():
    """The NB201 presets leave the last stage untrained for their zero-cost pick; another pick trains it as long
    as the stage before, and a user's own epochs are taken as given (and refused when they cannot work)."""
    assert load_settings("nb201").epochs == [10, 10, 0]
    assert load_settings("nb201-proxy").epochs == [6, 6, 0]
    assert load_settings("nb201", {"final_pick": "best-sampled"}).epochs == [10, 10, 10]
    assert load_settings("nb201-proxy", {"final_pick": "policy"}).epochs == [6, 6, 6]
    assert load_settings("nb201", {"epochs": "5,6,0"}).epochs == [5, 6, 0]
    with pytest.raises(UserError, match=r"epochs: the last stage has 0 \(not trained\), which only "
                                        r"final_pick=zero-cost allows .* final_pick is policy: train it "
                                        r"\(e.g. epochs=5,6,6\) or set final_pick=zero-cost"):
        load_settings("nb201", {"epochs": "5,6,0", "final_pick": "policy"})
    with pytest.raises(UserError, match=r"epochs must be >= 1 \(stage 2 has 0\); only the last stage may"):
        load_settings("nb201", {"epochs": "5,0,5"})
    with pytest.raises(UserError, match=r"epochs must be >= 1 \(stage 1 has 0\)"):
        load_settings("demo", {**ONE_VALUE_PER_STAGE, "layers": "3", "epochs": "0", "ops_kept": "1", "warmup_epochs": "0"})


def test_pdarts_proxy_is_the_pdarts_search_shrunk_for_a_cpu():
    """What pdarts-proxy keeps of P-DARTS (three stages, 8 -> 5 -> 3 -> 1 ops, its skip dropout, the DARTS recipe,
    params priced at the protocol's 20 x 36) and what it cuts (cells, channels, steps, images): a grid's figures
    are read against that, so a change to either is a deliberate one."""
    proxy, full = load_settings("pdarts-proxy"), load_settings("pdarts")
    kept = ("space", "ops_kept", "skip_dropout", "size_exponent", "size_abs_penalty", "size_target", "zero_cost",
            "zero_cost_exponent", "final_pick", "controller", "importance", "lr", "momentum", "weight_decay",
            "grad_clip", "max_skip_connect", "eval_layers", "eval_channels")
    assert {k: getattr(proxy, k) for k in kept} == {k: getattr(full, k) for k in kept}
    assert proxy.stages == full.stages == 3 and proxy.dataset == "cifar10-jpeg" and proxy.threads == 1
    assert all(p < f for p, f in zip(proxy.layers, full.layers)) and proxy.channels < full.channels
    assert proxy.max_steps_per_epoch and proxy.eval_images and proxy.reward_batch < full.batch_size * 2


def test_the_darts_presets_carry_the_absolute_size_term_and_the_naswot_taper():
    """The recipe measured on pdarts-proxy (ablate's offpolicy-size-abs-naswot): not the lab log's ratio term,
    which derived pooling cells there."""
    for preset in ("pdarts", "pdarts-proxy"):
        s = load_settings(preset)
        assert s.size_exponent == [0.0] * 3 and s.size_abs_penalty == [0.2] * 3 and s.size_target == [3.4] * 3
        assert s.zero_cost == "naswot" and s.zero_cost_exponent == [4.0, 4.0, 1.0] and s.final_pick == "best-sampled"


def test_search_flags_are_generated_from_the_settings_fields():
    """A setting is described once, at its field: every field marked as a flag becomes ``search --NAME`` with
    that field's help, and ``search --NAME VALUE`` sets that field (no hand-written table to drift)."""
    import dataclasses

    from nni_offpolicy.cli import build_parser
    from nni_offpolicy.commands.search import collect_overrides
    from nni_offpolicy.settings import SearchSettings, flag_settings

    flags = flag_settings()
    assert {"layers", "epochs", "size_target", "size_exponent", "seed", "devices"} <= set(flags)
    marked = [f.name for f in dataclasses.fields(SearchSettings) if f.metadata.get("flag")]
    assert list(flags) == marked and all(flags[name] for name in marked)
    parser = build_parser("search")
    search = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("search"))
    helps = {a.dest: a.help for a in search._actions}
    assert {name: helps.get(name) for name in flags} == flags
    args = parser.parse_args(["search", "--layers", "3,4,6", "--size-target", "1.5"])
    assert collect_overrides(args) == {"layers": "3,4,6", "size_target": "1.5"}
    assert load_settings("demo", collect_overrides(args)).layers == [3, 4, 6]


@pytest.mark.parametrize("preset", ["demo", "own-small"])
def test_the_small_presets_carry_the_absolute_size_term(preset):
    """Measured: with the ratio term (-0.1) the demo derived 4-7 parameter-free normal edges of 8 on seeds 0-5 and
    own-small 5 on seeds 0-2 of the CIFAR-10 archive; with the absolute term 1-3 and 1-2 (docs/results.md)."""
    s = load_settings(preset, {"dataset": "digits"} if preset == "own-small" else {})
    assert s.size_exponent == [0.0] * 3 and s.size_abs_penalty == [0.5] * 3 and s.size_target == [0.3] * 3
