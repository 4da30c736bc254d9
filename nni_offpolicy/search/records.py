"""What an epoch and a stage leave behind: the epoch's line of metrics.jsonl (and NNI's intermediate result) and
the stage's entry of genotype.json's ``stages``.

Apart from the loop so that both reward sources (the supernet's ``ProgressiveSearch`` and the table's
``TableScoring``) build the same record from the same code: the greedy cell's accuracy, reward and price, the
controller's counters and, at a stage's end, the winner-take-all measures.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

from nni_offpolicy.search.progressive import arch_key, sample_to_arch


class RecordSource(Protocol):
    """What the records read of a search (``search.loop.ProgressiveSearch`` and the table source's subclass)."""

    settings: Any
    family: Any
    rewards: Any
    tracker: Any
    learner: Any
    replicas: Any
    total_epochs: int

    def greedy_sample(self, run: Any) -> dict[str, Any]: ...

    def evaluate(self, run: Any, sample: dict | None, batches: int | None = None) -> float: ...


def global_epoch(settings: Any, stage: int, epoch: int) -> int:
    """The epoch's index over the whole search (0-based), what TensorBoard and the data order count by."""
    return sum(settings.epochs[:stage]) + epoch


def epoch_record(search: RecordSource, run: Any, epoch: int, greedy: dict[str, Any], greedy_acc: float,
                 seconds: float, rewards: list[float], **measured: Any) -> dict[str, Any]:
    """One epoch's record: where it is, the greedy cell's accuracy (%), reward and price, ``measured`` (what only
    one reward source measures: training loss and accuracy, the supernet's accuracy, the learning rate) and the
    mean and best of the epoch's controller rewards, if it had controller steps."""
    s, stage = search.settings, run.stage
    metrics = search.rewards.metrics(sample_to_arch(search.family, greedy, s.nodes),
                                     arch_key(search.family, greedy, s.nodes))
    record = {"stage": stage + 1, "epoch": epoch + 1, "global_epoch": global_epoch(s, stage, epoch) + 1,
              "total_epochs": search.total_epochs, **measured, "greedy_acc": greedy_acc,
              "greedy_reward": search.rewards.reward(greedy_acc / 100.0, metrics, stage),
              "greedy_params_m": metrics["params_m"], "greedy_flops_m": metrics["flops_m"], "seconds": seconds,
              "controller_updates": search.tracker.updates}
    if rewards:
        record.update(reward_mean=sum(rewards) / len(rewards), reward_max=max(rewards))
    return record


def winner_take_all(search: RecordSource, run: Any) -> dict[str, float]:
    """Share of op decisions whose argmax never moved after warm-up, and the share of the most frequent
    argmax op across edges: both near 1 mean one op took every edge early (the Matthew effect)."""
    ops = search.learner.picked_ops(run.controller, lambda: search.greedy_sample(run))
    return {"argmax_frozen_share": search.tracker.frozen_share([d.label for d in run.controller.decisions
                                                                if d.kind == "op"]),
            "top_op_share": max(ops.count(o) for o in set(ops)) / len(ops)}


def stage_record(search: RecordSource, run: Any) -> dict[str, Any]:
    """The stage's record; its evaluations' seconds too, so a benchmark can account for them. The supernet's
    own accuracy on the whole validation split (mixed: the weighted sum; path: the greedy path) shows whether
    a faster way of computing still trains as well."""
    search.replicas.check_in_step(run.supernet, f"at the end of stage {run.stage + 1}")
    started = time.time()
    greedy = search.greedy_sample(run)
    greedy_acc = search.evaluate(run, greedy)
    supernet_acc = search.evaluate(run, None) if search.settings.weight_mode == "mixed" else greedy_acc
    return {"stage": run.stage + 1, "layers": search.settings.layers[run.stage], "edge_ops": run.edge_ops,
            "probabilities": run.controller.probabilities(), "greedy_sample": greedy,
            "greedy_valid_acc": greedy_acc, "supernet_valid_acc": supernet_acc, **winner_take_all(search, run),
            "eval_seconds": time.time() - started}
