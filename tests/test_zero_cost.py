"""The zero-cost scores (the registry, NASWOT bit for bit), rank ensembles, and their reward term and settings."""
from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from nni_offpolicy import settings_checks
from nni_offpolicy.search import zero_cost, zero_cost_names
from nni_offpolicy.errors import UserError
from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.settings import load_settings
from nni_offpolicy.search.zero_cost import ZeroCostScorer, naswot_score

CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def _images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_naswot_is_the_log_determinant_of_the_code_agreement_kernel():
    """Hand-computed: one ReLU over 3 inputs of 2 units; K[i, j] = units where i and j are both on or both off."""
    x = torch.tensor([[1.0, 2.0], [-1.0, 3.0], [-2.0, -1.0]])
    kernel = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    expected = float(torch.linalg.slogdet(kernel)[1]) / 3
    assert naswot_score(nn.Sequential(nn.ReLU()), x) == pytest.approx(expected)


def _naswot_two_products(network: nn.Module, images: torch.Tensor) -> float:
    """The score as the paper writes it: K = C C^T + (1 - C)(1 - C)^T in float64, summed over the ReLUs."""
    n, kernel = images.shape[0], torch.zeros(images.shape[0], images.shape[0], dtype=torch.float64)

    def hook(module, inputs, output):
        codes = (output.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.t()).add_((1.0 - codes) @ (1.0 - codes).t())

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        network.train()
        network(images)
    for handle in handles:
        handle.remove()
    return float(torch.linalg.slogdet(kernel)[1]) / n


@pytest.mark.parametrize("family,arch", [("nb201", CONV), ("nb201", "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
                                                                    "+|none~0|nor_conv_3x3~1|skip_connect~2|"),
                                         ("darts", "pdarts"), ("darts", "darts_v1")])
def test_the_one_product_kernel_gives_the_papers_score_to_the_last_bit(family, arch):
    """Breakage caught: the single float32 product (2 c_i.c_j - |c_i| - |c_j| + units) drifting from the two
    float64 products it replaces (a rounding, a wrong diagonal or unit count), which would move every NASWOT
    reward and zero-cost pick of the presets."""
    from nni_offpolicy.profiling import build_eval_network
    from search_spaces.genotypes import PUBLISHED

    cell = PUBLISHED[arch] if family == "darts" else arch
    for seed in range(2):
        torch.manual_seed(seed)
        network = build_eval_network(cell, family, layers=2, channels=8, num_classes=10, in_channels=3, input_size=16)
        images = _images(24, seed)
        assert naswot_score(network, images) == _naswot_two_products(network, images)


def test_a_network_that_cannot_tell_images_apart_scores_zero():
    same = _images(1).expand(8, -1, -1, -1).contiguous()
    assert ZeroCostScorer("nb201", same, 1, 4, 10)(CONV, "conv") == 0.0
    # the all-none cell's cells output zeros: only the stem and residual blocks split the images
    scorer = ZeroCostScorer("nb201", _images(), 1, 4, 10)
    assert scorer(CONV, CONV) > scorer(NONE, NONE)


def test_score_is_a_function_of_the_cell_and_leaves_the_global_random_stream_alone():
    """A resumed search (fresh cache, another RNG state) must score a cell exactly as the first run did."""
    images = _images()
    torch.manual_seed(1)
    first = ZeroCostScorer("nb201", images, 1, 4, 10)(CONV, CONV)
    after = torch.rand(1)
    torch.manual_seed(1)
    torch.rand(5)  # another history
    second = ZeroCostScorer("nb201", images, 1, 4, 10)(CONV, CONV)
    assert first == second
    torch.manual_seed(1)
    ZeroCostScorer("nb201", images, 1, 4, 10)(CONV, CONV)
    assert torch.equal(torch.rand(1), after)


def test_reward_multiplies_in_the_zero_cost_term():
    s = load_settings("demo", {"space": "nb201", "layers": "1,1,1", "ops_kept": "3,2,1", "zero_cost": "naswot",
                               "zero_cost_exponent": 4, "zero_cost_target": 10, "zero_cost_images": 16,
                               "zero_cost_channels": 4, "eval_layers": 1, "eval_channels": 4,
                               "size_exponent": -0.1, "size_abs_penalty": 0})
    model = RewardModel(s, "nb201", 10, 3, 16, probe_images=_images())
    from search_spaces.genotypes import nb201_to_sample

    metrics = model.metrics(nb201_to_sample(CONV), CONV)
    size_term = (metrics["params_m"] / 0.3) ** -0.1  # a size term beside it stays in
    assert model.reward(0.5, metrics, 0) == pytest.approx(0.5 * size_term * (metrics["zero_cost"] / 10) ** 4)


def test_zero_cost_settings_are_checked():
    assert settings_checks.ZERO_COST_SCORES is zero_cost_names.ZERO_COST_SCORES  # one tuple, read by both
    assert load_settings("demo", {"zero_cost": "none"}).zero_cost is None
    with pytest.raises(UserError, match="unknown zero_cost score 'synflaw'; allowed: none, naswot, synflow, "):
        load_settings("demo", {"zero_cost": "synflaw"})
    assert load_settings("demo", {"zero_cost": "naswot"}).zero_cost_images is None  # min(64, reward batch)
    with pytest.raises(UserError, match=r"zero_cost_images \(64\) exceeds the reward batch \(32\)"):
        load_settings("demo", {"zero_cost": "naswot", "zero_cost_images": 64})
    with pytest.raises(UserError, match="zero_cost_channels must be >= 1"):
        load_settings("demo", {"zero_cost_channels": 0})


def test_the_registry_holds_the_names_settings_accept():
    """Breakage caught: a score registered but not accepted by the settings (or accepted and missing), and a
    score without its paper or cost in its docstring."""
    assert tuple(zero_cost.SCORES) == zero_cost_names.ZERO_COST_SCORES
    for name, score in zero_cost.SCORES.items():
        assert score.name == name and score.cost and score.fn.__doc__
        assert re.search(r"(19|20)\d\d", score.fn.__doc__), name  # cites its paper's year
    assert [n for n, s in zero_cost.SCORES.items() if s.labels] == ["zico", "snip", "grad_norm"]


@pytest.mark.parametrize("value", list(zero_cost_names.ZERO_COST_SCORES) + ["ens:naswot+synflow+zico",
                                                                            "ens:params+jacob_cov"])
def test_every_score_and_ensemble_is_accepted(value):
    assert load_settings("demo", {"zero_cost": value}).zero_cost == value


@pytest.mark.parametrize("value,expected", [
    ("synflaw", "unknown zero_cost score 'synflaw'; allowed: none, naswot, synflow, zico, snip, grad_norm, "
                "jacob_cov, params, flops, or ens:A+B[+C...] of two or more of them"),
    ("ens:naswot+synflaw", "unknown zero_cost score 'synflaw' in 'ens:naswot+synflaw'; allowed: none, naswot"),
    ("ens:naswot", "zero_cost=ens:naswot must join two or more different scores with '+'"),
    ("ens:naswot+naswot", "zero_cost=ens:naswot+naswot must join two or more different scores"),
    ("ens:", "unknown zero_cost score '' in 'ens:'"),
    ("NASWOT", "unknown zero_cost score 'NASWOT'"),
])
def test_a_bad_zero_cost_is_one_line_listing_what_is_allowed(value, expected):
    with pytest.raises(UserError) as info:
        load_settings("demo", {"zero_cost": value})
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    assert "ens:A+B[+C...]" in str(info.value)


def test_settings_read_the_names_without_torch():
    """The names live in a torch-free module: importing the settings and checking a zero_cost value (what building
    the CLI parser may do) imports neither torch nor NNI."""
    code = ("import sys; import nni_offpolicy.settings, nni_offpolicy.settings_checks as s; from nni_offpolicy.search import zero_cost_names as z;"
            "assert z.components('ens:naswot+zico') == ('naswot', 'zico') and 'zico' in s.ZERO_COST_SCORES;"
            "print(sorted(m for m in ('torch', 'nni') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- every registered score on tiny networks

DARTS_POOLS = "pdarts", "darts_v1"


def _cells(family: str) -> dict[str, object]:
    """Two clearly different cells of ``family``, by key."""
    from search_spaces.genotypes import PUBLISHED

    if family == "nb201":
        return {CONV: CONV, POOL: POOL}
    return {name: PUBLISHED[name] for name in DARTS_POOLS}


POOL = "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|avg_pool_3x3~1|skip_connect~2|"


def _scorer(family: str, score: str, **kwargs) -> ZeroCostScorer:
    layers = 1 if family == "nb201" else 2
    return ZeroCostScorer(family, _images(12), layers, 4, 10, score=score, labels=_labels(12), **kwargs)


def _labels(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(10, (n,), generator=torch.Generator().manual_seed(seed + 100))


@pytest.mark.parametrize("family", ["nb201", "darts"])
@pytest.mark.parametrize("score", zero_cost_names.ZERO_COST_SCORES)
def test_every_score_is_a_finite_function_of_the_cell_that_tells_cells_apart(family, score):
    """Breakage caught: a score that is NaN/inf, depends on the random stream or on what was scored before, moves
    the search's random stream, or gives two clearly different cells (a convolution cell, a pooling cell) the
    same value."""
    cells = _cells(family)
    torch.manual_seed(3)
    after = torch.rand(1)
    torch.manual_seed(3)
    first = {key: _scorer(family, score)(arch, key) for key, arch in cells.items()}
    assert torch.equal(torch.rand(1), after)  # the search's own stream did not move
    torch.rand(7)  # another history, and the cells in the other order in a fresh scorer
    again = _scorer(family, score)
    second = {key: again(cells[key], key) for key in reversed(list(cells))}
    assert first == second
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.values())
    assert len(set(first.values())) == 2, first


def test_higher_is_better_where_a_paper_says_so():
    """The convolution cell beats the pooling/skip/none cell on every score (each higher = better)."""
    for score in zero_cost_names.ZERO_COST_SCORES:
        scorer = _scorer("nb201", score)
        assert scorer(CONV, CONV) > scorer(POOL, POOL), score


def test_scores_that_take_a_loss_need_the_labels():
    for score in ("zico", "snip", "grad_norm", "ens:naswot+zico"):
        with pytest.raises(ValueError, match="needs the probe batch's labels"):
            ZeroCostScorer("nb201", _images(), 1, 4, 10, score=score)
    ZeroCostScorer("nb201", _images(), 1, 4, 10, score="ens:naswot+synflow+jacob_cov+params")  # none needed


def test_a_constant_jacobian_and_a_flowless_network_fall_back_to_zero():
    same = _images(1).expand(8, -1, -1, -1).contiguous()  # identical images: their Jacobians correlate fully
    scorer = ZeroCostScorer("nb201", same, 1, 4, 10, score="jacob_cov")
    assert 0.0 <= scorer(CONV, CONV) < 0.01
    assert zero_cost.SCORES["jacob_cov"].fallback == 0.0
    flat = zero_cost.Score("x", lambda cell: float("nan"), "none", False, fallback=0.0)
    assert flat(None) == 0.0


def test_synflow_is_the_log_of_the_summed_synaptic_saliency():
    """Hand-computed: a linear net x -> W2 W1 x on an all-ones input with |W|: R = 1^T |W2||W1| 1; the score is
    log sum |w * dR/dw| = log 2R (each of two layers contributes R)."""
    w1 = torch.tensor([[1.0, -2.0], [0.5, 1.0]])
    w2 = torch.tensor([[-1.0, 3.0]])

    def build():
        net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2), nn.Linear(2, 1, bias=False))
        with torch.no_grad():
            net[0].weight.copy_(w1)
            net[2].weight.copy_(w2)
        return net

    cell = zero_cost.Cell(build, torch.zeros(4, 2), None, lambda: (0, 0))
    r = float(w2.abs().sum(0) @ w1.abs().sum(1))
    assert zero_cost.SCORES["synflow"](cell) == pytest.approx(math.log(2 * r))


def test_params_and_flops_are_the_cost_models():
    from nni_offpolicy.profiling import EvalCostModel

    model = EvalCostModel("nb201", layers=1, channels=4, num_classes=10, in_channels=3, input_size=16)
    params, flops = model.cost(CONV)
    assert _scorer("nb201", "params")(CONV, CONV) == params / 1e6
    assert _scorer("nb201", "flops")(CONV, CONV) == flops / 1e6


# ---------------------------------------------------------------- rank ensembles

def test_rank_fractions_average_ties_and_put_the_best_at_one():
    assert zero_cost.rank_fractions({"a": 3.0, "b": 1.0, "c": 2.0}) == {"a": 1.0, "b": 1 / 3, "c": 2 / 3}
    # b and c tie for ranks 2 and 3: both 2.5 of 4
    assert zero_cost.rank_fractions({"a": 0.0, "b": 5.0, "c": 5.0, "d": 9.0}) == {
        "a": 0.25, "b": 0.625, "c": 0.625, "d": 1.0}
    assert zero_cost.rank_fractions({"a": 1.0, "b": 1.0}) == {"a": 0.75, "b": 0.75}
    assert zero_cost.rank_fractions({"a": -4.0}) == {"a": 1.0}


def test_mean_rank_averages_the_components_ranks():
    scores = {"naswot": {"a": 10.0, "b": 12.0, "c": 11.0}, "synflow": {"a": 3.0, "b": 1.0, "c": 2.0}}
    # naswot ranks a 1/3, b 1, c 2/3; synflow a 1, b 1/3, c 2/3
    assert zero_cost.mean_rank(scores) == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 2 / 3})
    tied = {"x": {"a": 1.0, "b": 1.0, "c": 0.0}, "y": {"a": 5.0, "b": 4.0, "c": 3.0}}
    assert zero_cost.mean_rank(tied) == pytest.approx({"a": (5 / 6 + 1) / 2, "b": (5 / 6 + 2 / 3) / 2,
                                                       "c": (1 / 3 + 1 / 3) / 2})


def test_percentile_places_a_value_among_the_reference_and_itself():
    reference = [1.0, 2.0, 2.0, 3.0]
    assert zero_cost.percentile(0.5, reference) == 1 / 5  # below all: the lowest of five
    assert zero_cost.percentile(9.0, reference) == 1.0
    assert zero_cost.percentile(2.0, reference) == (1 + 1 + 1) / 5  # one below, two ties (half each)
    # the same place rank_fractions gives it among the reference and itself
    ranked = zero_cost.rank_fractions({"x": 2.5, **{str(i): v for i, v in enumerate(reference)}})
    assert zero_cost.percentile(2.5, reference) == ranked["x"]


def test_score_set_is_the_raw_score_alone_and_the_mean_rank_in_an_ensemble(monkeypatch):
    """A single score scored together gives the values it gives one at a time (today's picks are unchanged); an
    ensemble gives the mean rank, computing each component of each cell once."""
    cells = {CONV: CONV, POOL: POOL, NONE: NONE}
    single = _scorer("nb201", "naswot")
    assert single.score_set(cells) == {key: single(arch, key) for key, arch in cells.items()}
    calls = []
    for name in ("naswot", "params"):
        original = zero_cost.SCORES[name]
        monkeypatch.setitem(zero_cost.SCORES, name, zero_cost.Score(
            name, lambda cell, fn=original.fn, n=name: calls.append(n) or fn(cell), original.cost, False))
    ens = _scorer("nb201", "ens:naswot+params")
    values = ens.score_set(cells)
    raw = {name: {key: ens.component(name, arch, key) for key, arch in cells.items()} for name in ("naswot", "params")}
    assert values == zero_cost.mean_rank(raw)
    assert values[CONV] == 1.0  # the convolution cell is first on both
    ens.score_set(cells)
    assert sorted(calls) == ["naswot"] * 3 + ["params"] * 3  # never recomputed


def test_an_ensemble_scores_one_cell_by_its_percentiles_among_fixed_reference_cells():
    """The reward scores one cell at a time: an ensemble's value is the mean over its components of the cell's
    percentile among reference cells drawn once, with a fixed seed, by the search's own uniform sampler."""
    from search_spaces.presets import initial_edge_ops

    ops = initial_edge_ops("nb201")
    with pytest.raises(ValueError, match="needs reference_ops"):
        _scorer("nb201", "ens:naswot+synflow")(CONV, CONV)
    scorer = _scorer("nb201", "ens:naswot+synflow", reference_ops=ops, reference_size=6)
    reference = zero_cost.reference_cells("nb201", ops, size=6)
    assert reference == zero_cost.reference_cells("nb201", ops, size=6) and len(reference) == 6  # fixed
    torch.manual_seed(5)
    after = torch.rand(1)
    torch.manual_seed(5)
    value = scorer(CONV, CONV)
    assert torch.equal(torch.rand(1), after)
    expected = sum(zero_cost.percentile(scorer.component(name, CONV, CONV),
                                        [scorer.component(name, arch, key) for key, arch in reference.items()])
                   for name in ("naswot", "synflow")) / 2
    assert value == expected and 0 < value <= 1
    assert scorer(NONE, NONE) < value


def test_reward_takes_an_ensemble_with_the_search_probe_labels():
    s = load_settings("demo", {"space": "nb201", "layers": "1,1,1", "ops_kept": "3,2,1",
                               "zero_cost": "ens:naswot+zico", "zero_cost_exponent": 1, "zero_cost_target": 0.5,
                               "zero_cost_images": 16, "zero_cost_channels": 4, "eval_layers": 1,
                               "eval_channels": 4, "size_abs_penalty": 0})
    with pytest.raises(ValueError, match="zico needs the probe batch's labels"):
        RewardModel(s, "nb201", 10, 3, 16, probe_images=_images())
    model = RewardModel(s, "nb201", 10, 3, 16, probe_images=_images(), probe_labels=_labels())
    model.zero_cost.reference_size = 4  # keeps the test short; the default is 32
    from search_spaces.genotypes import nb201_to_sample

    metrics = model.metrics(nb201_to_sample(CONV), CONV)
    assert 0 < metrics["zero_cost"] <= 1
    assert model.reward(0.5, metrics, 0) == pytest.approx(0.5 * metrics["zero_cost"] / 0.5)


def test_an_ensemble_picks_from_the_last_space_by_mean_rank(tmp_path):
    """The whole search path: probe labels and reference ops reach the scorers, and the zero-cost pick ranks
    the last space by each cell's mean rank among its cells (recorded as eval_zero_cost)."""
    from fixtures import NB201_TINY
    from nni_offpolicy.search.loop import run_search

    settings = load_settings("nb201", {**NB201_TINY, "zero_cost": "ens:naswot+snip", "final_pick": "zero-cost",
                                       "final_candidates": 64, "zero_cost_exponent": "0", "epochs": "1,1,0",
                                       "warmup_epochs": "1,1,1", "zero_cost_images": 16})
    doc = run_search(settings, tmp_path / "ens")
    candidates = doc["final_candidates"]
    assert len(candidates) == 64 and all(0 < c["eval_zero_cost"] <= 1 for c in candidates)
    assert doc["sample"] == max(candidates, key=lambda c: c["eval_zero_cost"])["sample"]


def test_the_study_script_prints_one_table_of_every_score(tmp_path):
    """scripts/zero_cost_study.py on the embedded digits (about 10 s): one header and one row per score, the
    same in --json, against a small table the test writes (tests make their own tables)."""
    import json
    import random
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    draw = random.Random(0)
    rows = set()
    while len(rows) < 40:
        o = [draw.choice(ops) for _ in range(6)]
        rows.add(f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|")
    table = tmp_path / "small.csv"
    table.write_text("arch,acc\n" + "".join(f"{arch},{draw.uniform(10, 45):.2f}\n" for arch in sorted(rows)))
    scores = ["naswot", "synflow", "zico", "snip", "grad_norm", "jacob_cov", "params", "flops",
              "ens:naswot+synflow+zico"]
    out = subprocess.run([sys.executable, "scripts/zero_cost_study.py", "--table", str(table), "--data", "digits",
                          "--cells", "20", "--seed", "1", "--scores", ",".join(scores), "--json",
                          str(tmp_path / "study.json")], cwd=repo, capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("20 cells of small.csv (acc) drawn with seed 1; the top 10 %: 2 cells")
    assert lines[1].split()[:3] == ["score", "Spearman", "Kendall"]
    assert [line.split()[0] for line in lines[2:]] == scores
    doc = json.loads((tmp_path / "study.json").read_text())
    assert [r["score"] for r in doc["rows"]] == scores
    assert all(-1 <= r["spearman"] <= 1 and r["seconds_per_cell"] >= 0 for r in doc["rows"])
    with pytest.raises(subprocess.CalledProcessError):  # a bad score name: argparse's one line, exit 2
        subprocess.run([sys.executable, "scripts/zero_cost_study.py", "--table", str(table), "--scores", "nasbot"],
                       cwd=repo, capture_output=True, check=True)


def test_the_pick_can_rank_by_its_own_score_while_the_reward_keeps_its_own(tmp_path):
    """pick_zero_cost: the reward's term stays the cheap single score (raw NASWOT values in the candidates'
    zero_cost) while the zero-cost pick ranks the last space by an ensemble (mean ranks in eval_zero_cost)."""
    from fixtures import NB201_TINY
    from nni_offpolicy.search.loop import run_search

    settings = load_settings("nb201", {**NB201_TINY, "zero_cost": "naswot", "pick_zero_cost": "ens:naswot+snip",
                                       "final_pick": "zero-cost", "final_candidates": 64, "zero_cost_exponent": "0",
                                       "epochs": "1,1,0", "warmup_epochs": "1,1,1", "zero_cost_images": 16})
    doc = run_search(settings, tmp_path / "pick")
    candidates = doc["final_candidates"]
    assert len(candidates) == 64 and all(0 < c["eval_zero_cost"] <= 1 for c in candidates)
    assert doc["sample"] == max(candidates, key=lambda c: c["eval_zero_cost"])["sample"]
    assert any(c["zero_cost"] > 1 for c in candidates if "zero_cost" in c)  # the reward's raw NASWOT, not a rank
    assert doc["settings"]["pick_zero_cost"] == "ens:naswot+snip"


@pytest.mark.parametrize("overrides,expected", [
    ({"zero_cost": "naswot", "final_pick": "zero-cost", "pick_zero_cost": "synflaw"},
     "unknown pick_zero_cost score 'synflaw'; allowed: none, naswot"),
    ({"zero_cost": "naswot", "final_pick": "best-sampled", "pick_zero_cost": "ens:naswot+synflow"},
     "pick_zero_cost is the score final_pick=zero-cost ranks the last space by, and final_pick is best-sampled: "
     "set final_pick=zero-cost or pick_zero_cost=none"),
])
def test_a_bad_pick_zero_cost_is_one_line(overrides, expected):
    with pytest.raises(UserError) as info:
        load_settings("demo", overrides)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
