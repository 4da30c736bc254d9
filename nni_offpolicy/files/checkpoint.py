"""Checkpoints and RNG state: written atomically, read without running anyone's code.

``load`` uses ``torch.load(weights_only=True)``: a checkpoint may hold only tensors and plain Python values
(dicts, lists, tuples, numbers, strings), so a ``checkpoint.pt`` planted in an output folder cannot execute
code when a run is resumed. Everything the runs store (RNG states included) is kept in those types.
"""
from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nni_offpolicy.files.atomic import atomic_write
from nni_offpolicy.errors import UserError

SEED_LIMIT = 2**32 - 1  # derived seeds (seed * 1_000_003 + ...) must stay inside torch's 64-bit seeds


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through ``atomic_write``: a killed process never leaves a half-written checkpoint."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def load(path: str | Path) -> Any:
    """A checkpoint's contents; ``UserError`` (one line) for an empty, truncated, foreign or unsafe file.
    Loads tensors and plain values only (``weights_only=True``): nothing in the file is executed."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UserError(f"checkpoint {path} is empty; start again with --overwrite (or another --output)")
        return torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        unsafe = "weights only load failed" in str(exc).lower()
        detail = "it holds objects other than tensors and plain values, which are never loaded" if unsafe \
            else (reason[0] if reason else "unreadable")
        raise UserError(f"checkpoint {path} cannot be read: {detail}; start again with --overwrite "
                        f"(or another --output)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, KeyError,
            IndexError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"checkpoint {path} cannot be read (truncated or not a checkpoint: {first}); start "
                        f"again with --overwrite (or another --output)") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values (what ``load`` accepts)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_seed(seed: int, name: str = "seed") -> None:
    """Seeds are whole numbers in [0, 2**32 - 1], so every seed derived from one fits torch; one line otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_LIMIT:
        raise UserError(f"{name} must be a whole number in [0, {SEED_LIMIT}], got {seed!r}")


def seed_everything(seed: int) -> None:
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
