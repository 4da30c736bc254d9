"""Every cell of a stage's space, when there are few enough to score them all.

Why: after P-DARTS' shrinking, the last stage of an NB201 search holds 2^6 = 64 cells. A score that costs a
forward pass (a zero-cost proxy) can rank all of them in seconds instead of only the cells the controller
happened to sample; a DARTS cell space (input pairs included) stays far too large, and its pick falls back to
the sampled cells.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from nni_offpolicy.search.controller import OffPolicyController

SPACE_LIMIT = 4096  # cells; NB201 with 2 ops per edge is 64, with 3 it is 729


def space_size(controller: OffPolicyController) -> int:
    """The number of distinct decision vectors: the product of every decision's option count."""
    return math.prod(len(d.options) for d in controller.decisions)


def space_samples(controller: OffPolicyController, limit: int = SPACE_LIMIT) -> list[dict[str, Any]] | None:
    """Every sample of the controller's decisions in a fixed order (the first decision's first option first), or
    None when there are more than ``limit``."""
    if space_size(controller) > limit:
        return None
    ranges = [range(len(d.options)) for d in controller.decisions]
    return [controller.to_sample(torch.tensor(actions)) for actions in itertools.product(*ranges)]
