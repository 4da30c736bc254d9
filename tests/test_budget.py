"""A hard budget stays reachable through the shrink (``search.budget``, ``progressive.shrink(fits=...)``)."""
from __future__ import annotations

import json

from search_spaces.families import get_family
from search_spaces.presets import initial_edge_ops

from nni_offpolicy.search.budget import budget_fit
from nni_offpolicy.search.controller import OffPolicyController
from nni_offpolicy.search.loop import run_search
from nni_offpolicy.search.progressive import build_decisions, shrink
from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.settings import load_settings

from fixtures import NB201_TINY, ONE_VALUE_PER_STAGE

CONVS = {"nor_conv_3x3": 0.4, "nor_conv_1x1": 0.3}


def _model(**overrides):
    settings = load_settings("nb201", {**NB201_TINY, **overrides}).validate()
    return RewardModel(settings, "nb201", num_classes=10, in_channels=3, input_size=32)


def _params_m(model: RewardModel, ops_by_edge: dict[str, str]) -> float:
    return model.price(get_family("nb201").normalise(ops_by_edge))[0] / 1e6


def test_a_shrink_that_would_keep_only_convolutions_swaps_in_the_cheapest_ops_where_they_cost_least():
    edge_ops = initial_edge_ops("nb201")
    probs = OffPolicyController(build_decisions("nb201", edge_ops)).probabilities()
    skip = {"1_0": 0.05, "2_0": 0.2, "2_1": 0.1, "3_0": 0.25, "3_1": 0.12, "3_2": 0.15}  # the runner-up op
    for key, p_skip in skip.items():
        probs[f"cell/op_{key}"] = {o: CONVS.get(o, p_skip if o == "skip_connect" else 0.01)
                                   for o in edge_ops["cell"][key]}
    model = _model()
    # a budget that two param-free edges meet and one does not: every other edge may keep a 1x1 convolution
    two_free = {f"cell/op_{k}": ("skip_connect" if k in ("3_0", "2_0") else "nor_conv_1x1") for k in skip}
    one_free = {**two_free, "cell/op_2_0": "nor_conv_1x1"}
    budget = _params_m(model, two_free)
    assert _params_m(model, one_free) > budget
    fits = budget_fit(model, "nb201", 4, budget, edge_ops, probs, max_skip_connect=2)

    plain, none_made = shrink(edge_ops, probs, 2)
    assert all(ops == ["nor_conv_1x1", "nor_conv_3x3"] for ops in plain["cell"].values()) and not fits(plain)
    assert none_made == []

    kept, swaps = shrink(edge_ops, probs, 2, fits=fits, op_price=fits.op_params)
    assert fits(kept) and fits.cheapest_params_m(kept) <= budget
    # the two edges whose skip-connect was the likeliest runner-up: 1x1 (0.3) out, skip in, least pi lost
    assert swaps == [{"edge": "cell/op_3_0", "dropped": "nor_conv_1x1", "added": "skip_connect"},
                     {"edge": "cell/op_2_0", "dropped": "nor_conv_1x1", "added": "skip_connect"}]
    assert kept["cell"]["3_0"] == ["skip_connect", "nor_conv_3x3"]  # the original order
    assert all(kept["cell"][k] == plain["cell"][k] for k in skip if k not in ("3_0", "2_0"))


def test_a_budget_no_cell_meets_ends_with_each_edges_cheapest_op_kept_and_is_left_to_report():
    edge_ops = initial_edge_ops("nb201")
    probs = {f"cell/op_{key}": {o: CONVS.get(o, 0.01) for o in ops} for key, ops in edge_ops["cell"].items()}
    fits = budget_fit(_model(), "nb201", 4, 1e-9, edge_ops, probs, max_skip_connect=2)
    kept, swaps = shrink(edge_ops, probs, 2, fits=fits, op_price=fits.op_params)
    assert not fits(kept)  # nothing is below the network's fixed part: the search reports within_budget false
    assert len(swaps) == 6  # one per edge, then no cheaper op is left anywhere
    for key, ops in kept["cell"].items():  # the 3x3 convolution (pi 0.4) stays beside a param-free op
        assert min(fits.op_params[o] for o in ops) == 0 and "nor_conv_3x3" in ops, (key, ops)
    assert budget_fit(_model(), "nb201", 4, None, edge_ops, probs, 2) is None


def test_a_late_budget_over_a_space_of_one_op_per_edge_still_ends_within_it(tmp_path):
    """Stage 1 learns by accuracy alone (the budget applies from stage 2) and keeps one op per edge: unrepaired,
    its top op is a convolution on some edge and no cell of stage 2 fits a budget only param-free cells meet."""
    ops = ["skip_connect", "nor_conv_1x1", "nor_conv_3x3"]
    initial = {"cell": {key: list(ops) for key in initial_edge_ops("nb201")["cell"]}}
    overrides = {**NB201_TINY, **ONE_VALUE_PER_STAGE, "layers": "1,1", "ops_kept": "1,1", "epochs": "2,2",
                 "warmup_epochs": "1,1", "size_budget_from_stage": 2}
    all_skip = {f"cell/op_{key}": "skip_connect" for key in initial["cell"]}
    budget = _params_m(_model(), all_skip) + 1e-6
    settings = load_settings("nb201", {**overrides, "size_budget": budget})
    doc = run_search(settings, tmp_path / "run", initial_ops=initial)
    assert doc["within_budget"] is True and doc["arch"].count("skip_connect") == 6, doc["arch"]
    swaps = doc["stages"][0]["budget_swaps"]
    assert swaps and all(s["added"] == "skip_connect" for s in swaps)
    assert json.loads((tmp_path / "run" / "genotype.json").read_text())["stages"][0]["budget_swaps"] == swaps
