"""Every cell of a stage's space, when there are few enough to score them all.

Why: after P-DARTS' shrinking, the last stage of an NB201 search holds 2^6 = 64 cells. A score that costs a
forward pass (a zero-cost proxy) can rank all of them in seconds instead of only the cells the controller
happened to sample; a DARTS cell space (input pairs included) stays far too large, and its pick falls back to
the sampled cells.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

from search_spaces.families import EdgeOpLists

from nni_offpolicy.search.controller import Decision

SPACE_LIMIT = 4096  # cells; NB201 with 2 ops per edge is 64, with 3 it is 729


def space_size(decisions: Sequence[Decision]) -> int:
    """The number of distinct decision vectors: the product of every decision's option count."""
    return math.prod(len(d.options) for d in decisions)


def space_samples(decisions: Sequence[Decision], limit: int = SPACE_LIMIT) -> list[dict[str, Any]] | None:
    """Every sample of ``decisions`` (``progressive.build_decisions`` of a space) in a fixed order (the first
    decision's first option first), as the controller writes samples, or None when there are more than
    ``limit``."""
    if space_size(decisions) > limit:
        return None
    return [{d.label: sorted(option) if d.kind == "input" else option for d, option in zip(decisions, options)}
            for options in itertools.product(*(d.options for d in decisions))]


def within(sample: Mapping[str, Any], space: EdgeOpLists) -> bool:
    """Whether every op ``sample`` picks is one ``space`` keeps on that edge (labels ``kind/op_edge``)."""
    for label, choice in sample.items():
        kind, _, name = label.partition("/")
        if name.startswith("op_"):
            ops = space.get(kind, {}).get(name[3:])
            if ops is None or choice not in ops:
                return False
    return True
