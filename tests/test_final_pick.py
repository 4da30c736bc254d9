"""The final pick (``final_pick=best-sampled`` or ``zero-cost``) and the hard parameter budget (``size_budget``)."""
from __future__ import annotations

import json
import math

import pytest

from nni_offpolicy.errors import UserError
from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.search.loop import run_search
from nni_offpolicy.search.tracker import Tracker
from nni_offpolicy.tools.ablate import run_row
from nni_offpolicy.settings import load_settings

from fixtures import NB201_TINY, PLAIN


def test_hard_budget_gives_zero_above_it_and_leaves_cells_within_it_alone():
    settings = load_settings("nb201", {**PLAIN, "size_budget": 0.1}).validate()
    model = RewardModel(settings, "nb201", num_classes=10, in_channels=3, input_size=32)
    assert model.reward(0.9, {"params_m": 0.1001, "flops_m": 1.0}, stage=0) == 0.0
    assert model.reward(0.9, {"params_m": 0.1, "flops_m": 1.0}, stage=0) == pytest.approx(0.9)
    late = RewardModel(load_settings("nb201", {**PLAIN, "size_budget": 0.1, "size_budget_from_stage": 3}).validate(),
                       "nb201", 10, 3, 32)
    assert late.reward(0.9, {"params_m": 0.2, "flops_m": 1.0}, stage=1) == pytest.approx(0.9)  # stage 2: not yet
    assert late.reward(0.9, {"params_m": 0.2, "flops_m": 1.0}, stage=2) == 0.0  # the last stage (and the pick)
    unlimited = RewardModel(load_settings("nb201", PLAIN).validate(), "nb201", 10, 3, 32)
    assert unlimited.reward(0.9, {"params_m": 50.0, "flops_m": 1.0}, stage=0) == pytest.approx(0.9)


@pytest.mark.parametrize("overrides,expected", [
    ({"size_budget": "-1"}, "size_budget must be > 0"),
    ({"size_budget": "big"}, "size_budget: expected a number"),
    ({"final_pick": "vote"}, "unknown final_pick 'vote'; allowed: policy, best-sampled, zero-cost"),
    ({"final_pick": "zero-cost", "zero_cost": "none"},
     "final_pick=zero-cost ranks the last stage's cells by their zero-cost score, and zero_cost is none: "
     "set zero_cost=naswot"),
    ({"final_candidates": "0"}, "final_candidates must be >= 1"),
    ({"size_budget_from_stage": "4"}, "size_budget_from_stage must be a stage, 1 to 3, got 4"),
])
def test_bad_final_pick_or_budget_is_one_clear_error(overrides, expected):
    with pytest.raises(UserError, match=expected.replace("(", r"\(")):
        load_settings("nb201", overrides).validate()


def test_tracker_ranks_cells_by_mean_reward_and_keeps_them_through_a_checkpoint():
    tracker = Tracker(window=10)
    samples = [{"cell/op_1_0": op} for op in ("a", "b", "c")]
    tracker.observe_samples(0, [0.9, 0.1, 0.5, 0.0], [samples[0], samples[1], samples[2], samples[0]],
                            ["a", "b", "c", "a"], [{}] * 4)
    assert [c["sample"]["cell/op_1_0"] for c in tracker.ranked_cells()[:2]] == ["c", "a"]  # a: mean 0.45 < c: 0.5
    restored = Tracker(window=10)
    restored.load_state(tracker.state())
    assert restored.ranked_cells() == tracker.ranked_cells()
    restored.reset_stage()
    assert restored.ranked_cells() == []


def test_best_sampled_pick_is_the_best_rescored_candidate(tmp_path):
    policy = run_search(load_settings("nb201", NB201_TINY), tmp_path / "policy")
    assert "final_candidates" not in policy  # the default pick is unchanged: the policy's derivation
    doc = run_search(load_settings("nb201", {**NB201_TINY, "final_pick": "best-sampled",
                                             "final_candidates": 5}), tmp_path / "picked")
    candidates = doc["final_candidates"]
    assert candidates[0]["from"] == "policy" and candidates[0]["sample"] == policy["sample"]
    assert 2 <= len(candidates) <= 6
    keys = [tuple(sorted(c["sample"].items())) for c in candidates]
    assert len(set(keys)) == len(keys)  # each cell scored once
    best = max(candidates, key=lambda c: c["reward"])
    assert doc["sample"] == best["sample"] and doc["derived_reward"] == pytest.approx(best["reward"])


def test_best_sampled_pick_keeps_to_a_hard_budget(tmp_path):
    free = run_search(load_settings("nb201", {**NB201_TINY, "final_pick": "best-sampled"}), tmp_path / "free")
    sizes = sorted({round(c["params_m"], 6) for c in free["final_candidates"]})
    assert len(sizes) >= 2, "the candidates need two sizes for a budget to split them"
    budget = sizes[0]
    doc = run_search(load_settings("nb201", {**NB201_TINY, "final_pick": "best-sampled", "size_budget": budget}),
                     tmp_path / "budget")
    assert doc["params_m"] <= budget + 1e-9
    assert all(c["reward"] == 0.0 for c in doc["final_candidates"] if c["params_m"] > budget + 1e-9)


ZERO_COST_PICK = {**NB201_TINY, "zero_cost": "naswot", "final_pick": "zero-cost", "final_candidates": 64}


def cell_key(sample: dict) -> tuple:
    return tuple(sorted(sample.items()))


def test_zero_cost_pick_scores_every_cell_of_the_last_space_not_only_the_sampled_ones(tmp_path):
    doc = run_search(load_settings("nb201", ZERO_COST_PICK), tmp_path / "zc")
    space = doc["stages"][-1]["edge_ops"]["cell"]
    size = math.prod(len(ops) for ops in space.values())
    assert size == 64  # ops_kept 3,2,1: two ops on each of six edges
    candidates = doc["final_candidates"]
    assert len({cell_key(c["sample"]) for c in candidates}) == size == len(candidates)
    assert all(c["sample"][f"cell/op_{edge}"] in ops for c in candidates for edge, ops in space.items())
    best = max(candidates, key=lambda c: c["eval_zero_cost"])
    assert doc["sample"] == best["sample"] and doc["derived_valid_acc"] == best["valid_acc"]
    # the last stage sampled far fewer cells than its space holds, so only enumerating it can have found them all
    sampled = run_search(load_settings("nb201", {**ZERO_COST_PICK, "final_pick": "best-sampled"}), tmp_path / "bs")
    assert len(sampled["final_candidates"]) < size / 2


def test_zero_cost_pick_scores_the_network_at_evaluation_size(tmp_path):
    # NB201_TINY's evaluation network (1 cell per stack, 8 channels) is the reward scorer's own: the same scores
    same = run_search(load_settings("nb201", {**ZERO_COST_PICK, "final_candidates": 4}), tmp_path / "same")
    assert all(c["eval_zero_cost"] == pytest.approx(c["zero_cost"], rel=1e-12) for c in same["final_candidates"])
    wider = run_search(load_settings("nb201", {**ZERO_COST_PICK, "final_candidates": 4, "eval_channels": 16}),
                       tmp_path / "wider")
    assert all(c["eval_zero_cost"] != pytest.approx(c["zero_cost"], rel=1e-6) for c in wider["final_candidates"])


def test_zero_cost_pick_keeps_to_a_hard_budget(tmp_path):
    free = run_search(load_settings("nb201", ZERO_COST_PICK), tmp_path / "free")
    best = max(free["final_candidates"], key=lambda c: c["eval_zero_cost"])
    budget = best["params_m"] - 1e-6  # the free pick no longer fits
    doc = run_search(load_settings("nb201", {**ZERO_COST_PICK, "size_budget": budget}), tmp_path / "budget")
    assert doc["params_m"] <= budget and doc["within_budget"]
    fitting = [c for c in doc["final_candidates"] if c["params_m"] <= budget]
    assert doc["sample"] == max(fitting, key=lambda c: c["eval_zero_cost"])["sample"]


def test_a_darts_candidate_must_be_a_cell_the_derivation_could_give():
    from nni_offpolicy.search.progressive import derivable

    base = {f"normal/op_{j}_{i}": "sep_conv_3x3" for j in range(2, 6) for i in range(j)}
    base.update({f"reduce/op_{j}_{i}": "max_pool_3x3" for j in range(2, 6) for i in range(j)})
    base.update({f"{kind}/input_{j}": [0, 1] for kind in ("normal", "reduce") for j in range(2, 6)})
    assert derivable("darts", base)
    assert not derivable("darts", {**base, "reduce/op_3_1": "none"})  # a chosen input edge that is no edge
    assert derivable("darts", {**base, "reduce/op_3_2": "none"})  # none on an edge the node does not use
    skips = {**base, **{f"normal/op_{j}_0": "skip_connect" for j in range(2, 5)}}
    assert not derivable("darts", skips) and derivable("darts", skips, max_skip_connect=3)
    assert derivable("nb201", {"cell/op_1_0": "none"})  # NB201 keeps every edge: none is an op like others


def test_a_budget_no_cell_can_meet_is_reported_not_hidden(tmp_path, capsys):
    from nni_offpolicy.cli import main

    flags = [f for k, v in {**NB201_TINY, "final_pick": "best-sampled", "size_budget": 0.001}.items()
             for f in ("--set", f"{k}={v}")]
    assert main(["search", "--preset", "nb201", "--output", str(tmp_path / "run"), *flags]) in (0, None)
    doc = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert doc["within_budget"] is False and doc["params_m"] > 0.001
    assert "exceed size_budget 0.001 M" in capsys.readouterr().err
    met = run_search(load_settings("nb201", {**NB201_TINY, "size_budget": 100.0}), tmp_path / "met")
    assert met["within_budget"] is True


def test_an_untrained_last_stage_answers_as_the_trained_one_and_resumes_to_it(tmp_path):
    """epochs 0 in the last stage (the NB201 presets): the zero-cost pick scores that stage's space whole, so
    training it cannot change the answer; skipping it must give the same cell from the same scored space, and a
    search killed before its end must resume to that answer (no checkpoint is written at the untrained stage)."""
    trained = run_search(load_settings("nb201", ZERO_COST_PICK), tmp_path / "trained")
    untrained_settings = {**ZERO_COST_PICK, "epochs": "2,2,0"}
    untrained = run_search(load_settings("nb201", untrained_settings), tmp_path / "untrained")
    assert untrained["sample"] == trained["sample"]
    assert untrained["stages"][-1] == {"stage": 3, "layers": 1, "trained": False,
                                       "edge_ops": trained["stages"][-1]["edge_ops"]}
    scores = {cell_key(c["sample"]): c["eval_zero_cost"] for c in trained["final_candidates"]}
    assert {cell_key(c["sample"]): c["eval_zero_cost"] for c in untrained["final_candidates"]} == scores
    records = [json.loads(line) for line in (tmp_path / "untrained" / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records if "stage" in r} == {1, 2}  # nothing trained in stage 3
    row = run_row("offpolicy-naswot-space", 0, untrained)  # an ablation grid's row: the last trained stage's
    assert (row["top_op_share"], row["argmax_frozen_share"]) == tuple(
        untrained["stages"][1][k] for k in ("top_op_share", "argmax_frozen_share"))

    class Killed(Exception):
        pass

    def kill_at_the_last_epoch(record):
        if (record["stage"], record["epoch"]) == (2, 2):  # before its checkpoint: resume trains it again
            raise Killed

    with pytest.raises(Killed):
        run_search(load_settings("nb201", untrained_settings), tmp_path / "killed", on_epoch=kill_at_the_last_epoch)
    resumed = run_search(load_settings("nb201", untrained_settings), tmp_path / "killed", resume=True)
    assert resumed["sample"] == untrained["sample"]
    assert resumed["derived_valid_acc"] == pytest.approx(untrained["derived_valid_acc"])


def test_an_untrained_last_stage_picks_only_from_the_space_its_shrink_kept(tmp_path):
    """The random learner draws its derivation and its shrink apart, so its policy's cell from the last trained
    stage mostly lies outside the kept space: it is still recorded first, but only the kept space competes."""
    doc = run_search(load_settings("nb201", {**ZERO_COST_PICK, "epochs": "2,2,0", "controller": "random",
                                             "final_candidates": 4}), tmp_path / "random")
    space = doc["stages"][-1]["edge_ops"]["cell"]

    def kept(sample: dict) -> bool:
        return all(sample[f"cell/op_{edge}"] in ops for edge, ops in space.items())

    policy, *others = doc["final_candidates"]
    assert policy["from"].startswith("policy") and others and all(kept(c["sample"]) for c in others)
    assert kept(doc["sample"])
    contenders = [c for c in doc["final_candidates"] if kept(c["sample"])]
    assert doc["sample"] == max(contenders, key=lambda c: c["eval_zero_cost"])["sample"]
