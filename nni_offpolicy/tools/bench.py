"""The benchmark: how long the whole P-DARTS protocol (or another preset's) would take here, measured with short
real searches at the protocol's real shapes, against the official P-DARTS code's figures on one H100.

Why short real searches and not a timing loop of its own: what is timed must be what a search runs (same loop,
same loader, same controller, same evaluations), so the bench calls ``run_search`` with the protocol's settings
and only two changes: ``max_steps_per_epoch`` and BENCH_EPOCHS epochs per stage. Per stage, epoch 1 is a cold
weights-only epoch (stage build, compilation, allocator and cuDNN warm-up), epoch 2 a warm one; epoch 3 the first
epoch with controller updates, epoch 4 a warm one. The protocol is then extrapolated from the warm epochs:

    weights-only epoch = cycle of epoch 2 + (real steps - measured steps) x loop seconds per step of epoch 2
    controller epoch   = cycle of epoch 4 + (real steps - measured steps) x loop seconds per step of epoch 4
    stage              = warm-up epochs x weights-only epoch + other epochs x controller epoch
                         + stage-end evaluation + fixed (what epochs 1 and 3 took beyond 2 and 4)
    full protocol      = sum of stages + finish (final evaluations and genotype.json)

Each run's measurement stays in its folder (``bench_run.json``): a re-run with the same ``--output`` and settings
on the same device reuses it (``--fresh`` measures again), so the bench can be run in pieces where one command's
time is limited; the JSON then holds every run asked for.

A *cycle* is the wall time from one epoch's end to the next's (callback to callback): the step loop, the epoch's
monitoring evaluation, TensorBoard logging and the checkpoint, everything a real epoch pays. Measured at the real
number of steps and epochs, the extrapolation is exactly the run's wall time (tests/test_bench.py checks it).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from search_spaces.presets import initial_edge_ops

from nni_offpolicy.search.accel import resolve_precision
from nni_offpolicy.files.atomic import atomic_write_text, check_writable_file, check_writable_folder
from nni_offpolicy.data.datasets import load_dataset, local_cifar10_archive
from nni_offpolicy.data.split import search_split
from nni_offpolicy.search.devices import resolve_device
from nni_offpolicy.errors import UserError
from nni_offpolicy.files.locking import output_lock
from nni_offpolicy.files.run_folder import FolderKind, check_run_folder, claim_run_folder
from nni_offpolicy.parsing import parse_choices
from nni_offpolicy.search.loop import run_search
from nni_offpolicy.settings import PRECISIONS, SEARCH_PRESETS, WEIGHT_MODES, SearchSettings, load_settings

BENCH_EPOCHS = 4  # per stage: cold + warm weights-only, first + warm with controller updates
BENCH_WARMUP = 2
# Set per run by the bench (flag to use instead).
RESERVED = {"weight_mode": "--weight-modes", "precision": "--precisions", "max_steps_per_epoch": "--steps",
            "dataset": "--dataset", "device": "--device", "batch_size": "--batch-size", "layers": "--layers"}
# The official P-DARTS code on one H100 (CIFAR-10 JPEG set, 25k/25k split, batch 96), from issue #5.
ANCHOR = {
    "source": "official P-DARTS code, one H100, CIFAR-10 JPEG, 25k/25k split, batch 96",
    "epoch_seconds": {"1/weights_only": 89.0, "1/controller": 162.0, "2/weights_only": 114.0},
    "full_protocol_h": 3.4,
    "stage1_peak_gb": 7.9,
}
# Issue #5's targets, for one H100 (the CPU figures are for relative comparison only).
TARGETS = {"full_fastest_min": 15.0, "full_mixed_min": 30.0, "stage1_peak_gb": 7.9, "stage1_acc_points": 1.0,
           "nb201_full_min": 10.0}
PRESET_TARGETS = {"pdarts": ("full_fastest_min", "full_mixed_min", "stage1_peak_gb", "stage1_acc_points"),
                  "nb201": ("nb201_full_min",)}
"""Which of issue #5's targets a preset's run is held to (only a run of the preset's own shapes is)."""
PHASES = ("weights_only", "controller")

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------- the plan
@dataclass
class BenchRun:
    weight_mode: str
    precision: str  # resolved: fp32 | bf16
    settings: SearchSettings
    dir: Path

    @property
    def name(self) -> str:
        return f"{self.weight_mode}/{self.precision}"


@dataclass
class BenchPlan:
    preset: str
    protocol: SearchSettings  # the protocol whose time is extrapolated (real epochs and warm-up)
    runs: list[BenchRun]
    steps: int
    output: Path
    json_path: Path | None  # None: stdout
    fast_precision: str  # what precision=auto resolves to on this device
    overrides: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False  # measure every run again, even one measured earlier in --output


def default_dataset(roots: Sequence[Path] | None = None) -> str:
    """The CIFAR-10 presets' data when no --dataset is given: the local JPEG archive (``data.local_cifar10_archive``)."""
    return f"imagefolder:{local_cifar10_archive(roots)}"


def plan_bench(preset: str = "pdarts", dataset: str | None = None, device: str = "auto", steps: int = 40,
               batch_size: int | None = None, layers: str | None = None,
               weight_modes: str | Sequence[str] = ("mixed", "path"), precisions: str | Sequence[str] | None = None,
               overrides: Mapping[str, Any] | None = None, output: str | Path | None = None,
               json_path: str | Path | None = None, verbose: bool = False, fresh: bool = False) -> BenchPlan:
    """Check every flag and every run's settings before any data is loaded; one ``UserError`` line otherwise."""
    if preset not in SEARCH_PRESETS:
        raise UserError(f"unknown preset {preset!r}; allowed: {', '.join(SEARCH_PRESETS)}")
    overrides = {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    for key, flag in RESERVED.items():
        if key in overrides:
            raise UserError(f"--set {key}: the bench sets it; use {flag}")
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"--steps must be a positive integer, got {steps!r}")
    modes = parse_choices(weight_modes, "--weight-modes", WEIGHT_MODES)
    base = dict(overrides)
    # CIFAR-10 presets (pdarts, nb201) default to the local JPEG archive; the others keep their own data (demo: digits)
    if dataset is None and (SEARCH_PRESETS[preset].get("dataset") or "").startswith("cifar"):
        dataset = default_dataset()
    if dataset is not None:
        base["dataset"] = dataset
    base["device"] = device
    if batch_size is not None:
        base["batch_size"] = batch_size
    if layers is not None:
        base["layers"] = layers
    protocol = load_settings(preset, base)
    if steps < protocol.rl_interval_steps:
        raise UserError(f"--steps {steps} is below rl_interval_steps ({protocol.rl_interval_steps}): a measured "
                        f"controller epoch would make no controller update; use --steps >= "
                        f"{protocol.rl_interval_steps}")
    torch_device = resolve_device(protocol.device)
    fast = resolve_precision("auto", torch_device)
    asked = parse_choices(precisions, "--precisions", PRECISIONS) if precisions is not None else ["auto", "fp32"]
    resolved = list(dict.fromkeys(resolve_precision(p, torch_device) for p in asked))
    output = Path(output or f"runs/bench-{preset}")
    runs = []
    for mode in modes:
        for precision in resolved:
            settings = load_settings(preset, {
                **base, "weight_mode": mode, "precision": precision, "epochs": BENCH_EPOCHS,
                "warmup_epochs": BENCH_WARMUP, "max_steps_per_epoch": steps, "progress": verbose})
            runs.append(BenchRun(mode, precision, settings, output / f"{mode}-{precision}"))
    json_out = None if json_path == "-" else Path(json_path or output / "bench.json")
    return BenchPlan(preset, protocol, runs, steps, output, json_out, fast, overrides, fresh)


# ---------------------------------------------------------------------------------------------------- arithmetic
def extrapolate(epochs: Sequence[Mapping[str, Any]], stage_eval_s: Sequence[float], started: float, ended: float,
                warmup_epochs: Sequence[int], total_epochs: Sequence[int], real_steps: int,
                bench_warmup: int = BENCH_WARMUP) -> dict[str, Any]:
    """The protocol's time from one short run (see the module docstring).

    ``epochs``: per measured epoch ``{stage, epoch, seconds (step loop), steps, t (wall clock at its end)}`` in
    order; ``stage_eval_s``: each stage's end-of-stage evaluation seconds; ``started``/``ended``: wall clock
    around the search. Returns per stage the phase figures and the parts that sum to its total, and the total.
    """
    stages = sorted({int(e["stage"]) for e in epochs})
    out_stages = []
    previous_end = started
    for s in stages:
        mine = [e for e in epochs if int(e["stage"]) == s]
        cycles = []
        for e in mine:
            cycles.append(e["t"] - previous_end)
            previous_end = e["t"]
        previous_end += stage_eval_s[s - 1]  # the stage-end evaluation runs after its last epoch
        by_phase = {"weights_only": [k for k, e in enumerate(mine) if e["epoch"] <= bench_warmup],
                    "controller": [k for k, e in enumerate(mine) if e["epoch"] > bench_warmup]}
        phases = {}
        for phase, ks in by_phase.items():
            if not ks:
                raise ValueError(f"stage {s} has no measured {phase} epoch")
            k = ks[-1]  # the warm one
            e = mine[k]
            per_step = e["seconds"] / max(e["steps"], 1)
            epoch_s = cycles[k] + (real_steps - e["steps"]) * per_step
            phases[phase] = {"measured_epoch": int(e["epoch"]), "measured_steps": int(e["steps"]),
                             "s_per_step": per_step, "loop_s_per_epoch": per_step * real_steps,
                             "s_per_epoch": epoch_s, "measured_cycle_s": cycles[k]}
        fixed = sum(cycles) - sum(len(ks) * cycles[ks[-1]] for ks in by_phase.values())
        total = total_epochs[s - 1]
        warm = min(warmup_epochs[s - 1], total)
        parts = {"weights_only_epochs_s": warm * phases["weights_only"]["s_per_epoch"],
                 "controller_epochs_s": (total - warm) * phases["controller"]["s_per_epoch"],
                 "stage_end_eval_s": stage_eval_s[s - 1], "fixed_s": fixed}
        if total == 0:  # an untrained last stage (the zero-cost pick's): measured, but the protocol spends nothing
            parts = dict.fromkeys(parts, 0.0)
        out_stages.append({"stage": s, "warmup_epochs": warm, "controller_epochs": total - warm, **phases,
                           "parts": parts, "seconds": sum(parts.values())})
    finish = ended - previous_end
    full = sum(st["seconds"] for st in out_stages) + finish
    return {"stages": out_stages, "finish_s": finish, "full_protocol_s": full, "measured_wall_s": ended - started}


# ---------------------------------------------------------------------------------------------------- running
RAW = "bench_run.json"  # in each run's folder: what was measured, so a re-run with the same --output reuses it
EPOCH_KEYS = ("stage", "epoch", "steps", "seconds", "t", "valid_acc", "peak_memory_gb", "controller_updates")


def _measure(run: BenchRun, device_name: str, log: Log | None = None, label: str = "") -> dict[str, Any]:
    """One short search: its epochs' end times (from the search's own per-epoch callback) and its stages' records.
    Kept in the run's folder, with what it was measured with, so a re-run can reuse it. ``log`` gets one line
    per epoch (``label``: which run of the bench), so a bench of hours shows where it is."""
    (run.dir / RAW).unlink(missing_ok=True)
    epochs: list[dict[str, Any]] = []
    epochs_per_stage = run.settings.epochs

    def on_epoch(record: dict) -> None:
        epochs.append({**{k: record.get(k) for k in EPOCH_KEYS}, "t": time.perf_counter()})
        if log is not None:
            log(f"{label}: stage {record['stage']} epoch {record['epoch']}/{epochs_per_stage[record['stage'] - 1]} "
                f"({time.perf_counter() - started:.0f} s so far)")

    started = time.perf_counter()
    # a measurement is redone on purpose (--fresh, or settings changed): its own folder's search goes
    doc = run_search(run.settings, run.dir, on_epoch=on_epoch, overwrite=True)
    ended = time.perf_counter()
    raw = {"settings": run.settings.to_dict(), "device": device_name, "started": started, "ended": ended,
           "epochs": epochs, "stage_eval_s": [st["eval_seconds"] for st in doc["stages"]],
           "supernet_valid_acc": [st["supernet_valid_acc"] for st in doc["stages"]]}
    atomic_write_text(json.dumps(raw) + "\n", run.dir / RAW)
    return raw


def _reusable(run: BenchRun, device_name: str) -> dict[str, Any] | None:
    """An earlier measurement of exactly this run on this device, or None."""
    try:
        raw = json.loads((run.dir / RAW).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if raw.get("settings") != run.settings.to_dict() or raw.get("device") != device_name:
        return None
    return raw


def summarise_run(run: BenchRun, raw: Mapping[str, Any], protocol: SearchSettings, real_steps: int
                  ) -> dict[str, Any]:
    """One run's figures: the extrapolation, images/s, peak memory and accuracy per stage, the schedule it ran."""
    epochs = raw["epochs"]
    timing = extrapolate(epochs, raw["stage_eval_s"], raw["started"], raw["ended"], protocol.warmup_epochs,
                         protocol.epochs, real_steps)
    initial_ops = _ops_per_stage(protocol)
    for st in timing["stages"]:
        s = st["stage"]
        for phase in PHASES:
            per_step = st[phase]["s_per_step"]
            st[phase]["images_per_s"] = run.settings.batch_size / per_step if per_step > 0 else None
        st["layers"], st["ops_per_edge"] = protocol.layers[s - 1], initial_ops[s - 1]
        peaks = [e["peak_memory_gb"] for e in epochs if e["stage"] == s and e["peak_memory_gb"] is not None]
        st["peak_memory_gb"] = max(peaks) if peaks else None
        st["supernet_valid_acc"] = raw["supernet_valid_acc"][s - 1]
    updates = epochs[-1]["controller_updates"] if epochs else 0
    return {
        "weight_mode": run.weight_mode, "precision": run.precision,
        "channels_last": run.settings.channels_last, "compile": run.settings.compile,
        "output_dir": str(run.dir), **timing, "full_protocol_h": timing["full_protocol_s"] / 3600,
        "stage1_valid_acc": raw["supernet_valid_acc"][0],
        "steps_run": sum(int(e["steps"]) for e in epochs), "controller_updates": updates,
        "reward_samples": updates * run.settings.samples_per_update,
        "epochs": [{k: e[k] for k in EPOCH_KEYS if k != "t"} for e in epochs],
    }


def _ops_per_stage(settings: SearchSettings) -> list[int]:
    edge_ops = initial_edge_ops(settings.space, settings.nodes)
    first = max(len(ops) for kind in edge_ops.values() for ops in kind.values())
    return [first] + list(settings.ops_kept[:-1])


def describe_device(settings: SearchSettings) -> str:
    d = resolve_device(settings.device)
    if d.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(d)})"
    threads = settings.threads or torch.get_num_threads()
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {threads} torch threads)"


def run_bench(plan: BenchPlan, log: Log | None = None) -> dict[str, Any]:
    """Every run of the plan, then the comparison; writes the JSON (atomically, only when all runs finished).
    The outputs are checked writable before the first search, and ``plan.output`` is locked for the bench."""
    check_writable_folder(plan.output)
    if plan.json_path is not None:
        check_writable_file(plan.json_path, "--json")
    check_run_folder(plan.output, BENCH_FOLDER)  # before the lock file: a refused folder is left as it was
    with output_lock(plan.output, "bench"):
        check_run_folder(plan.output, BENCH_FOLDER)
        return _run_bench(plan, log)


# what a bench writes at the top of its folder (files/run_folder.py): its JSON and one search per mode x precision
BENCH_FOLDER = FolderKind("bench", ("bench.json",), runs=tuple(f"{m}-{p}" for m in WEIGHT_MODES for p in PRECISIONS))


def _run_bench(plan: BenchPlan, log: Log | None = None) -> dict[str, Any]:
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    p = plan.protocol
    data = load_dataset(p.dataset, "train", data_dir=p.data_dir, download=p.download)  # decoded/cached once here
    train, _ = search_split(data, p.train_portion, p.split_seed)
    real_steps = len(train) // p.batch_size  # the search's loader drops the last partial batch
    if real_steps < 1:
        raise UserError(f"batch size {p.batch_size} exceeds the {len(train)} training images of {p.dataset}")
    claim_run_folder(plan.output, BENCH_FOLDER, clear=False)  # every check passed: the folder is the bench's
    device_name = describe_device(p)
    results = []
    for k, run in enumerate(plan.runs, start=1):
        raw = None if plan.fresh else _reusable(run, device_name)
        reused = raw is not None
        label = f"bench {k}/{len(plan.runs)} {run.name}"
        if not reused:
            log(f"{label}: measuring {len(run.settings.layers)} stages x {sum(run.settings.epochs)} epochs of "
                f"{min(plan.steps, real_steps)} steps -> {run.dir}")
        raw = raw or _measure(run, device_name, log, label)
        result = summarise_run(run, raw, p, real_steps)
        results.append(result)
        parts = ", ".join(f"stage {st['stage']} {st['weights_only']['s_per_epoch']:.1f}/"
                          f"{st['controller']['s_per_epoch']:.1f} s/epoch" for st in result["stages"])
        log(f"[{k}/{len(plan.runs)}] {run.name}: full protocol ~ {_duration(result['full_protocol_s'])} ({parts}; "
            f"weights-only/controller), stage-1 supernet valid acc {result['stage1_valid_acc']:.1f} %, "
            f"{'reused (measured earlier' if reused else 'measured'} in {result['measured_wall_s']:.0f} s"
            f"{')' if reused else ''} -> {run.dir}")
    for r in results:
        partner = next((o for o in results if o["weight_mode"] == r["weight_mode"] and o["precision"] == "fp32"),
                       None)
        r["stage1_valid_acc_delta_vs_fp32"] = (r["stage1_valid_acc"] - partner["stage1_valid_acc"]
                                               if partner is not None else None)
        r["fast_path"] = r["precision"] == plan.fast_precision
    anchor, why_not = anchor_for(plan.preset, p, len(train))
    comparable = plan.preset in PRESET_TARGETS and not protocol_differences(plan.preset, p, len(train))
    for r in results:
        r["speedup_vs_anchor"] = anchor["full_protocol_h"] * 3600 / r["full_protocol_s"] if anchor else None
    doc = {
        "version": 1, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device_name, "torch": torch.__version__, "preset": plan.preset,
        "dataset": p.dataset, "train_images": len(train), "batch_size": p.batch_size,
        "steps_measured": min(plan.steps, real_steps), "steps_per_epoch": real_steps,
        "protocol": {"layers": p.layers, "ops_per_edge": _ops_per_stage(p), "epochs": p.epochs,
                     "warmup_epochs": p.warmup_epochs, "channels": p.channels, "rl_interval_steps":
                         p.rl_interval_steps, "samples_per_update": p.samples_per_update},
        "bench_epochs": {"epochs_per_stage": BENCH_EPOCHS, "warmup_epochs": BENCH_WARMUP},
        "overrides": {k: str(v) for k, v in plan.overrides.items()},
        "runs": results, "anchor": anchor, "anchor_note": why_not,
        "targets": targets(plan.preset, results) if comparable else {},
    }
    text = json.dumps(doc, indent=2) + "\n"
    if plan.json_path is None:
        print(text)
    else:
        atomic_write_text(text, plan.json_path)
    return doc


def protocol_differences(preset: str, protocol: SearchSettings, train_images: int) -> list[str]:
    """How these shapes differ from the preset's own on CIFAR-10's 25k training half (empty: the real thing)."""
    ref = load_settings(preset)
    names = ("layers", "ops_kept", "channels", "batch_size", "epochs", "warmup_epochs")
    differ = [f"{name} {getattr(protocol, name)} (preset {getattr(ref, name)})" for name in names
              if getattr(protocol, name) != getattr(ref, name)]
    if train_images != 25000:
        differ.append(f"{train_images} training images (CIFAR-10's half: 25000)")
    return differ


def anchor_for(preset: str, protocol: SearchSettings, train_images: int) -> tuple[dict | None, str]:
    """The P-DARTS figures, only when this bench runs their shapes: anything else is not comparable."""
    if preset != "pdarts":
        return None, f"no anchor for the {preset} preset"
    differ = protocol_differences(preset, protocol, train_images)
    if differ:
        return None, "not the P-DARTS protocol's shapes: " + ", ".join(differ)
    return ANCHOR, ANCHOR["source"]


def targets(preset: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Issue #5's targets against these runs (they are for one H100: on a CPU they only show the gap)."""
    fast = [r for r in runs if r["fast_path"]]
    mixed = [r for r in fast if r["weight_mode"] == "mixed"]

    def entry(value: float | None, limit: float, smaller: bool = True) -> dict[str, Any]:
        met = None if value is None else (value <= limit if smaller else value >= limit)
        return {"value": value, "target": limit, "met": met}

    def fastest() -> float | None:
        minutes = [r["full_protocol_s"] / 60 for r in fast]
        return min(minutes) if minutes else None

    def acc_points() -> float | None:
        deltas = [abs(r["stage1_valid_acc_delta_vs_fp32"]) for r in fast if r["stage1_valid_acc_delta_vs_fp32"]
                  is not None and r["precision"] != "fp32"]
        return max(deltas) if deltas else None

    values: dict[str, Callable[[], float | None]] = {  # computed only for the preset's own targets
        "nb201_full_min": fastest,
        "full_fastest_min": fastest,
        "full_mixed_min": lambda: mixed[0]["full_protocol_s"] / 60 if mixed else None,
        "stage1_peak_gb": lambda: mixed[0]["stages"][0]["peak_memory_gb"] if mixed else None,
        "stage1_acc_points": acc_points,
    }
    return {name: entry(values[name](), TARGETS[name]) for name in PRESET_TARGETS[preset]}


# ---------------------------------------------------------------------------------------------------- the table
def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}{suffix}"


def format_table(doc: Mapping[str, Any]) -> str:
    """Per run, stage and phase: s/step, s/epoch, images/s, peak memory, the anchor and the speed-up; then the
    full protocol and the stage-1 accuracy per run."""
    anchor = doc.get("anchor")
    lines = [f"{doc['preset']} protocol on {doc['dataset']} - {doc['device']}, torch {doc['torch']}",
             f"batch {doc['batch_size']}, {doc['steps_per_epoch']} steps/epoch extrapolated from "
             f"{doc['steps_measured']} measured (epochs {doc['protocol']['epochs']}, warm-up "
             f"{doc['protocol']['warmup_epochs']})", ""]
    head = (f"{'run':<12} {'stage':>5} {'cells':>5} {'ops':>4}  {'phase':<12} {'s/step':>8} {'s/epoch':>8} "
            f"{'img/s':>8} {'peak GB':>8} {'anchor':>8} {'speed-up':>8}")
    lines += [head, "-" * len(head)]
    for r in doc["runs"]:
        name = f"{r['weight_mode']} {r['precision']}"
        for st in r["stages"]:
            for phase in PHASES:
                ph = st[phase]
                ref = anchor["epoch_seconds"].get(f"{st['stage']}/{phase}") if anchor else None
                speed = ref / ph["s_per_epoch"] if ref and ph["s_per_epoch"] > 0 else None
                lines.append(f"{name:<12} {st['stage']:>5} {st['layers']:>5} {st['ops_per_edge']:>4}  "
                             f"{phase.replace('_', '-'):<12} {ph['s_per_step']:>8.4f} {ph['s_per_epoch']:>8.1f} "
                             f"{_num(ph['images_per_s'], 0):>8} {_num(st['peak_memory_gb'], 2):>8} "
                             f"{_num(ref, 0):>8} {_num(speed, 1, 'x'):>8}")
    lines.append("")
    head = (f"{'run':<12} {'full protocol':>14} {'anchor':>8} {'speed-up':>8}  stage-1 supernet valid acc "
            f"(vs fp32)")
    lines += [head, "-" * len(head)]
    for r in doc["runs"]:
        ref = f"{anchor['full_protocol_h']:.1f} h" if anchor else "-"
        delta = r["stage1_valid_acc_delta_vs_fp32"]
        lines.append(f"{r['weight_mode'] + ' ' + r['precision']:<12} {_duration(r['full_protocol_s']):>14} "
                     f"{ref:>8} {_num(r['speedup_vs_anchor'], 1, 'x'):>8}  {r['stage1_valid_acc']:.2f} %"
                     + (f" ({delta:+.2f})" if delta is not None and r["precision"] != "fp32" else ""))
    if anchor:
        lines.append(f"anchor: {anchor['source']}; stage-1 peak {anchor['stage1_peak_gb']} GB")
    checks = [f"{k} {_num(v['value'], 2)} (target {v['target']}, {'met' if v['met'] else 'NOT met'})"
              for k, v in doc["targets"].items() if v["value"] is not None]
    if not doc["device"].startswith("cuda"):
        lines.append("CPU figures: for relative comparison only (issue #5's targets are for one H100)")
    elif checks:
        lines.append("targets (one H100): " + "; ".join(checks))
    return "\n".join(lines)
