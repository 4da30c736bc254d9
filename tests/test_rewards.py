"""The reward's numbers: R = acc * prod_m (metric_m / target_m) ^ w_m, checked against values worked out by hand.

The parameter and MAC counts below are the evaluation networks' exact counts (the README rounds the first two to
3.43 M / 553.0 M and 3.35 M / 549.9 M), written out so that the arithmetic is the test's, not the code's.
"""
from __future__ import annotations

import pytest

from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.settings import load_settings
from search_spaces import PUBLISHED

from fixtures import PLAIN

PDARTS = (3_433_798, 553_030_848)  # 20 cells, 36 channels, 32x32x3 input, 10 classes
DARTS_V2 = (3_349_342, 549_851_328)
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
NB201_COST = (176_122, 23_288_512)  # 1 cell per stack, 16 channels


def model(space: str, overrides: dict, **kw) -> RewardModel:
    # the terms each test names, and none of a preset's recipe (the DARTS presets' absolute size term included)
    settings = load_settings(space, {"progress": False, **PLAIN, "size_abs_penalty": 0, **overrides})
    return RewardModel(settings, "nb201" if space == "nb201" else "darts", num_classes=10, in_channels=3,
                       input_size=32, **kw)


def test_params_and_flops_terms_match_hand_computed_values():
    """Breakage caught: a term's exponent or target applied wrongly (or to the other metric), params counted in
    units other than M, a term dropped."""
    rewards = model("pdarts", {"size_target": "3.0,3.0,3.0", "size_exponent": "-0.5,-0.25,0",
                               "flops_target": "500,500,500", "flops_exponent": "-0.25,0,1"})
    for name, (params, flops) in (("pdarts", PDARTS), ("darts_v2", DARTS_V2)):
        metrics = rewards.metrics(PUBLISHED[name], name)
        assert metrics == {"params_m": params / 1e6, "flops_m": flops / 1e6}
    m = rewards.metrics(PUBLISHED["pdarts"], "pdarts")
    # stage 1: 0.9 * (3.433798 / 3) ** -0.5 * (553.030848 / 500) ** -0.25
    assert rewards.reward(0.9, m, 0) == pytest.approx(0.9 * (3.433798 / 3) ** -0.5 * 1.106061696 ** -0.25, rel=1e-9)
    assert rewards.reward(0.9, m, 0) == pytest.approx(0.8202966, rel=1e-6)
    # stage 2: the size term only;  stage 3: the FLOPs term only, with a positive exponent (a reward)
    assert rewards.reward(0.9, m, 1) == pytest.approx(0.9 * (3.433798 / 3) ** -0.25, rel=1e-9)
    assert rewards.reward(0.9, m, 2) == pytest.approx(0.9 * 1.106061696, rel=1e-9)
    # a smaller cell (DARTS V2) earns more under the penalty at the same accuracy
    assert rewards.reward(0.9, rewards.metrics(PUBLISHED["darts_v2"], "v2"), 0) > rewards.reward(0.9, m, 0)


def test_every_exponent_zero_leaves_the_accuracy():
    rewards = model("pdarts", {"size_exponent": 0, "flops_exponent": 0})
    m = rewards.metrics(PUBLISHED["pdarts"], "pdarts")
    assert [rewards.reward(0.73, m, s) for s in range(3)] == [0.73, 0.73, 0.73]


def test_custom_metric_term_matches_hand_computed_values():
    """Breakage caught: the custom ``metric`` term (``--set metric=module:function``) left out of the reward, or
    its value not the function's (computed once per architecture key)."""
    calls = []

    def latency(family, arch):
        calls.append(family)
        return 2.0 if arch == PUBLISHED["pdarts"] else 8.0

    rewards = model("pdarts", {"size_exponent": 0, "flops_exponent": 0, "metric_target": 4.0,
                               "metric_exponent": "-1,-0.5,0"}, custom_metric=latency)
    fast = rewards.metrics(PUBLISHED["pdarts"], "pdarts")
    slow = rewards.metrics(PUBLISHED["darts_v2"], "v2")
    assert fast["metric"] == 2.0 and slow["metric"] == 8.0
    assert rewards.reward(0.6, fast, 0) == pytest.approx(0.6 * (2.0 / 4.0) ** -1)  # 1.2
    assert rewards.reward(0.6, slow, 0) == pytest.approx(0.6 * (8.0 / 4.0) ** -1)  # 0.3
    assert rewards.reward(0.6, slow, 1) == pytest.approx(0.6 * 2.0 ** -0.5)
    assert rewards.reward(0.6, slow, 2) == 0.6
    rewards.metrics(PUBLISHED["pdarts"], "pdarts")
    assert calls == ["darts", "darts"]  # cached by key


def test_all_terms_together_on_an_nb201_cell():
    rewards = model("nb201", {"layers": "1,1,1", "eval_layers": 1, "size_target": 0.2, "size_exponent": -0.3,
                              "flops_target": 20, "flops_exponent": -0.1, "metric_target": 0.5, "metric_exponent": 2},
                    custom_metric=lambda family, arch: 1.0)
    m = rewards.metrics(NB201_ARCH, NB201_ARCH)
    assert (m["params_m"], m["flops_m"], m["metric"]) == (NB201_COST[0] / 1e6, NB201_COST[1] / 1e6, 1.0)
    # 0.5 * (0.176122 / 0.2) ** -0.3 * (23.288512 / 20) ** -0.1 * (1 / 0.5) ** 2
    assert rewards.reward(0.5, m, 0) == pytest.approx(0.5 * 0.88061 ** -0.3 * 1.1644256 ** -0.1 * 4.0, rel=1e-9)
    assert rewards.reward(0.5, m, 0) == pytest.approx(2.0463680, rel=1e-6)


def test_absolute_size_term_costs_a_cell_below_its_target_as_much_as_one_above():
    """TuNAS' absolute term: R = acc - penalty * |params / target - 1|. Breakage caught: the term left out, its sign
    flipped (a bonus), applied as a ratio (which rewards every smaller cell, the collapse it is there to stop), or
    read from another stage's entry."""
    rewards = model("pdarts", {"size_target": "3.0,4.0,3.433798", "size_exponent": 0, "size_abs_penalty": "0.2,0.5,1"})
    m = rewards.metrics(PUBLISHED["pdarts"], "pdarts")
    assert rewards.reward(0.9, m, 0) == pytest.approx(0.9 - 0.2 * (3.433798 / 3 - 1), rel=1e-9)  # above target
    assert rewards.reward(0.9, m, 1) == pytest.approx(0.9 - 0.5 * (1 - 3.433798 / 4), rel=1e-9)  # below target
    assert rewards.reward(0.9, m, 2) == pytest.approx(0.9, rel=1e-9)  # at target: no cost
    # the same distance below and above the target costs the same
    below = {"params_m": 2.0, "flops_m": 1.0}
    above = {"params_m": 4.0, "flops_m": 1.0}
    assert rewards.reward(0.5, below, 0) == pytest.approx(rewards.reward(0.5, above, 0))
    off = model("pdarts", {"size_target": 3.0, "size_exponent": 0})
    assert off.reward(0.9, below, 0) == 0.9  # default 0: no term


@pytest.mark.parametrize("value", ["-0.1", "0.1,-1,0"])
def test_a_negative_absolute_size_penalty_is_one_clear_error(value):
    from nni_offpolicy.errors import UserError

    with pytest.raises(UserError, match="size_abs_penalty must be >= 0"):
        load_settings("pdarts", {"size_abs_penalty": value})
