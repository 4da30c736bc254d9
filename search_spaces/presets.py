"""Named spaces: which family, which op lists, and the default size of the network built from them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from nni.nas.nn.pytorch import ModelSpace

from .families import DARTS, NB201, EdgeOpLists, Family
from .ops import DARTS_OPS, NB201_OPS


class UnknownSpaceError(ValueError):
    pass


@dataclass(frozen=True)
class SpacePreset:
    name: str
    family: Family  # the record (families.FAMILIES): what consumers of a space use, never re-resolved
    ops: Mapping[str, Sequence[str]] = field(default_factory=dict)  # kind -> ops on every edge
    description: str = ""


SPACE_PRESETS: dict[str, SpacePreset] = {
    "darts": SpacePreset("darts", DARTS, {"normal": DARTS_OPS, "reduce": DARTS_OPS},
                         "DARTS: 8 ops on every edge of normal and reduce cells"),
    "pdarts": SpacePreset("pdarts", DARTS, {"normal": DARTS_OPS, "reduce": DARTS_OPS},
                          "P-DARTS: the DARTS op set, shrunk per edge between stages"),
    "extended": SpacePreset(
        "extended", DARTS,
        {"normal": DARTS_OPS + ["conv_1x1", "conv_3x3"],
         "reduce": ["none", "skip_connect", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "avg_pool_3x3"]},
        "the lab log's 10/6 set: DARTS + conv_1x1, conv_3x3 in normal cells; pools and skip in reduce cells"),
    "nb201": SpacePreset("nb201", NB201, {"cell": NB201_OPS}, "NAS-Bench-201: one cell, 6 edges, 5 ops"),
}


def space_preset(name: str) -> SpacePreset:
    if name not in SPACE_PRESETS:
        raise UnknownSpaceError(f"unknown space {name!r}; allowed: {', '.join(SPACE_PRESETS)}")
    return SPACE_PRESETS[name]


def initial_edge_ops(name: str, nodes: int = 4) -> EdgeOpLists:
    """Every edge of every cell kind with the preset's full op list."""
    preset = space_preset(name)
    return preset.family.expand_kinds(preset.ops, nodes)


def build_space(name: str, edge_ops: EdgeOpLists | None = None, layers: int | None = None, channels: int = 16,
                num_classes: int = 10, in_channels: int = 3, nodes: int = 4) -> ModelSpace:
    """Build the NNI model space ``name`` with (possibly shrunk) per-edge op lists.

    ``layers`` is the number of cells (DARTS family, default 8) or cells per stack (NB201, default 5).
    """
    preset = space_preset(name)
    edge_ops = edge_ops or initial_edge_ops(name, nodes)
    return preset.family.build_space(edge_ops, layers, channels, num_classes, in_channels, nodes)
