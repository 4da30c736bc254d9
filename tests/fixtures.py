"""Tiny search settings shared by the test modules (``from fixtures import TINY, set_flags``): each is small enough
for seconds on 2 cores and big enough to run every phase its tests look at. Values are overrides of the demo
preset, written as a user would type them after ``--set``."""
from __future__ import annotations

from typing import Any, Mapping

# The plain method's reward and pick: no zero-cost term, the policy's own cell. The NB201 presets carry the NASWOT
# taper (a zero-cost score of every sampled cell, a best-of-sampled pick); tests of other mechanics start from this.
PLAIN = {"zero_cost": "none", "zero_cost_exponent": "0", "final_pick": "policy"}

# Three DARTS stages of 3 cells: warm-up, controller updates, shrinking and derivation all run.
TINY = {"layers": "3,3,3", "epochs": "2,2,2", "warmup_epochs": "1,1,1", "ops_kept": "4,2,1", "channels": 4,
        "batch_size": 128, "rl_interval_steps": 2, "samples_per_update": 4, "eval_layers": 5,
        "eval_channels": 8, "progress": False, "threads": 1}

# TINY split over data-parallel replicas: batches of 64 (32 a replica), 4 steps an epoch.
TINY_REPLICAS = {**TINY, "ops_kept": "3,2,1", "batch_size": 64, "max_steps_per_epoch": 4}

# TINY in mixed mode, with small batches and evaluations (a mixed step runs all 8 ops per edge); stage 2 has 4
# epochs, so a kill in stage 2 leaves epochs on both sides of it.
TINY_MIXED = {**TINY, "epochs": "2,4,2", "batch_size": 32, "max_steps_per_epoch": 3, "reward_batch_size": 16,
              "eval_images": 32, "weight_mode": "mixed"}

# Two stages of 3 cells, one warm-up epoch and one controlled epoch each, 4 steps per epoch, path-mode weights:
# every phase of every ablation variant runs (warm-up, controller/DARTS/random steps, random or pi shrinking,
# derivation) in about 4 s a run on one thread. Stage lists the demo preset gives 3 entries are set for 2 stages.
TINY_TWO_STAGES = {"layers": "3,3", "epochs": "2,2", "warmup_epochs": "1,1", "ops_kept": "2,1", "channels": 4,
                   "batch_size": 32, "train_portion": 0.8, "weight_mode": "path", "max_steps_per_epoch": 4,
                   "rl_interval_steps": 2, "samples_per_update": 4, "eval_layers": 3, "eval_channels": 4,
                   "threads": 1, "skip_dropout": 0, "size_target": 0.3, "size_exponent": -0.1,
                   "flops_target": 600, "flops_exponent": 0, "metric_target": 1, "metric_exponent": 0}

# Three NB201 stages of 1 cell: seconds, yet warm-up, controller updates and the per-epoch logging all run.
TINY_NB201 = {**PLAIN, "layers": "1,1,1", "epochs": "2,2,2", "warmup_epochs": "1,1,1", "ops_kept": "3,2,1", "channels": 4,
              "batch_size": 64, "max_steps_per_epoch": 4, "rl_interval_steps": 2, "samples_per_update": 4,
              "reward_batch_size": 32, "eval_images": 64, "eval_layers": 1, "eval_channels": 4}

# The demo and nb201 presets' three-entry stage lists, one value for every stage: what a test that gives a preset
# another number of stages must set besides layers, epochs, warmup_epochs and ops_kept.
ONE_VALUE_PER_STAGE = {"skip_dropout": "0", "size_target": "1", "size_exponent": "0", "flops_target": "1",
                       "flops_exponent": "0", "metric_target": "1", "metric_exponent": "0"}

# Three NB201 stages of 1 cell on the embedded digits, 128-image batches (the final pick's and budget's tests).
NB201_TINY = {**PLAIN, "dataset": "digits", "layers": "1,1,1", "ops_kept": "3,2,1", "epochs": "2,2,2",
              "warmup_epochs": "1,1,1", "channels": 4, "batch_size": 128, "rl_interval_steps": 2,
              "samples_per_update": 4, "eval_layers": 1, "eval_channels": 8, "progress": False, "threads": 1}

# Two DARTS stages as ProgressiveOffPolicy's keyword arguments (typed values, every stage list given).
TINY_STRATEGY = dict(layers=[3, 3], epochs=[2, 1], warmup_epochs=[1, 0], ops_kept=[2, 1], skip_dropout=[0.0, 0.0],
                     size_target=[1.0, 1.0], size_exponent=[0.0, 0.0], flops_target=[1.0, 1.0],
                     flops_exponent=[0.0, 0.0], metric_target=[1.0, 1.0], metric_exponent=[0.0, 0.0],
                     batch_size=128, rl_interval_steps=2, samples_per_update=4, eval_layers=5, eval_channels=8,
                     progress=False, threads=1)


def set_flags(overrides: Mapping[str, Any]) -> list[str]:
    """``--set key=value`` for each override, as the CLI takes them."""
    return [f for k, v in overrides.items() for f in ("--set", f"{k}={v}")]
