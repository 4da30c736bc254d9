"""Parameters/FLOPs: the per-edge cost table must agree exactly with profiling the whole network."""
from __future__ import annotations

import json
import random

import pytest

import nni_offpolicy.profiling as profiling
from nni_offpolicy.cli import main
from nni_offpolicy.profiling import EvalCostModel, count_params, genotype_cost, profile_model
from search_spaces import DARTS_OPS, NB201_OPS, PUBLISHED, Genotype, GenotypeError, NetworkCIFAR, build_op
from search_spaces.families import load_architecture
from search_spaces.genotypes import sample_to_nb201

SMALL = dict(layers=8, channels=16)


def random_genotype(rng: random.Random, nodes: int = 4) -> Genotype:
    fields = {}
    for kind in ("normal", "reduce"):
        pairs = []
        for j in range(2, nodes + 2):
            for i in sorted(rng.sample(range(j), 2)):
                pairs.append((rng.choice(DARTS_OPS), i))
        fields[kind] = pairs
        fields[f"{kind}_concat"] = list(range(2, nodes + 2))
    return Genotype(**fields)


def random_nb201(rng: random.Random) -> dict[str, str]:
    return {f"cell/op_{j}_{i}": rng.choice(NB201_OPS) for j in range(1, 4) for i in range(j)}



@pytest.fixture(scope="module")
def darts_small() -> EvalCostModel:
    return EvalCostModel("darts", **SMALL)


# ---------------------------------------------------------------- profile_model

def test_profile_model_leaves_the_model_as_it_was():
    model = NetworkCIFAR(PUBLISHED["pdarts"], layers=5, channels=8)
    keys = set(model.state_dict())
    model.train()
    params, flops = profile_model(model, (1, 3, 16, 16))
    assert model.training
    assert set(model.state_dict()) == keys
    assert not [k for k in model.state_dict() if "total_ops" in k or "total_params" in k]
    assert all(not m._forward_hooks for m in model.modules())
    assert params == count_params(model) > 0 and flops > 0
    model.eval()
    assert profile_model(model, (1, 3, 16, 16)) == (params, flops)  # profiling twice gives the same numbers
    assert not model.training


def test_params_leave_out_the_auxiliary_head():
    with_aux = NetworkCIFAR(PUBLISHED["darts_v2"], layers=8, channels=16, auxiliary=True)
    without = NetworkCIFAR(PUBLISHED["darts_v2"], layers=8, channels=16, auxiliary=False)
    all_params = sum(p.numel() for p in with_aux.parameters())
    assert count_params(with_aux) == count_params(without) < all_params
    assert profile_model(with_aux, (1, 3, 32, 32)) == profile_model(without, (1, 3, 32, 32))


def test_our_ops_are_priced_by_their_modules():
    c, h = 16, 8
    bn = 4 * c * h * h  # thop: 2 per element, twice for an affine BN
    # Sequential subclasses and FactorizedReduce are unknown to thop: their children must still be counted.
    assert profile_model(build_op("conv_3x3", c, 1), (1, c, h, h))[1] == c * c * 9 * h * h + bn
    dil = c * 9 * h * h + c * c * h * h + bn
    assert profile_model(build_op("sep_conv_3x3", c, 1), (1, c, h, h))[1] == 2 * dil
    half = h // 2
    reduce_flops = 2 * (c // 2) * c * half * half + 4 * c * half * half
    assert profile_model(build_op("skip_connect", c, 2), (1, c, h, h)) == (c * c + 2 * c, reduce_flops)
    assert profile_model(build_op("avg_pool_3x3", c, 1), (1, c, h, h))[1] == c * h * h
    for op in ("none", "skip_connect", "max_pool_3x3"):  # no multiply-accumulates, correctly
        assert profile_model(build_op(op, c, 1), (1, c, h, h)) == (0, 0)
    for op in ("dil_conv_3x3", "dil_conv_5x5", "sep_conv_5x5", "conv_1x1", "conv_3x1_1x3", "nor_conv_3x3"):
        params, flops = profile_model(build_op(op, c, 2), (1, c, h, h))
        assert params > 0 and flops > 0, op


# ---------------------------------------------------------------- EvalCostModel == full profile

def decoy(arch):
    """Another architecture of the same shape (same concats; NB201: same edges), different ops: pricing it first
    makes the cost model profile its whole network once, so the architecture under test is priced from the
    per-edge table. (The first architecture of a shape IS a full profile: comparing it with genotype_cost
    compares genotype_cost with itself.)"""
    if isinstance(arch, dict):
        return {label: ("avg_pool_3x3" if op != "avg_pool_3x3" else "nor_conv_1x1") for label, op in arch.items()}
    swap = lambda pairs: [("dil_conv_5x5" if op != "dil_conv_5x5" else "max_pool_3x3", i) for op, i in pairs]
    return arch._replace(normal=swap(arch.normal), reduce=swap(arch.reduce))


def table_cost(model, arch, monkeypatch):
    """``model.cost(arch)`` after its shape's one full profile went to a decoy; a whole-network profile now
    fails the test, so what comes back was added up from the per-edge table."""
    model.cost(decoy(arch))
    with monkeypatch.context() as m:
        m.setattr(profiling, "genotype_cost", lambda *a, **k: pytest.fail("priced by a whole-network profile"))
        return model.cost(arch)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_cost_model_is_exact_for_published_genotypes(name, monkeypatch):
    """Breakage caught: a wrong per-edge table entry or fixed part for any published cell."""
    model = EvalCostModel("darts", **SMALL)
    assert table_cost(model, PUBLISHED[name], monkeypatch) == genotype_cost(PUBLISHED[name], "darts", **SMALL)


def test_cost_model_is_exact_for_random_genotypes(monkeypatch):
    rng = random.Random(7)
    genotypes = [random_genotype(rng) for _ in range(5)]
    model = EvalCostModel("darts", **SMALL)
    costs = [table_cost(model, g, monkeypatch) for g in genotypes]
    assert costs == [genotype_cost(g, "darts", **SMALL) for g in genotypes]
    assert len(set(costs)) > 1


def test_cost_model_handles_other_concats_and_node_counts(monkeypatch):
    """Breakage caught: the fixed part (preprocessing) kept for one concat count used for another."""
    rng = random.Random(3)
    five = random_genotype(rng, nodes=5)
    partial = PUBLISHED["pdarts"]._replace(normal_concat=[3, 4, 5])
    model = EvalCostModel("darts", **SMALL)
    for g in (five, partial):
        assert table_cost(model, g, monkeypatch) == genotype_cost(g, "darts", **SMALL)


def test_cost_model_at_full_size_matches_the_readme_figures(monkeypatch):
    """README: the P-DARTS cell at 20 cells / 36 channels is 3.43 M params and 553.0 M MACs; DARTS V2 3.35 M and
    549.9 M. Priced from the table (the first full profile went to a decoy) and by the whole network."""
    model = EvalCostModel("darts")
    for name, readme in (("pdarts", (3.43, 553.0)), ("darts_v2", (3.35, 549.9))):
        params, flops = table_cost(model, PUBLISHED[name], monkeypatch)
        assert (params, flops) == genotype_cost(PUBLISHED[name], "darts", layers=20, channels=36)
        assert (round(params / 1e6, 2), round(flops / 1e6, 1)) == readme, (name, params, flops)


def test_cost_model_is_exact_for_nb201(monkeypatch):
    rng = random.Random(11)
    model = EvalCostModel("nb201", layers=2)
    samples = [random_nb201(rng) for _ in range(5)]
    assert [table_cost(model, s, monkeypatch) for s in samples] == \
        [genotype_cost(s, "nb201", layers=2) for s in samples]
    # an arch string prices the same as its sample dict
    assert model.cost(sample_to_nb201(samples[0])) == model.cost(samples[0])


def test_cost_model_caches_and_validates(darts_small):
    first = darts_small.cost(PUBLISHED["pdarts"])
    assert darts_small.cost(PUBLISHED["pdarts"]) is first
    bad = PUBLISHED["pdarts"]._replace(normal=[("sep_conv_9x9", 0)] + PUBLISHED["pdarts"].normal[1:])
    with pytest.raises(GenotypeError, match="sep_conv_9x9"):
        darts_small.cost(bad)
    with pytest.raises(GenotypeError, match="cell/op_3_2"):
        EvalCostModel("nb201", layers=1).cost({"cell/op_1_0": "none"})


def test_more_parameters_cost_more(darts_small):
    plain = Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)] * 4, normal_concat=[2, 3, 4, 5],
                     reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, reduce_concat=[2, 3, 4, 5])
    heavy = plain._replace(normal=[("sep_conv_5x5", 0), ("sep_conv_5x5", 1)] * 4)
    p0, f0 = darts_small.cost(plain)
    p1, f1 = darts_small.cost(heavy)
    assert p1 > p0 and f1 > f0


# ---------------------------------------------------------------- CLI

def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["profile", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name, params_m, flops_m", [("pdarts", 3.43, 553.0), ("darts_v2", 3.35, 549.9)])
def test_profile_matches_the_readme_figures(capsys, name, params_m, flops_m):
    """The README's table: to its printed precision (3.43 M params, 553.0 M MACs for P-DARTS)."""
    code, out, err = run_cli(capsys, name, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert round(result["params"] / 1e6, 2) == params_m and round(result["flops"] / 1e6, 1) == flops_m, result
    assert result["family"] == "darts" and result["layers"] == 20 and result["channels"] == 36
    assert result["genotype"] == name


def test_profile_human_line(capsys):
    code, out, _ = run_cli(capsys, "darts_v1", "--layers", "8", "--channels", "16")
    assert code == 0
    params, flops = genotype_cost(PUBLISHED["darts_v1"], "darts", layers=8, channels=16)
    assert out.strip() == (f"darts_v1: {params / 1e6:.2f} M params (without auxiliary head), "
                           f"{flops / 1e6:.1f} M FLOPs (MACs) at 8 cells, 16 channels, 32x32 input")


def test_profile_nb201_arch_string_uses_nb201_defaults(capsys):
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    code, out, err = run_cli(capsys, arch, "--json", "--layers", "1")
    assert code == 0, err
    result = json.loads(out)
    assert result["family"] == "nb201" and result["channels"] == 16 and result["layers"] == 1
    assert (result["params"], result["flops"]) == genotype_cost(arch, "nb201", layers=1, channels=16)


def test_profile_unknown_name_is_one_line_and_exit_2(capsys):
    code, out, err = run_cli(capsys, "nopdarts")
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1
    assert "nopdarts" in err and "pdarts" in err.replace("'nopdarts'", "") and "Traceback" not in err


def test_profile_malformed_json_names_the_field(capsys, tmp_path):
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"normal": [["sep_conv_3x3", 0]] * 8, "normal_concat": [2, 3, 4, 5],
                                   "reduce": [["max_pool_3x3", 0]] * 8}))
    code, _, err = run_cli(capsys, str(missing))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "reduce_concat" in err

    bad_index = tmp_path / "bad_index.json"
    pairs = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4
    pairs[5] = ["sep_conv_3x3", 7]
    bad_index.write_text(json.dumps({"normal": pairs, "normal_concat": [2, 3, 4, 5],
                                     "reduce": [["max_pool_3x3", 0]] * 8, "reduce_concat": [2, 3, 4, 5]}))
    code, _, err = run_cli(capsys, str(bad_index))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "normal[5]" in err


def test_profile_index_past_the_end_of_a_built_in(capsys):
    code, _, err = run_cli(capsys, "pdarts", "--index", "2")
    assert code == 2 and "--index 2" in err


def test_warm_up_fills_the_table_so_pricing_needs_no_profiling(monkeypatch):
    model = EvalCostModel("darts", layers=5, channels=8).warm_up()
    entries = len(model._edges)
    assert entries == 8 * 5  # 8 ops x (3 normal sizes + 2 stride-2 reduction inputs)
    rng = random.Random(5)
    genotype = random_genotype(rng)
    expected = genotype_cost(genotype, "darts", layers=5, channels=8)
    monkeypatch.setattr(profiling, "profile_model", lambda *a, **k: pytest.fail("profiled after warm_up"))
    assert model.cost(genotype) == expected
    assert len(model._edges) == entries
    with pytest.raises(ValueError, match="sep_conv_9x9"):
        EvalCostModel("nb201", layers=1).warm_up(["sep_conv_9x9"])


@pytest.fixture(scope="module")
def digits_search(tmp_path_factory):
    """A tiny search on the embedded digits: 8x8 grey images, 10 classes, evaluation size 5 cells x 8 channels."""
    from fixtures import TINY, set_flags

    out = tmp_path_factory.mktemp("profiled") / "run"
    assert main(["search", "--quiet", "-o", str(out), *set_flags({**TINY, "epochs": "1,1,1", "warmup_epochs": "0,0,0",
                                                                 "max_steps_per_epoch": 1})]) == 0
    return out / "genotype.json"


def test_profile_of_a_search_uses_the_evaluation_size_it_records(capsys, digits_search):
    """Breakage caught (issue 27): ``profile runs/demo/genotype.json`` priced the cell at 32x32 RGB, 20 x 36 while
    the search recorded its own evaluation size (8x8 grey, eval_layers x eval_channels): two numbers for one cell."""
    doc = json.loads(digits_search.read_text())
    assert doc["eval_size"] == {"layers": 5, "channels": 8, "input_size": 8, "in_channels": 1, "num_classes": 10}
    code, out, err = run_cli(capsys, str(digits_search), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["params"], result["flops"]) == (doc["params"], doc["flops"])
    assert {k: result[k] for k in doc["eval_size"]} == doc["eval_size"]
    code, out, _ = run_cli(capsys, str(digits_search))
    assert code == 0 and f"{doc['flops_m']:.1f} M FLOPs" in out and "8x8 input" in out
    assert "evaluation size recorded in" in out


def test_profile_flags_override_the_recorded_evaluation_size(capsys, digits_search):
    code, out, err = run_cli(capsys, str(digits_search), "--json", "--input-size", "32", "--in-channels", "3",
                             "--layers", "8")
    assert code == 0, err
    result = json.loads(out)
    doc = json.loads(digits_search.read_text())
    assert (result["layers"], result["channels"], result["input_size"], result["in_channels"],
            result["num_classes"]) == (8, 8, 32, 3, 10)
    family, arch = load_architecture(str(digits_search))
    assert (result["params"], result["flops"]) == genotype_cost(arch, family, layers=8, channels=8, num_classes=10,
                                                                 in_channels=3, input_size=32)


def test_a_cost_model_built_from_a_family_record_reads_as_one_built_from_its_name():
    """The search hands the Family record down (SearchSettings.family); the model's repr printed the whole record
    (every field and function of the family) in place of its name."""
    from search_spaces.families import get_family

    assert repr(EvalCostModel(get_family("nb201"), layers=1)) == repr(EvalCostModel("nb201", layers=1))
    assert repr(EvalCostModel(get_family("darts"))).startswith("EvalCostModel('darts', layers=20")
