"""When a search's numbers go bad: one message per cause, each ending with what the output folder still holds.

A diverged supernet or controller must stop the search before the controller learns from it (a NaN reward turns
every probability into NaN within one update), and the user must learn whether there is a checkpoint to resume
from. The checks sit where the loop syncs with the device anyway (controller steps, epoch ends).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import math

import torch

from nni_offpolicy.errors import SearchDiverged
from nni_offpolicy.search.accel import NonFiniteWatch


class DivergenceGuard:
    def __init__(self, checkpoint_exists: Callable[[], bool], folder: Path, replicas: Any, device: torch.device):
        self.checkpoint_exists, self.folder, self.replicas, self.device = checkpoint_exists, folder, replicas, device

    def kept(self) -> str:
        """What a divergence leaves behind, for its message: a checkpoint only once an epoch has finished."""
        if self.checkpoint_exists():
            return f"the checkpoint of the last finished epoch in {self.folder} is intact"
        return f"no epoch had finished, so {self.folder} holds no checkpoint to resume"

    def check_loss(self, watch: NonFiniteWatch, stage: int, epoch: int) -> None:
        """Every replica stops at the same check when any replica's loss went non-finite."""
        bad = watch.first()
        flagged = self.replicas.sum(torch.tensor(float(bad is not None), device=self.device))
        if bad is not None:
            raise SearchDiverged(f"loss is {bad[1]} at stage {stage + 1}, epoch {epoch + 1}, step {bad[0] + 1}; "
                                 f"{self.kept()}")
        if flagged:
            raise SearchDiverged(f"the loss went non-finite in another replica at stage {stage + 1}, epoch "
                                 f"{epoch + 1}; {self.kept()}")

    def check_rewards(self, rewards: list[float], where: str) -> None:
        """Before the controller learns from them. ``where``: "at stage S, epoch E, step T"."""
        if not all(math.isfinite(r) for r in rewards):
            raise SearchDiverged(f"a reward is not finite {where} (rewards {rewards}); {self.kept()}")

    def check_update(self, problem: str | None, alpha: torch.Tensor, where: str) -> None:
        """After a controller update: the learner's own verdict, then alpha itself (e.g. a huge controller_lr),
        stopped before it spreads."""
        if problem is not None:
            raise SearchDiverged(f"{problem} {where}; {self.kept()}")
        if not bool(torch.isfinite(alpha).all()):
            raise SearchDiverged(f"the controller's alpha is not finite after the update {where}; try a lower "
                                 f"controller_lr; {self.kept()}")
