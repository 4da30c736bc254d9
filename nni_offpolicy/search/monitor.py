"""The one place a run logs: TensorBoard scalars with stable names and a metrics.jsonl line per epoch.

Tag layout. TensorBoard groups scalars by a tag's first segment, sorts the groups by character code (upper case
before lower case) and opens the first two, so the headline quantities get capitalised groups of their own and
come first, the per-edge policy (hundreds of series) sits under one prefix, and the rest stays per stage:

- ``Accuracy/stage<s>/{valid,greedy,train,sampled_mean}``, ``Entropy/stage<s>``,
  ``Params/stage<s>/{greedy_m,greedy_flops_m,sampled_mean_m,sampled_flops_mean_m}``,
  ``Reward/stage<s>/{mean,max,min,greedy}``;
- ``edges/stage<s>/prob/<decision>/<option>`` and ``edges/stage<s>/argmax/<decision>``;
- ``stage<s>/epoch/<record key>`` (loss, lr, seconds, ...) and ``stage<s>/<update statistic>`` (controller
  baseline, importance weights, ...).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from torch.utils.tensorboard import SummaryWriter

from nni_offpolicy.files.atomic import atomic_append_line, atomic_write_text


# a controller update's statistic -> its headline tag, {s} the stage (others: stage<s>/<name>)
UPDATE_HEADLINES = {"reward/mean": "Reward/stage{s}/mean", "reward/max": "Reward/stage{s}/max",
                    "reward/min": "Reward/stage{s}/min", "controller/entropy": "Entropy/stage{s}",
                    "sample/acc_mean": "Accuracy/stage{s}/sampled_mean",
                    "sample/params_m": "Params/stage{s}/sampled_mean_m",
                    "sample/flops_m": "Params/stage{s}/sampled_flops_mean_m"}
# an epoch record's key -> its headline tag (others: stage<s>/epoch/<key>)
EPOCH_HEADLINES = {"valid_acc": "Accuracy/stage{s}/valid", "greedy_acc": "Accuracy/stage{s}/greedy",
                   "train_acc": "Accuracy/stage{s}/train", "greedy_reward": "Reward/stage{s}/greedy",
                   "greedy_params_m": "Params/stage{s}/greedy_m", "greedy_flops_m": "Params/stage{s}/greedy_flops_m"}


def update_tag(stage: int, name: str) -> str:
    """The tag of a controller update's statistic ``name`` in ``stage`` (1-based)."""
    return UPDATE_HEADLINES[name].format(s=stage) if name in UPDATE_HEADLINES else f"stage{stage}/{name}"


def epoch_tag(stage: int, name: str) -> str:
    """The tag of an epoch record's key ``name`` in ``stage`` (1-based)."""
    return EPOCH_HEADLINES[name].format(s=stage) if name in EPOCH_HEADLINES else f"stage{stage}/epoch/{name}"


def edge_tag(stage: int, what: str, label: str, option: str | None = None) -> str:
    """``what`` = ``prob`` (one series per option) or ``argmax`` (the index of the policy's pick)."""
    return f"edges/stage{stage}/{what}/{label}" + (f"/{option}" if option is not None else "")


class RunLogger:
    def __init__(self, output_dir: str | Path, purge_step: int | None = None, jsonl_lines: int | None = None):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.dir / "tensorboard"), purge_step=purge_step)
        self.jsonl = self.dir / "metrics.jsonl"
        if jsonl_lines is not None and self.jsonl.exists():
            # a resumed run rewrites what the killed run logged after its last checkpoint
            lines = self.jsonl.read_text().splitlines()[:jsonl_lines]
            atomic_write_text("".join(line + "\n" for line in lines), self.jsonl)
        self.lines = len(self.jsonl.read_text().splitlines()) if self.jsonl.exists() else 0

    def scalars(self, values: Mapping[str, float], step: int, tag: Callable[[str], str]) -> None:
        """Each value under ``tag(name)`` (``update_tag``/``epoch_tag`` of a stage)."""
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag(name), float(value), step)

    def record(self, record: Mapping[str, Any]) -> None:
        atomic_append_line(json.dumps(record), self.jsonl)  # a kill mid-write never leaves half a line
        self.lines += 1
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class PolicyView(Protocol):
    """What policy logging reads of a controller."""
    decisions: list

    def greedy(self) -> Any: ...

    def probabilities(self) -> dict[str, dict[str, float]]: ...


def log_policy(writer: SummaryWriter, controller: PolicyView, stage: int, step: int) -> None:
    """Per-edge argmax index and probabilities of ``stage`` (1-based), once per epoch: the lab log's main
    TensorBoard view."""
    greedy = controller.greedy().tolist()
    for a, (label, probs) in zip(greedy, controller.probabilities().items()):
        writer.add_scalar(edge_tag(stage, "argmax", label), a, step)
        for option, p in probs.items():  # add_scalar, not add_scalars: one run per series clutters TensorBoard
            writer.add_scalar(edge_tag(stage, "prob", label, option), p, step)


class SilentLogger:
    """What replicas other than 0 log: nothing (replica 0 logs the run once)."""

    lines = 0

    def scalars(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record(self, record: Any) -> None:
        return None

    def close(self) -> None:
        return None
