"""What a stage's controller steps leave to look at: recent rewards, the best sample, every sampled cell's mean
reward (the best-sampled pick's candidates) and whether each decision's argmax still moves after the warm-up.

Kept apart from the loop because the loop's checkpoint, its final picks and its tests read it, and none of them
needs the loop.
"""
from __future__ import annotations

from collections import deque
from typing import Any


class Tracker:
    """What the lab log watched, kept across epochs (and checkpointed): recent rewards, the best sample, and
    whether each decision's argmax still moves after the warm-up (the Matthew effect)."""

    def __init__(self, window: int):
        self.recent: deque = deque(maxlen=window)
        self.best: dict[str, Any] | None = None
        # every distinct cell the stage's controller steps sampled: its reward sum and count (the final pick's
        # candidates are the highest mean rewards of the last stage)
        self.cells: dict[str, dict[str, Any]] = {}
        self.argmax: dict[str, int] = {}
        self.changed: set[str] = set()
        self.updates = 0

    def observe_samples(self, stage: int, rewards: list[float], samples: list[dict], keys: list[str],
                        metrics: list[dict]) -> None:
        for r, sample, key, m in zip(rewards, samples, keys, metrics):
            self.recent.append(r)
            if self.best is None or self.best["stage"] < stage or r > self.best["reward"]:
                self.best = {"stage": stage, "reward": r, "sample": sample, "key": key, **m}
            cell = self.cells.setdefault(key, {"sample": sample, "reward_sum": 0.0, "count": 0})
            cell["reward_sum"] += r
            cell["count"] += 1

    def ranked_cells(self) -> list[dict[str, Any]]:
        """The stage's sampled cells, highest mean reward first (ties: the first sampled)."""
        return sorted(self.cells.values(), key=lambda c: -c["reward_sum"] / c["count"])

    def observe_argmax(self, labels: list[str], greedy: list[int]) -> None:
        for label, a in zip(labels, greedy):
            if label in self.argmax and self.argmax[label] != a:
                self.changed.add(label)
            self.argmax[label] = a

    def reset_stage(self) -> None:
        self.argmax, self.changed, self.recent = {}, set(), deque(maxlen=self.recent.maxlen)
        self.cells = {}

    def recent_stats(self) -> dict[str, float]:
        if not self.recent:
            return {}
        values = list(self.recent)
        best = max(range(len(values)), key=values.__getitem__)
        worst = min(range(len(values)), key=values.__getitem__)
        return {"reward/recent_mean": sum(values) / len(values), "reward/recent_max": values[best],
                "reward/recent_argmax": best, "reward/recent_argmin": worst}

    def state(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "best": self.best, "argmax": self.argmax,
                "changed": sorted(self.changed), "updates": self.updates, "cells": self.cells}

    def load_state(self, state: dict[str, Any]) -> None:
        self.recent.clear()
        self.recent.extend(state["recent"])
        self.best, self.argmax, self.changed = state["best"], state["argmax"], set(state["changed"])
        self.updates = state["updates"]
        self.cells = state.get("cells", {})  # a checkpoint from before the final pick kept none

    def frozen_share(self, op_labels: list[str]) -> float:
        """Of the op decisions ``op_labels`` whose argmax was watched, the share that never moved (the Matthew
        effect: near 1 means the first favourite kept every edge); NaN when none was watched."""
        tracked = [label for label in op_labels if label in self.argmax]
        return sum(1 for label in tracked if label not in self.changed) / len(tracked) if tracked else float("nan")
