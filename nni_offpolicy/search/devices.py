"""Which torch device a run uses; one rule for search, retrain and the NNI evaluator."""
from __future__ import annotations

import torch

from nni_offpolicy.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one; asking for CUDA where there is none is the user's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return torch.device(name)
