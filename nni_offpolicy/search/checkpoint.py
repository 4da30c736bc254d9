"""A search's checkpoint: what is written after every epoch, and how a resume puts it back.

``ProgressiveSearch`` runs the loop; this object (like Lightning's checkpoint connector) owns the checkpoint's
contents, where they go, and the order in which a resume restores them, the RNG last of all: a resumed stage
rebuilds its supernet and controller (which draws from the global RNG) and only then gets the saved stream back,
so the run goes on exactly where the uninterrupted one would have been.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.files.inputs import search_inputs
from nni_offpolicy.errors import UserError
from nni_offpolicy.settings import resume_differences

if TYPE_CHECKING:
    from nni_offpolicy.search.loop import ProgressiveSearch, StageRun
    from nni_offpolicy.settings import SearchSettings

CHECKPOINT = "checkpoint.pt"
RESUME_KEYS = {"settings", "stage", "next_epoch", "edge_ops", "stage_state", "rng", "global_step", "reward_updates",
               "tracker", "stage_summaries", "jsonl_lines", "elapsed"}  # what SearchCheckpoint.restore reads


def load_resume_state(path: Path, settings: "SearchSettings") -> dict[str, Any]:
    """The checkpoint to resume from, refused in one line when it is unreadable, foreign or from other settings."""
    state = ckpt.load(path)
    if not isinstance(state, dict) or not RESUME_KEYS <= set(state) or not isinstance(state["settings"], dict):
        raise UserError(f"checkpoint {path} is not a search checkpoint; start again with --overwrite "
                        f"(or another --output)")
    changed = resume_differences(state["settings"], settings)  # runtime settings may change
    if changed:
        raise UserError(f"--resume: settings differ from the checkpoint's in {changed}")
    problem = _damage(state, settings)
    if problem:
        raise UserError(f"checkpoint {path} is damaged ({problem}); start again with --overwrite (or another "
                        f"--output)")
    return state


def _whole(value: Any, low: int, high: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value and (high is None or value <= high)


def _damage(state: dict[str, Any], settings: "SearchSettings") -> str | None:
    """What makes a checkpoint's contents impossible for these settings (an edited or foreign file), checked as
    settings are, before anything is built from it; None when it is sound."""
    stage, epoch = state["stage"], state["next_epoch"]
    if not _whole(stage, 0, settings.stages - 1):
        return f"stage {stage!r} is not one of the run's {settings.stages} stages"
    if not _whole(epoch, 0, settings.epochs[stage]):
        return f"next_epoch {epoch!r} is not in 0..{settings.epochs[stage]} (stage {stage + 1}'s epochs)"
    inner = state["stage_state"]
    parts = ("controller",) if settings.reward_source == "table" else ("supernet", "optimizer", "scheduler",
                                                                        "controller")  # what each stage saves
    if epoch > 0 and not (isinstance(inner, dict) and all(isinstance(inner.get(k), dict) for k in parts)):
        return f"stage_state lacks the stage's {', '.join(parts)}"
    if epoch == 0 and inner is not None:
        return "stage_state is set at a stage boundary"
    for name in ("global_step", "reward_updates", "jsonl_lines"):
        if not _whole(state[name], 0):
            return f"{name} {state[name]!r} is not a whole number >= 0"
    elapsed = state["elapsed"]
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not 0 <= elapsed < float("inf"):
        return f"elapsed {elapsed!r} is not a time"
    if not isinstance(state["edge_ops"], dict) or not isinstance(state["stage_summaries"], list):
        return "edge_ops or stage_summaries is of the wrong type"
    tracker = state["tracker"]
    if not isinstance(tracker, dict) or not {"recent", "best", "argmax", "changed", "updates"} <= set(tracker):
        return "tracker lacks recent, best, argmax, changed or updates"
    if not isinstance(state["rng"], dict) or not {"python", "numpy", "torch"} <= set(state["rng"]):
        return "rng lacks the python, numpy or torch state"
    return None


def damaged(path: Path, exc: BaseException) -> UserError:
    """A checkpoint whose parts the run cannot take back (a tensor of another shape, a missing key deep inside)."""
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return UserError(f"checkpoint {path} is damaged ({type(exc).__name__}: {first}); start again with --overwrite "
                     f"(or another --output)")


class SearchCheckpoint:
    """Saves a search's state at epoch and stage boundaries and restores it on resume.

    ``restore`` puts the counters, tracker and summaries back into the search at once and returns where the loop
    starts; the stage's own state and the RNG wait for ``open_stage``, which builds the stage first (its weights
    and controller come from the RNG) and restores them afterwards, in the order the saved run drew them."""

    def __init__(self, search: "ProgressiveSearch", folder: Path):
        self.search, self.path = search, folder / CHECKPOINT
        self.pending_rng: Any = None
        self.stage_state: dict[str, Any] | None = None
        self.jsonl_lines: int | None = None  # metrics.jsonl's length at the checkpoint (None: a fresh run)
        self.inputs: dict[str, str] | None = None  # files.inputs: what a resume must find unchanged

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, stage: int, next_epoch: int, edge_ops: dict, run: "StageRun | None", jsonl_lines: int) -> None:
        """Write the state at this boundary atomically (replica 0 only: the replicas hold the same state)."""
        search = self.search
        if not search.replicas.is_main:
            return
        if self.inputs is None:
            self.inputs = search_inputs(search.settings)
        state = {
            "version": 1, "settings": search.settings.to_dict(), "stage": stage, "next_epoch": next_epoch,
            "edge_ops": edge_ops, "stage_state": run.state() if run is not None and next_epoch > 0 else None,
            "rng": ckpt.rng_state(), "global_step": search.global_step, "reward_updates": search.reward_updates,
            "tracker": search.tracker.state(), "stage_summaries": search.stage_summaries,
            "jsonl_lines": jsonl_lines, "elapsed": search.elapsed_before + time.time() - search.started,
            "inputs": self.inputs,
        }
        ckpt.atomic_save(state, self.path)

    def restore(self, resume_state: dict[str, Any] | None, edge_ops: dict) -> tuple[int, int, dict]:
        """Where the loop starts, ``(stage, epoch, edge_ops)``: the beginning (with ``edge_ops``) without a
        resume state; else the checkpoint's boundary, with the search's counters put back."""
        if resume_state is None:
            return 0, 0, edge_ops
        search = self.search
        search.global_step, search.reward_updates = resume_state["global_step"], resume_state["reward_updates"]
        try:
            search.tracker.load_state(resume_state["tracker"])
        except (KeyError, TypeError, ValueError) as exc:
            raise damaged(self.path, exc) from None
        search.stage_summaries = resume_state["stage_summaries"]
        search.elapsed_before = resume_state["elapsed"]
        self.stage_state, self.pending_rng = resume_state["stage_state"], resume_state["rng"]
        self.jsonl_lines = resume_state["jsonl_lines"]
        return resume_state["stage"], resume_state["next_epoch"], resume_state["edge_ops"]

    def open_stage(self, build: Callable[[], "StageRun"]) -> "StageRun":
        """The stage ``build`` makes, with the pending restore applied: at a stage boundary the RNG comes back
        before the build (the new stage's weights are drawn from the saved stream); mid-stage after it, once the
        stage's saved weights, optimiser and controller are loaded."""
        if self.pending_rng is not None and self.stage_state is None:
            self._take_back(ckpt.set_rng_state, self.pending_rng)
            self.pending_rng = None
        run = build()
        if self.stage_state is not None:
            self._take_back(run.load_state, self.stage_state)
            self.stage_state = None
        if self.pending_rng is not None:
            self._take_back(ckpt.set_rng_state, self.pending_rng)
            self.pending_rng = None
        return run

    def _take_back(self, load: Callable[[Any], None], saved: Any) -> None:
        """``load(saved)``: a part of the checkpoint that does not fit (a hand-edited or foreign file) is one line."""
        try:
            load(saved)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
            raise damaged(self.path, exc) from None
