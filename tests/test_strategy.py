"""ProgressiveOffPolicy inside NNI's own NasExperiment, and the spaces as NNI sees them."""
from __future__ import annotations

import json

import pytest
import torch
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import InputChoice, LayerChoice

from nni_offpolicy.nni_glue.strategy import ProgressiveOffPolicy, SearchData
from search_spaces import DARTS_OPS, DartsCellSpace, NB201Space
from search_spaces.genotypes import sample_to_genotype, validate_genotype

from fixtures import TINY_STRATEGY


@pytest.mark.usefixtures("private_home")  # NNI writes its experiment registry and logs under ~/nni-experiments
def test_nas_experiment_runs_the_strategy_and_exports_the_derived_cell(tmp_path):
    ops = ["max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"]  # a user's own op set
    space = DartsCellSpace(normal_ops=ops, reduce_ops=ops, layers=3, channels=4, in_channels=1)
    strategy = ProgressiveOffPolicy(preset="demo", output_dir=tmp_path / "nas", **TINY_STRATEGY)  # beside home/
    experiment = NasExperiment(space, SearchData("digits"), strategy)
    try:
        experiment.run()
        exported = experiment.export_top_models(formatter="dict")
        model = experiment.export_top_models(formatter="instance")[0]
    finally:  # NNI stops an experiment at exit otherwise: logging to pytest's closed streams, under the real $HOME
        experiment.stop()
    assert len(exported) == 1
    sample = exported[0]
    genotype = sample_to_genotype(sample)
    validate_genotype(genotype, distinct_inputs=True)
    assert {op for op, _ in genotype.normal + genotype.reduce} <= set(ops)
    saved = json.loads((tmp_path / "nas" / "genotype.json").read_text())
    assert saved["sample"] == sample
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_darts_space_has_the_right_mutables():
    space = DartsCellSpace(normal_ops=DARTS_OPS, reduce_ops=DARTS_OPS, layers=5, channels=4)
    mutables = space.simplify()
    assert len(mutables) == 36
    labels = {m.label for m in space.modules() if isinstance(m, LayerChoice)}
    inputs = {m.label for m in space.modules() if isinstance(m, InputChoice)}
    assert len(labels) == 28 and len(inputs) == 8
    assert mutables["normal/input_5"].n_chosen == 2 and list(mutables["normal/input_5"].values) == [0, 1, 2, 3, 4]


def test_per_edge_candidate_lists_are_honoured():
    keys = [f"{j}_{i}" for j in range(2, 6) for i in range(j)]
    per_edge = {k: (["skip_connect", "sep_conv_3x3"] if k == "3_1" else ["max_pool_3x3", "conv_3x3", "none"])
                for k in keys}
    space = DartsCellSpace(normal_ops=per_edge, reduce_ops=["max_pool_5x5", "skip_connect"], layers=3, channels=4)
    m = space.simplify()
    assert list(m["normal/op_3_1"].values) == ["skip_connect", "sep_conv_3x3"]
    assert list(m["normal/op_2_0"].values) == ["max_pool_3x3", "conv_3x3", "none"]
    assert list(m["reduce/op_5_4"].values) == ["max_pool_5x5", "skip_connect"]


@pytest.mark.parametrize("bad,match", [
    ({"normal_ops": ["sep_conv_9x9"]}, "unknown op 'sep_conv_9x9'"),
    ({"layers": 2}, "layers must be >= 3"),
    ({"normal_ops": {"2_0": ["none"]}}, "must have exactly the keys"),
])
def test_bad_space_arguments(bad, match):
    args = dict(normal_ops=DARTS_OPS, reduce_ops=DARTS_OPS, layers=3, channels=4)
    with pytest.raises(ValueError, match=match):
        DartsCellSpace(**{**args, **bad})


@pytest.mark.parametrize("size", [8, 32])
def test_every_preset_space_runs_forward_and_backward(size):
    from search_spaces.presets import SPACE_PRESETS, build_space
    for name in SPACE_PRESETS:
        space = build_space(name, layers=1 if name == "nb201" else 3, channels=4,
                            in_channels=1 if size == 8 else 3)
        sample = {label: mutable.default() for label, mutable in space.simplify().items()}
        model = space.freeze(sample)
        out = model(torch.randn(2, 1 if size == 8 else 3, size, size))
        out.sum().backward()
        assert out.shape == (2, 10)


def test_nb201_space_labels():
    from search_spaces.ops import NB201_OPS
    space = NB201Space(ops=NB201_OPS, layers=1)
    assert sorted(space.simplify()) == sorted(f"cell/op_{j}_{i}" for j in range(1, 4) for i in range(j))
