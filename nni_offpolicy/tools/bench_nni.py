"""``nni-offpolicy bench --against nni``: NNI 3.0's own one-shot strategies and ours, side by side, in one process,
on the same data split and shapes, alternating A B A B so a loaded or throttling machine hurts both sides alike.

Why a separate, thin module: every NNI specific of the comparison lives here (the hub DARTS space, the
``Classification`` evaluator, ``NasExperiment`` and the strategies ``DARTS`` / ``RandomOneShot``), so when NNI
(archived, never fixed again) or Lightning breaks, this is the one place to look. Our side is not a timing loop
of its own: it is ``run_search`` (the very loop a search runs) at one stage, two epochs of ``steps`` steps, and
the figure is the second (warm) epoch's loop seconds per step. NNI's side is a real ``NasExperiment.run()``
(sequential engine: no manager, no web UI) with ``limit_train_batches = warm_skip + steps`` and a Lightning
callback that stamps every ``on_train_batch_end``; its figure is the mean of the deltas after the first
``warm_skip`` steps.

Sides (what each runs; the printed table and the JSON say it too):

- ``nni-darts``: NNI ``strategy.DARTS()`` (first order): per batch one weight step on ``batch['train']`` and one
  alpha step on ``batch['val']`` (Lightning CombinedLoader of our train and valid halves), on
  ``nni.nas.hub.pytorch.DARTS(width=C, num_cells=L, dataset='cifar')``.
- ``nni-random``: NNI ``strategy.RandomOneShot()`` (SPOS-like: one uniformly sampled path per weight step).
- ``ours-darts``: our supernet, mixed mode, ``controller=darts``: one weight step and one first-order alpha step
  per batch (``rl_interval_steps=1``).
- ``ours-mixed`` / ``ours-path``: the off-policy REINFORCE search, mixed and path weight modes, a controller
  update every ``min(10, steps)`` steps.

Pairs (the ratio is NNI's s/step over ours: above 1, ours is faster): ours-darts, ours-mixed and ours-path
against nni-darts; ours-path against nni-random.

Same on both sides: cells, channels, batch size, the images (our ``search_split`` of the dataset; NNI gets the
first images of each half, normalised with the set's mean/std, no augmentation: ours crops/flips on device),
fp32 unless ``--precisions`` says otherwise, SGD lr 0.025 / weight decay 3e-4 for the weights. Different by
construction: the hub space's node is two (InputChoice(1), LayerChoice) pairs over NNI's op set, ours one
LayerChoice per edge (8 P-DARTS ops) and an InputChoice(2) per node. One-channel sets (digits) are repeated to
three channels for the hub space, whose stem is fixed to RGB.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` after a reset per side; on CPU the process's resident
set sampled every 20 ms while the side runs, after ``gc.collect()`` and glibc's ``malloc_trim(0)`` (the
process-lifetime ``ru_maxrss`` could not tell sides apart, and without the trim freed heap stays resident and a
side inherits the previous side's peak). The RSS at each side's start is kept too (``start_memory_gb``).
"""
from __future__ import annotations

import datetime
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nni_offpolicy.files.atomic import atomic_write_text
from nni_offpolicy.errors import UserError

SIDES = ("nni-darts", "ours-darts", "ours-mixed", "nni-random", "ours-path")  # the order of one round
PAIRS = (("ours-darts", "nni-darts"), ("ours-mixed", "nni-darts"), ("ours-path", "nni-darts"),
         ("ours-path", "nni-random"))
DESCRIBE = {
    "nni-darts": "NNI 3.0 strategy.DARTS() (first order) via NasExperiment on hub DARTS space: "
                 "1 weight + 1 alpha step per batch",
    "nni-random": "NNI 3.0 strategy.RandomOneShot() via NasExperiment on hub DARTS space: 1 sampled path per step",
    "ours-darts": "ours, run_search, weight_mode=mixed controller=darts: 1 weight + 1 alpha step per batch",
    "ours-mixed": "ours, run_search, weight_mode=mixed controller=reinforce (off-policy)",
    "ours-path": "ours, run_search, weight_mode=path controller=reinforce (off-policy)",
}
OURS = {"ours-darts": dict(weight_mode="mixed", controller="darts"),
        "ours-mixed": dict(weight_mode="mixed", controller="reinforce"),
        "ours-path": dict(weight_mode="path", controller="reinforce")}
LR, WEIGHT_DECAY = 0.025, 3e-4
Log = Callable[[str], None]


@dataclass
class NniPlan:
    dataset: str
    device: str  # resolved torch device string
    layers: int
    channels: int
    batch_size: int
    steps: int
    warm_skip: int
    rounds: int
    sides: list[str]
    precision: str
    output: Path
    json_path: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False


def plan_nni(dataset: str | None, device: str, steps: int | None, batch_size: int | None, layers: str | None,
             rounds: int, warm_skip: int, sides: str | None, precisions: str | None,
             overrides: Mapping[str, Any], output: str | None, json_path: str | None, verbose: bool) -> NniPlan:
    """Check every flag before anything is loaded; one ``UserError`` line otherwise."""
    from nni_offpolicy.tools.bench import default_dataset
    from nni_offpolicy.search.devices import resolve_device
    from nni_offpolicy.parsing import parse_choices

    overrides = {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    for key in overrides:
        if key not in ("channels", "threads"):
            raise UserError(f"--set {key}: --against nni takes only --set channels=C or threads=N "
                            f"(both sides must run the same thing)")
    try:
        channels = int(overrides.get("channels", 16))
        threads = int(overrides.get("threads", 0))
    except (TypeError, ValueError):
        raise UserError(f"--set channels/threads must be integers, got {overrides}") from None
    if channels < 1 or threads < 0:
        raise UserError(f"--set channels must be >= 1 and threads >= 0, got {channels}/{threads}")
    if layers is None:
        cells = 8
    else:
        try:
            cells = int(str(layers).strip())
        except ValueError:
            raise UserError(f"--layers with --against nni is one cell count (e.g. 8), got {layers!r}") from None
    if cells < 3:
        raise UserError(f"--layers must be >= 3 cells with --against nni (two reduction cells), got {cells}")
    batch = 64 if batch_size is None else batch_size
    if batch < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch}")
    if not isinstance(rounds, int) or rounds < 1:
        raise UserError(f"--rounds must be a positive integer, got {rounds!r}")
    if not isinstance(warm_skip, int) or warm_skip < 0:
        raise UserError(f"--warm-skip must be >= 0, got {warm_skip!r}")
    torch_device = resolve_device(device)
    if steps is None:
        steps = 20 if torch_device.type == "cuda" else 3
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"--steps must be a positive integer, got {steps!r}")
    chosen = parse_choices(sides, "--sides", SIDES) if sides is not None else list(SIDES)
    chosen = [s for s in SIDES if s in chosen]  # the round's order, whatever order they were given in
    precision = "fp32"
    if precisions is not None:
        asked = parse_choices(precisions, "--precisions", ("fp32", "bf16", "auto"))
        if len(asked) != 1:
            raise UserError("--precisions with --against nni takes one value (ours' side; NNI's runs fp32)")
        precision = asked[0]
    if dataset is None:
        dataset = default_dataset()
    out = Path(output or "runs/bench-nni")
    json_out = None if json_path == "-" else Path(json_path or out / "bench_nni.json")
    return NniPlan(dataset, str(torch_device), cells, channels, batch, steps, warm_skip, rounds, chosen, precision,
                   out, json_out, {"channels": channels, "threads": threads}, verbose)


# ---------------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of one side: CUDA allocator peak, or resident set sampled every 20 ms on CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = self.start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        import gc

        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            _release_freed_heap()
            proc = psutil.Process()
            self.peak = self.start = proc.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(0.02):
                    self.peak = max(self.peak, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()

    @property
    def gb(self) -> float:
        return self.peak / 1e9

    @property
    def start_gb(self) -> float:
        return self.start / 1e9


def _release_freed_heap() -> None:
    """glibc keeps freed heap pages resident: without a trim, a side would inherit the previous side's peak."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS figures then include what earlier sides left resident
        pass


# ---------------------------------------------------------------------------------------------------- NNI's side
def _nni_tensors(plan: NniPlan) -> tuple[Any, Any, Any, Any]:
    """The first images of our train and valid halves, as normalised float tensors (3 channels)."""
    import torch

    from nni_offpolicy.data.datasets import load_dataset
    from nni_offpolicy.data.split import search_split

    data = load_dataset(plan.dataset, "train")
    train, valid = search_split(data)
    need = (plan.warm_skip + plan.steps) * plan.batch_size
    if len(train) < need or len(valid) < need:
        fewer = "a smaller --warm-skip" if plan.warm_skip > plan.steps else "fewer --steps"  # whichever is the excess
        raise UserError(f"{plan.dataset}: {len(train)}/{len(valid)} images per half, the NNI side needs {need} "
                        f"({plan.warm_skip}+{plan.steps} steps of batch {plan.batch_size}); {fewer}")
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)

    def prep(part):
        x = (part.images[:need].float() / 255 - mean) / std
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        return x, part.labels[:need].clone()

    return (*prep(train), *prep(valid))


def run_nni_side(plan: NniPlan, side: str, tensors: tuple) -> dict[str, Any]:
    import nni
    import pytorch_lightning as pl
    import torch
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.hub.pytorch import DARTS as DartsSpace
    from nni.nas.strategy import DARTS, RandomOneShot
    from torch.utils.data import TensorDataset

    xt, yt, xv, yv = tensors
    stamps: list[float] = []

    class Timer(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            if plan.device.startswith("cuda"):
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    space = DartsSpace(width=plan.channels, num_cells=plan.layers, dataset="cifar")
    gpu = plan.device.startswith("cuda")
    evaluator = Classification(
        train_dataloaders=DataLoader(nni.trace(TensorDataset)(xt, yt), batch_size=plan.batch_size),
        val_dataloaders=DataLoader(nni.trace(TensorDataset)(xv, yv), batch_size=plan.batch_size),
        optimizer=torch.optim.SGD, learning_rate=LR, weight_decay=WEIGHT_DECAY,
        max_epochs=1, limit_train_batches=plan.warm_skip + plan.steps, limit_val_batches=0, num_classes=10,
        callbacks=[Timer()], accelerator="gpu" if gpu else "cpu", devices=1, enable_progress_bar=plan.verbose,
        logger=False, enable_checkpointing=False, enable_model_summary=False)
    strategy = DARTS() if side == "nni-darts" else RandomOneShot()
    started = time.perf_counter()
    with PeakMemory(plan.device) as mem:
        experiment = NasExperiment(space, evaluator, strategy)
        experiment.run()
    wall = time.perf_counter() - started
    experiment.stop()  # now, not at exit: NNI's exit-time stop logs to closed streams and writes under $HOME
    deltas = [b - a for a, b in zip(stamps, stamps[1:])]
    warm = deltas[max(plan.warm_skip - 1, 0):] if plan.warm_skip else [stamps[0] - started] + deltas
    if len(stamps) < plan.warm_skip + plan.steps or not warm:
        raise RuntimeError(f"{side}: NNI ran {len(stamps)} steps, expected {plan.warm_skip + plan.steps}")
    return {"steps_timed": len(warm), "s_per_step": statistics.fmean(warm), "peak_memory_gb": mem.gb,
            "start_memory_gb": mem.start_gb,
            "wall_s": wall, "steps_run": len(stamps)}


# ---------------------------------------------------------------------------------------------------- our side
def our_settings(plan: NniPlan, side: str):
    from nni_offpolicy.settings import STAGE_LISTS, load_settings

    ref = load_settings("pdarts")
    rl_interval = 1 if side == "ours-darts" else min(ref.rl_interval_steps, plan.steps)
    base: dict[str, Any] = {name: [getattr(ref, name)[0]] for name in STAGE_LISTS}
    base.update(OURS[side], dataset=plan.dataset, device=plan.device, batch_size=plan.batch_size,
                channels=plan.channels, layers=[plan.layers], ops_kept=[1], epochs=[2], warmup_epochs=[0],
                skip_dropout=[0.0], max_steps_per_epoch=plan.steps, rl_interval_steps=rl_interval,
                samples_per_update=1 if side == "ours-darts" else min(ref.samples_per_update, 4),
                reward_batch_size=plan.batch_size, eval_images=plan.batch_size, precision=plan.precision,
                lr=LR, weight_decay=WEIGHT_DECAY, threads=plan.overrides.get("threads", 0), progress=plan.verbose,
                eval_layers=plan.layers, eval_channels=plan.channels)
    return load_settings("pdarts", base)


def run_our_side(plan: NniPlan, side: str, folder: Path) -> dict[str, Any]:
    from nni_offpolicy.search.loop import run_search

    settings = our_settings(plan, side)
    epochs: list[dict] = []
    started = time.perf_counter()
    with PeakMemory(plan.device) as mem:
        run_search(settings, folder, on_epoch=lambda r: epochs.append(dict(r)), overwrite=True)
    wall = time.perf_counter() - started
    warm = epochs[-1]  # epoch 2: everything built, compiled and warmed up by epoch 1
    steps = int(warm["steps"])
    return {"steps_timed": steps, "s_per_step": float(warm["seconds"]) / max(steps, 1), "peak_memory_gb": mem.gb,
            "start_memory_gb": mem.start_gb,
            "wall_s": wall, "steps_run": sum(int(e["steps"]) for e in epochs),
            "rl_interval_steps": settings.rl_interval_steps, "samples_per_update": settings.samples_per_update,
            "precision": settings.precision, "channels_last": settings.channels_last, "output_dir": str(folder)}


# ---------------------------------------------------------------------------------------------------- the run
def run_nni_bench(plan: NniPlan, log: Log | None = None) -> dict[str, Any]:
    import torch

    from nni_offpolicy.files.atomic import check_writable_file, check_writable_folder
    from nni_offpolicy.files.run_folder import FolderKind, check_run_folder, claim_run_folder
    from nni_offpolicy.tools.bench import describe_device
    from nni_offpolicy.settings import load_settings

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    check_writable_folder(plan.output)
    if plan.json_path is not None:
        check_writable_file(plan.json_path, "--json")
    # a folder of its own (files/run_folder.py): its JSON and our sides' searches, never into someone else's
    kind = FolderKind("bench-nni", ("bench_nni.json",),
                      runs=tuple(f"{s}-r{r}" for s in SIDES for r in range(1, plan.rounds + 1)))
    check_run_folder(plan.output, kind)
    claim_run_folder(plan.output, kind, clear=False)
    if plan.overrides.get("threads"):
        torch.set_num_threads(int(plan.overrides["threads"]))
    tensors = _nni_tensors(plan) if any(s.startswith("nni-") for s in plan.sides) else None
    measured: dict[str, list[dict]] = {s: [] for s in plan.sides}
    for r in range(1, plan.rounds + 1):
        for side in plan.sides:
            if side.startswith("nni-"):
                m = run_nni_side(plan, side, tensors)
            else:
                m = run_our_side(plan, side, plan.output / f"{side}-r{r}")
            measured[side].append(m)
            log(f"[round {r}/{plan.rounds}] {side}: {m['s_per_step']:.4f} s/step over {m['steps_timed']} warm "
                f"steps, peak {m['peak_memory_gb']:.2f} GB, {m['wall_s']:.1f} s wall")
    sides = {}
    for side, ms in measured.items():
        s_step = statistics.median(m["s_per_step"] for m in ms)
        sides[side] = {"ran": DESCRIBE[side], "s_per_step": s_step, "images_per_s": plan.batch_size / s_step,
                       "peak_memory_gb": max(m["peak_memory_gb"] for m in ms),
                       "s_per_step_rounds": [m["s_per_step"] for m in ms], "rounds": ms}
    pairs = []
    for ours, theirs in PAIRS:
        if ours in sides and theirs in sides:
            a, b = sides[ours], sides[theirs]
            pairs.append({"ours": ours, "nni": theirs, "speedup": b["s_per_step"] / a["s_per_step"],
                          "memory_ratio": (a["peak_memory_gb"] / b["peak_memory_gb"]
                                           if b["peak_memory_gb"] > 0 else None),
                          "per_round_speedup": [y["s_per_step"] / x["s_per_step"]
                                                for x, y in zip(a["rounds"], b["rounds"])]})
    device_name = describe_device(load_settings("demo", {"device": plan.device, "threads": plan.overrides["threads"]}))
    doc = {"version": 1, "kind": "against-nni", "created": datetime.datetime.now().isoformat(timespec="seconds"),
           "device": device_name, "torch": torch.__version__, "nni": _version("nni"),
           "dataset": plan.dataset, "shape": {"cells": plan.layers, "channels": plan.channels,
                                              "batch_size": plan.batch_size},
           "steps": plan.steps, "warm_skip": plan.warm_skip, "rounds": plan.rounds,
           "order": "A B A B: " + " ".join(plan.sides) + f" x {plan.rounds}",
           "timing": "ours: loop s/step of epoch 2 of 2 (epoch 1 warms up); NNI: mean of on_train_batch_end "
                     f"deltas after {plan.warm_skip} step(s); per side the median over rounds",
           "memory": "torch.cuda.max_memory_allocated" if plan.device.startswith("cuda")
           else "process RSS sampled every 20 ms after gc + malloc_trim (includes the interpreter, the loaded "
                "dataset and what earlier sides left resident: see start_memory_gb per round)",
           "sides": sides, "pairs": pairs}
    if plan.json_path is None:
        print(json.dumps(doc, indent=2))
    else:
        atomic_write_text(json.dumps(doc, indent=2) + "\n", plan.json_path)
    return doc


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - a missing version is not worth failing a bench for
        return None


def format_nni_table(doc: Mapping[str, Any]) -> str:
    shape = doc["shape"]
    lines = [f"side by side with NNI {doc['nni']} on {doc['dataset']} - {doc['device']}, torch {doc['torch']}",
             f"{shape['cells']} cells, C={shape['channels']}, batch {shape['batch_size']}, {doc['steps']} timed "
             f"steps per side, {doc['rounds']} round(s) ({doc['order']})", f"timing: {doc['timing']}",
             f"memory: {doc['memory']}", ""]
    head = f"{'side':<11} {'s/step':>8} {'img/s':>8} {'peak GB':>8}  ran"
    lines += [head, "-" * 100]
    for name, s in doc["sides"].items():
        lines.append(f"{name:<11} {s['s_per_step']:>8.4f} {s['images_per_s']:>8.1f} {s['peak_memory_gb']:>8.2f}  "
                     f"{s['ran']}")
    lines.append("")
    head = f"{'ours':<11} {'vs':<11} {'speed-up':>9} {'mem ratio':>10}  per round"
    lines += [head, "-" * len(head)]
    for p in doc["pairs"]:
        mem = "-" if p["memory_ratio"] is None else f"{p['memory_ratio']:.2f}"
        lines.append(f"{p['ours']:<11} {p['nni']:<11} {p['speedup']:>8.2f}x {mem:>10}  "
                     + ", ".join(f"{x:.2f}x" for x in p["per_round_speedup"]))
    lines.append("speed-up = NNI s/step / ours s/step (above 1: ours faster); mem ratio = ours peak / NNI peak")
    return "\n".join(lines)
