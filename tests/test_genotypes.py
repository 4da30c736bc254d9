"""Genotypes: NNI sample dict <-> Genotype <-> JSON, DARTS-printed strings, NB201 arch strings, bad files."""
from __future__ import annotations

import json

import pytest

from search_spaces.families import load_architecture
from search_spaces.genotypes import (PUBLISHED, Genotype, GenotypeError, genotype_to_dict, genotype_to_sample,
                                     load_genotype, nb201_to_sample, parse_genotype, sample_to_genotype,
                                     sample_to_nb201)
from search_spaces.presets import build_space, initial_edge_ops


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_round_trip_through_nni_sample_and_json(name, tmp_path):
    genotype = PUBLISHED[name]
    sample = genotype_to_sample(genotype, initial_edge_ops("darts"))
    assert sample_to_genotype(sample) == genotype
    space = build_space("darts", layers=3, channels=4)
    space.freeze(sample)  # NNI accepts it as a complete sample of the space
    path = tmp_path / "g.json"
    path.write_text(json.dumps(genotype_to_dict(genotype)))
    assert load_genotype(str(path)) == genotype
    assert parse_genotype(str(genotype)) == genotype


def test_darts_printed_string_with_range_parses():
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=range(2, 6))")
    assert parse_genotype(text) == PUBLISHED["darts_v2"]
    assert load_genotype(text) == PUBLISHED["darts_v2"]


def test_nb201_arch_string_round_trip():
    arch = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    sample = nb201_to_sample(arch)
    assert sample["cell/op_3_1"] == "nor_conv_1x1" and sample_to_nb201(sample) == arch
    assert load_architecture(arch) == ("nb201", sample)
    build_space("nb201", layers=1).freeze(sample)


@pytest.mark.parametrize("arch,match", [
    ("|nor_conv_3x3~0|+|none~0|", "3 nodes"),
    ("|nor_conv_3x3~0|+|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|", "node 2 of"),
    ("|conv_9x9~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|", "unknown op 'conv_9x9'"),
])
def test_bad_nb201_strings(arch, match):
    with pytest.raises(GenotypeError, match=match):
        nb201_to_sample(arch)


def _bad(**changes):
    data = genotype_to_dict(PUBLISHED["pdarts"])
    data.update(changes)
    return data


@pytest.mark.parametrize("data,field", [
    (_bad(normal=[["sep_conv_3x3", 0]] * 7), "normal: expected 2 (op, input) pairs per node"),
    (_bad(reduce=[["sep_conv_3x3", 0]] * 7 + [["sep_conv_3x3", 9]]), "reduce[7]: input index 9 out of range"),
    (_bad(normal=[["sep_conv_3x3", 0]] * 7 + [["conv_9x9", 1]]), "normal[7]: unknown op 'conv_9x9'"),
    ({"normal": []}, "missing field"),
])
def test_malformed_genotype_files_name_the_field(tmp_path, data, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError) as err:
        load_genotype(str(path))
    assert field in str(err.value)


def test_op_not_allowed_on_an_edge_names_the_edge():
    edge_ops = initial_edge_ops("extended")
    with pytest.raises(GenotypeError, match=r"reduce\[0\]: op 'avg_pool_3x3' not allowed on edge 2_0|reduce\[\d\]: op"):
        genotype_to_sample(PUBLISHED["pdarts"], edge_ops)


def test_unknown_name_and_index_past_the_end(tmp_path):
    with pytest.raises(GenotypeError, match="unknown genotype name 'dartz'.*darts_v1"):
        load_genotype("dartz")
    path = tmp_path / "top.json"
    path.write_text(json.dumps({"architectures": [{"genotype": genotype_to_dict(PUBLISHED["pdarts"])}]}))
    assert load_architecture(str(path), 0)[1] == PUBLISHED["pdarts"]
    with pytest.raises(GenotypeError, match="index 3 is past the end"):
        load_architecture(str(path), 3)
    assert isinstance(PUBLISHED["pdarts"], Genotype) and PUBLISHED["pdarts"]._fields == (
        "normal", "normal_concat", "reduce", "reduce_concat")
