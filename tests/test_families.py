"""The family registry: both families listed, one error for an unknown name, one expansion rule, one
evaluation-network builder, and no code outside the registry that branches on a family's name."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from nni_offpolicy import profiling, retrain
from nni_offpolicy.retrain import RetrainSettings
from search_spaces.darts_cell import expand_edge_ops
from search_spaces.families import FAMILIES, Family, UnknownFamilyError, get_family
from search_spaces.genotypes import PUBLISHED, nb201_to_sample
from search_spaces.nb201 import NB201Space, expand_nb201_ops
from search_spaces.presets import SPACE_PRESETS

ROOT = Path(__file__).resolve().parents[1]
NB201_ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
ARCHS = {"darts": PUBLISHED["pdarts"], "nb201": nb201_to_sample(NB201_ARCH)}


def test_registry_lists_both_families_and_every_preset_names_one():
    assert list(FAMILIES) == ["darts", "nb201"]
    for name, family in FAMILIES.items():
        assert get_family(name) is family and family.name == name
    assert {preset.family.name for preset in SPACE_PRESETS.values()} == set(FAMILIES)
    assert get_family("darts").kinds == ["normal", "reduce"] and get_family("nb201").kinds == ["cell"]
    assert len(get_family("darts").edge_keys(4)) == 14 and len(get_family("nb201").edge_keys()) == 6
    assert pickle.loads(pickle.dumps(get_family("nb201"))) is get_family("nb201")  # by name: it holds functions


@pytest.mark.parametrize("lookup", [get_family, lambda name: profiling.as_architecture({}, name),
                                    lambda name: profiling.EvalCostModel(name)])
def test_unknown_family_is_one_clear_error(lookup):
    with pytest.raises(UnknownFamilyError, match=r"^unknown family 'nasbench101'; allowed: darts, nb201$"):
        lookup("nasbench101")


@pytest.mark.parametrize("expand", [
    lambda ops: expand_edge_ops(ops, 4, "normal_ops"),
    lambda ops: expand_nb201_ops(ops),  # drifted before the registry: took a duplicate silently
    lambda ops: get_family("darts").expand(ops, 4),
    lambda ops: get_family("nb201").expand(ops),
    lambda ops: NB201Space(ops=ops, layers=1, channels=4),
])
def test_every_familys_expansion_rejects_a_duplicate_op(expand):
    with pytest.raises(ValueError, match="lists an op twice"):
        expand(["skip_connect", "none", "skip_connect"])


def test_expansion_rules_are_shared():
    for name, family in FAMILIES.items():
        with pytest.raises(ValueError, match="empty op list"):
            family.expand([])
        with pytest.raises(ValueError, match="unknown op 'conv_9x9'"):
            family.expand(["conv_9x9"])
        with pytest.raises(ValueError, match="must have exactly the keys"):
            family.expand({"9_9": ["none"]})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_retrain_and_profiling_build_the_same_eval_network(name, monkeypatch):
    built = []
    original = Family.build_eval_network

    def spy(self, *args, **kwargs):
        built.append(original(self, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(Family, "build_eval_network", spy)
    arch = ARCHS[name]
    settings = RetrainSettings(genotype="unused", layers=8, channels=8)
    from_retrain = retrain.build_network(name, arch, settings, in_channels=3, input_size=32, num_classes=10)
    from_profiling = profiling.build_eval_network(arch, name, layers=8, channels=8)
    assert len(built) == 2, "both must go through Family.build_eval_network"
    assert type(from_retrain) is type(from_profiling)
    assert sum(p.numel() for p in from_retrain.parameters()) == sum(p.numel() for p in from_profiling.parameters())
    assert retrain.count_params(from_retrain) == profiling.count_params(from_profiling)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_codec_round_trips(name):
    family = get_family(name)
    arch = ARCHS[name]
    assert family.normalise(family.from_json(family.to_json(arch))) == family.normalise(arch)
    text = family.to_text(arch)
    assert text == (str(arch) if name == "darts" else NB201_ARCH)
    assert family.cost_key(family.normalise(family.to_json(arch))) == family.cost_key(arch)


def test_default_eval_shapes():
    assert get_family("darts").eval_shape() == (20, 36) and get_family("nb201").eval_shape() == (5, 16)
    assert get_family("darts").eval_shape(8, None) == (8, 36)


FAMILY_BRANCH = re.compile(r"""family\s*(==|!=)|(==|!=)\s*["'](nb201|darts)["']""")


def _sources():
    for package in ("nni_offpolicy", "search_spaces"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_no_family_branch_outside_the_registry():
    """Code asks the family record; only families.py may speak of a family by name in a comparison."""
    found = [f"{name}:{k}: {line.strip()}" for name, text in _sources() if name != "search_spaces/families.py"
             for k, line in enumerate(text.splitlines(), start=1) if FAMILY_BRANCH.search(line)]
    assert not found, "branches on a family's name:\n" + "\n".join(found)


def test_the_search_space_package_does_not_import_the_searcher():
    found = [f"{name}:{k}" for name, text in _sources() if name.startswith("search_spaces/")
             for k, line in enumerate(text.splitlines(), start=1)
             if re.match(r"(from|import)\s+nni_offpolicy\b", line)]  # module level only
    assert not found, found


class CountingFamilies(dict):
    """``FAMILIES`` that counts the names looked up in it (``get_family`` asks ``name in FAMILIES`` first)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.lookups: list[str] = []

    def __contains__(self, name):
        self.lookups.append(name)
        return super().__contains__(name)


@pytest.mark.parametrize("preset, extra", [("demo", {}), ("nb201", {"layers": "1,1,1", "ops_kept": "3,2,1",
                                                                    "eval_layers": 1})])
def test_a_search_hands_its_family_record_down_and_never_looks_up_its_name(tmp_path, monkeypatch, preset, extra):
    """Issue 28: the space's preset holds the record, settings hand it to the search, and nothing from validation
    to genotype.json resolves the name again (six lookups from five modules before)."""
    from fixtures import TINY

    from nni_offpolicy.search.loop import run_search
    from nni_offpolicy.settings import load_settings
    from search_spaces import families

    counting = CountingFamilies(families.FAMILIES)
    monkeypatch.setattr(families, "FAMILIES", counting)
    settings = load_settings(preset, {**TINY, **extra, "dataset": "digits"})
    doc = run_search(settings, tmp_path)
    assert counting.lookups == []
    assert settings.family is get_family(doc["family"]) and doc["family"] == settings.family.name
