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
    return state


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

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, stage: int, next_epoch: int, edge_ops: dict, run: "StageRun | None", jsonl_lines: int) -> None:
        """Write the state at this boundary atomically (replica 0 only: the replicas hold the same state)."""
        search = self.search
        if not search.replicas.is_main:
            return
        state = {
            "version": 1, "settings": search.settings.to_dict(), "stage": stage, "next_epoch": next_epoch,
            "edge_ops": edge_ops, "stage_state": run.state() if run is not None and next_epoch > 0 else None,
            "rng": ckpt.rng_state(), "global_step": search.global_step, "reward_updates": search.reward_updates,
            "tracker": search.tracker.state(), "stage_summaries": search.stage_summaries,
            "jsonl_lines": jsonl_lines, "elapsed": search.elapsed_before + time.time() - search.started,
        }
        ckpt.atomic_save(state, self.path)

    def restore(self, resume_state: dict[str, Any] | None, edge_ops: dict) -> tuple[int, int, dict]:
        """Where the loop starts, ``(stage, epoch, edge_ops)``: the beginning (with ``edge_ops``) without a
        resume state; else the checkpoint's boundary, with the search's counters put back."""
        if resume_state is None:
            return 0, 0, edge_ops
        search = self.search
        search.global_step, search.reward_updates = resume_state["global_step"], resume_state["reward_updates"]
        search.tracker.load_state(resume_state["tracker"])
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
            ckpt.set_rng_state(self.pending_rng)
            self.pending_rng = None
        run = build()
        if self.stage_state is not None:
            run.load_state(self.stage_state)
            self.stage_state = None
        if self.pending_rng is not None:
            ckpt.set_rng_state(self.pending_rng)
            self.pending_rng = None
        return run
