"""The search settings' rules: every way a ``SearchSettings`` can be inconsistent, said in one line before any data
is loaded or any training starts (``SearchSettings.validate``).

Apart from the dataclass so that what a setting *is* (its field, default and help) reads in one place and what it
may be in another; below ``settings`` (it never imports it): the allowed names live here and settings re-exports
them. Learner and pick names are checked against their registries (``search.registry``), which import no torch.
"""
from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

from nni_offpolicy.errors import UserError
from nni_offpolicy.search.registry import FINAL_PICKS, LEARNERS  # names only: no torch, no learner imported
from nni_offpolicy.search.zero_cost_names import ZERO_COST_SCORES, components  # names only: no torch

if TYPE_CHECKING:
    from search_spaces.families import Family

    from nni_offpolicy.settings import SearchSettings

BEHAVIOURS = ("uniform", "egreedy", "multinomial", "on-policy")
WEIGHT_MODES = ("mixed", "path")
IMPORTANCE = ("per-decision", "trajectory")
PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 autocast on CUDA, fp32 elsewhere
CHANNELS_LAST = ("auto", "on", "off")  # auto: on for CUDA
COMPILE_MODES = ("off", "ops")  # ops: torch.compile each candidate op module once per stage
REWARD_SOURCES = ("supernet", "table")  # accuracy through the shared weights | looked up in a benchmark table
STAGE_LISTS = ("layers", "ops_kept", "epochs", "warmup_epochs", "skip_dropout", "size_target", "size_exponent",
               "flops_target", "flops_exponent", "metric_target", "metric_exponent", "zero_cost_target",
               "zero_cost_exponent", "size_abs_penalty")

# Sizes past any network this runs (P-DARTS' largest: 20 cells of 36 channels; a supernet of 17): a typo like
# layers: [3, 3, 1000000] is one line at validation, not a MemoryError when stage 3 is built.
SIZE_LIMITS = {"layers": 200, "eval_layers": 200, "zero_cost_layers": 200, "channels": 2048, "eval_channels": 2048,
               "zero_cost_channels": 2048}


def thread_limit() -> int:
    """The most torch threads a run may ask for: 4 per CPU core (at least 64, at most 1024)."""
    import os

    return min(1024, max(64, 4 * (os.cpu_count() or 1)))


def last_stage_trained(epochs: list[int]) -> list[int]:
    """``epochs`` with an untrained last stage (0, the zero-cost pick's) trained as long as the stage before; any
    other list as it is. What a pick that needs the last stage trained runs on such a preset."""
    if len(epochs) > 1 and epochs[-1] == 0:
        return [*epochs[:-1], epochs[-2]]
    return epochs


def check_settings(settings: SearchSettings) -> None:
    """Every inconsistency in one clear line, before any data is loaded or any training starts."""
    from search_spaces.presets import SPACE_PRESETS, initial_edge_ops

    if settings.space not in SPACE_PRESETS:
        raise UserError(f"unknown space {settings.space!r}; allowed: {', '.join(SPACE_PRESETS)}")
    _check_numbers(settings)
    n = settings.stages
    if n < 1:
        raise UserError("layers: need at least one stage")
    for name in STAGE_LISTS:
        value = getattr(settings, name)
        if len(value) != n:
            raise UserError(f"{name}: has {len(value)} entries but layers has {n} stages; give one per stage "
                            f"(or a single value for all)")
    if settings.controller not in LEARNERS:
        raise UserError(f"unknown controller {settings.controller!r}; allowed: {', '.join(LEARNERS)}")
    if settings.behaviour not in BEHAVIOURS:
        raise UserError(f"unknown behaviour policy {settings.behaviour!r}; allowed: {', '.join(BEHAVIOURS)}")
    if settings.weight_mode not in WEIGHT_MODES:
        raise UserError(f"unknown weight mode {settings.weight_mode!r}; allowed: {', '.join(WEIGHT_MODES)}")
    if settings.importance not in IMPORTANCE:
        raise UserError(f"unknown importance weighting {settings.importance!r}; allowed: {', '.join(IMPORTANCE)}")
    if not 0.0 <= settings.epsilon <= 1.0:
        raise UserError(f"epsilon must be in [0, 1], got {settings.epsilon}")
    positive = {"temperature": settings.temperature, "controller_lr": settings.controller_lr, "lr": settings.lr,
                "truncation": settings.truncation, "batch_size": settings.batch_size, "channels": settings.channels,
                "rl_interval_steps": settings.rl_interval_steps, "samples_per_update": settings.samples_per_update,
                "eval_layers": settings.eval_layers, "eval_channels": settings.eval_channels,
                "recent_window": settings.recent_window, "devices": settings.devices}
    for name, value in positive.items():
        if not value > 0:
            raise UserError(f"{name} must be > 0, got {value}")
    if settings.image_size is not None and not settings.image_size >= 1:
        raise UserError(f"image_size must be >= 1 pixel (or none: the images' own size), got {settings.image_size}")
    for name in ("reward_batch_size", "eval_images"):
        value = getattr(settings, name)
        if value is not None and not value >= 1:
            raise UserError(f"{name} must be >= 1 (or none: {'batch_size' if name == 'reward_batch_size' else 'the whole split'}), got {value}")
    if settings.reward_batch % settings.devices:
        raise UserError(f"reward_batch_size {settings.reward_batch} does not split evenly over {settings.devices} "
                        f"devices; use a multiple of {settings.devices}")
    for name in ("zero_cost", "pick_zero_cost"):
        if getattr(settings, name) is not None:
            try:
                components(getattr(settings, name))  # a registered score or ens:a+b[+c...]
            except ValueError as exc:  # its message names zero_cost: say which setting it was
                raise UserError(str(exc).replace("zero_cost", name, 1)) from None
    if settings.pick_zero_cost is not None:
        if settings.final_pick != "zero-cost":
            raise UserError(f"pick_zero_cost is the score final_pick=zero-cost ranks the last space by, and "
                            f"final_pick is {settings.final_pick}: set final_pick=zero-cost or pick_zero_cost=none")
    for name in ("zero_cost_layers", "zero_cost_channels", "zero_cost_images"):
        if getattr(settings, name) is not None and not getattr(settings, name) >= 1:
            raise UserError(f"{name} must be >= 1, got {getattr(settings, name)}")
    if settings.zero_cost is not None and (settings.zero_cost_images or min(64, settings.reward_batch)) < 2:
        raise UserError(f"zero_cost_images must be >= 2 (it is {settings.zero_cost_images or settings.reward_batch}): "
                        f"NASWOT compares the images' activation codes with each other, and one image gives "
                        f"every cell the same score")
    if settings.zero_cost is not None and settings.zero_cost_images is not None and settings.zero_cost_images > settings.reward_batch:
        raise UserError(f"zero_cost_images ({settings.zero_cost_images}) exceeds the reward batch "
                        f"({settings.reward_batch}) it is taken from")
    if settings.final_pick not in FINAL_PICKS:
        raise UserError(f"unknown final_pick {settings.final_pick!r}; allowed: {', '.join(FINAL_PICKS)}")
    if settings.final_pick == "zero-cost" and settings.reward_source == "table":  # zero_cost=naswot is refused there too
        raise UserError("final_pick=zero-cost scores the last space's cells on images, and reward_source=table "
                        "loads none: choose final_pick=policy or best-sampled")
    if settings.final_pick == "zero-cost" and settings.zero_cost is None:
        raise UserError("final_pick=zero-cost ranks the last stage's cells by their zero-cost score, and "
                        f"zero_cost is none: set zero_cost={ZERO_COST_SCORES[0]} (allowed: "
                        f"{', '.join(ZERO_COST_SCORES)} or an ens: of them) or choose another final_pick")
    if settings.final_candidates < 1:
        raise UserError(f"final_candidates must be >= 1, got {settings.final_candidates}")
    if settings.size_budget is not None and not settings.size_budget > 0:
        raise UserError(f"size_budget must be > 0 M params (or none: no budget), got {settings.size_budget}")
    if not 1 <= settings.size_budget_from_stage <= settings.stages:
        raise UserError(f"size_budget_from_stage must be a stage, 1 to {settings.stages}, got "
                        f"{settings.size_budget_from_stage}")
    for s, value in enumerate(settings.size_abs_penalty, start=1):
        if value < 0:
            raise UserError(f"size_abs_penalty must be >= 0 (stage {s} has {value}); it is subtracted")
    for name in ("size_target", "flops_target", "metric_target", "zero_cost_target"):
        for s, value in enumerate(getattr(settings, name), start=1):
            if not value > 0:
                raise UserError(f"{name} must be > 0 (stage {s} has {value})")
    if not 0.0 < settings.train_portion < 1.0:
        raise UserError(f"train_portion must be in (0, 1), got {settings.train_portion}")
    if not 0.0 <= settings.baseline_decay < 1.0:
        raise UserError(f"baseline_decay must be in [0, 1), got {settings.baseline_decay}")
    if settings.replay_samples > settings.replay_size:
        raise UserError(f"replay_samples ({settings.replay_samples}) exceeds replay_size ({settings.replay_size})")
    untrained_last = n > 1 and settings.epochs[-1] == 0  # the pick scores its space whole (finish_untrained)
    for s in range(n):
        if untrained_last and s == n - 1:
            if settings.final_pick == "zero-cost":
                continue
            trained = ",".join(str(e) for e in last_stage_trained(settings.epochs))
            raise UserError(f"epochs: the last stage has 0 (not trained), which only final_pick=zero-cost "
                            f"allows (it scores that stage's space without training), and final_pick is "
                            f"{settings.final_pick}: train it (e.g. epochs={trained}) or set final_pick=zero-cost")
        if settings.epochs[s] < 1:
            raise UserError(f"epochs must be >= 1 (stage {s + 1} has {settings.epochs[s]}); only the last stage "
                            f"may have 0 (not trained, with final_pick=zero-cost)")
        if not 0 <= settings.warmup_epochs[s] <= settings.epochs[s]:
            raise UserError(f"warmup_epochs must be in [0, epochs] (stage {s + 1}: {settings.warmup_epochs[s]} "
                            f"of {settings.epochs[s]})")
        if not 0.0 <= settings.skip_dropout[s] < 1.0:
            raise UserError(f"skip_dropout must be in [0, 1) (stage {s + 1} has {settings.skip_dropout[s]})")
    family = settings.family
    min_layers = family.min_layers
    if any(layer < min_layers for layer in settings.layers):
        raise UserError(f"layers must be >= {min_layers} for the {settings.space} space, got {settings.layers}")
    edge_ops = initial_edge_ops(settings.space, settings.nodes)
    available = min(len(ops) for kind in edge_ops.values() for ops in kind.values())
    for s, keep in enumerate(settings.ops_kept, start=1):
        if keep < 1 or keep > available:
            raise UserError(f"ops_kept: stage {s} keeps {keep} ops per edge but its edges have {available}; "
                            f"allowed 1..{available}")
        if keep > available:
            break
        available = keep
    if settings.ops_kept[-1] != 1:
        raise UserError(f"ops_kept: the last stage must keep 1 op per edge (the final architecture), "
                        f"got {settings.ops_kept[-1]}")
    if settings.metric is not None and ":" not in settings.metric:
        raise UserError(f"metric must be 'module:function', got {settings.metric!r}")
    if settings.device not in ("auto", "cpu") and not settings.device.startswith("cuda"):
        raise UserError(f"device must be auto, cpu or cuda[:N], got {settings.device!r}")
    for name, allowed in (("precision", PRECISIONS), ("channels_last", CHANNELS_LAST),
                          ("compile", COMPILE_MODES)):
        if getattr(settings, name) not in allowed:
            raise UserError(f"{name} must be one of {', '.join(allowed)}, got {getattr(settings, name)!r}")
    _check_reward_source(settings, family)

def _check_numbers(settings: SearchSettings) -> None:
    """Non-finite numbers, seeds torch cannot take and counts below their minimum: a NaN learning rate or
    a temperature of 1e-300 would otherwise train for a while and then fail somewhere unrelated."""
    from nni_offpolicy.files.checkpoint import check_seed

    for f in fields(settings):
        value = getattr(settings, f.name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"{f.name} must be a finite number, got {item}")
    for name in ("seed", "split_seed"):
        check_seed(getattr(settings, name), name)
    if not 1e-3 <= settings.temperature <= 1e3:
        raise UserError(f"temperature must be in [0.001, 1000], got {settings.temperature}")
    if not 0.0 <= settings.momentum < 1.0:
        raise UserError(f"momentum must be in [0, 1), got {settings.momentum}")
    for name in ("weight_decay", "lr_min", "entropy_weight"):
        if getattr(settings, name) < 0:
            raise UserError(f"{name} must be >= 0, got {getattr(settings, name)}")
    if not settings.grad_clip > 0:
        raise UserError(f"grad_clip must be > 0, got {settings.grad_clip}")
    if not 1 <= settings.nodes <= 8:
        raise UserError(f"nodes must be in 1..8 (intermediate nodes per cell), got {settings.nodes}")
    if settings.max_steps_per_epoch is not None and settings.max_steps_per_epoch < 1:
        raise UserError(f"max_steps_per_epoch must be >= 1 (or none: every batch), got {settings.max_steps_per_epoch}")
    for name in ("replay_size", "replay_samples", "threads", "max_skip_connect"):
        if getattr(settings, name) < 0:
            raise UserError(f"{name} must be >= 0, got {getattr(settings, name)}")
    if settings.threads > thread_limit():  # threads=3000 aborted in libgomp
        raise UserError(f"threads must be in 0..{thread_limit()} (0: torch's default; at most 4 per CPU core "
                        f"here), got {settings.threads}")
    for name, limit in SIZE_LIMITS.items():  # layers: [3, 3, 1000000] was a MemoryError at stage 3
        for value in getattr(settings, name) if isinstance(getattr(settings, name), list) else [getattr(settings, name)]:
            if value is not None and value > limit:
                raise UserError(f"{name} must be at most {limit}, got {value}")

def _check_reward_source(settings: SearchSettings, family: Family) -> None:
    """The table reward source is read here, so a missing file or column stops before anything is written."""
    from nni_offpolicy.search import learners  # noqa: F401 (fills LEARNERS' classes: learns_from_rewards)

    if settings.reward_source not in REWARD_SOURCES:
        raise UserError(f"unknown reward_source {settings.reward_source!r}; allowed: {', '.join(REWARD_SOURCES)}")
    if settings.reward_source == "supernet":
        if settings.reward_table is not None:
            raise UserError("reward_table is only read with reward_source=table; set both, or neither")
        return
    if not family.tables:
        raise UserError(f"reward_source=table needs the nb201 space (benchmark tables are NAS-Bench-201), "
                        f"got space {settings.space}")
    if not LEARNERS[settings.controller].learns_from_rewards:
        usable = " or ".join(name for name, learner in LEARNERS.items() if learner.learns_from_rewards)
        raise UserError(f"reward_source=table has no gradient for controller={settings.controller}: use {usable}")
    if settings.devices != 1:
        raise UserError(f"reward_source=table trains no network, so devices must be 1, got {settings.devices}")
    if settings.zero_cost is not None:
        raise UserError(f"reward_source=table loads no images, so zero_cost={settings.zero_cost} has nothing to "
                        f"score: set zero_cost=none")
    if not settings.reward_table:
        raise UserError("reward_source=table needs reward_table=TABLE.csv:COLUMN")
    from nni_offpolicy.data.tables import open_table, reward_scale

    table, column = open_table(settings.reward_table)
    reward_scale(table, table.single_column(column))
