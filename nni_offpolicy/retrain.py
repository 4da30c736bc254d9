"""Retrain a searched architecture from scratch: the DARTS/P-DARTS evaluation protocol, resumable.

``run_retrain(settings, output_dir)`` trains the evaluation network of one architecture (``NetworkCIFAR`` for a
DARTS-family genotype, ``NB201EvalNetwork`` for a NAS-Bench-201 arch string) and writes into ``output_dir``:

- ``checkpoint.pt``   after every epoch, atomically (model, optimizer, scheduler, RNG states, history, settings);
- ``metrics.jsonl``   one JSON line per epoch (``epoch, epochs, train_loss, train_acc, valid_acc, lr, ...``);
- ``tensorboard/``    the same numbers as ``retrain/<name>`` scalars, step = epoch;
- ``result.json``     at the end (see ``run_retrain``).

Accuracies are percentages (0-100) everywhere. A run killed at any point and resumed with ``resume=True`` ends
with the same weights and accuracy as an uninterrupted one on CPU: the data order depends only on
``(seed, epoch)`` (``BatchLoader``) and the global torch RNG (drop-path masks) is saved and restored.

No NNI import here: a trial reports through ``on_epoch``.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from nni_offpolicy.files.atomic import atomic_append_line, atomic_write_text, check_writable_folder
from nni_offpolicy.files.checkpoint import atomic_save, load, rng_state, seed_everything, set_rng_state
from nni_offpolicy.search.devices import resolve_device
from nni_offpolicy.errors import UserError
from nni_offpolicy.console import bars_wanted
from nni_offpolicy.files.inputs import check_resume_inputs, run_inputs
from nni_offpolicy.files.locking import output_lock
from nni_offpolicy.retrain_settings import RetrainSettings, coerce_overrides  # noqa: F401 (also imported from here)
from nni_offpolicy.files.run_folder import (FolderKind, check_resume_flags, check_run_folder, claim_run_folder,
                                           refuse_existing_run)

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULT = "result.json"
TENSORBOARD = "tensorboard"
CHECKPOINT_FORMAT = "nni-offpolicy/retrain/1"
RETRAIN_FOLDER = FolderKind("retrain", (CHECKPOINT, METRICS, RESULT), (TENSORBOARD,),
                            {CHECKPOINT: "resumable", RESULT: "finished"})  # see files/run_folder.py

# Settings that may differ between a run and its resumption: where the data lives, which device trains, and
# how the architecture was named (the architecture itself is compared after loading).
RESUME_MAY_DIFFER = {"genotype", "index", "data_dir", "download", "device"}


def build_network(family: str, arch: Any, settings: RetrainSettings, in_channels: int, input_size: int,
                  num_classes: int) -> nn.Module:
    """The evaluation network (the family's one builder, which profiling uses too); ``forward`` returns
    ``(logits, aux_logits or None)``."""
    from search_spaces.families import get_family

    layers, channels = settings.shape(family)
    return get_family(family).build_eval_network(arch, layers, channels, num_classes, in_channels, input_size,
                                                 auxiliary=settings.auxiliary)


def count_params(model: nn.Module) -> int:
    """Parameters without the auxiliary head (what papers report)."""
    aux = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in aux.parameters()} if aux is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any) -> float:
    """Top-1 accuracy in percent over one pass of ``loader``."""
    model.eval()
    correct = total = 0
    for x, y in loader.epoch(0):
        logits, _ = model(x)
        correct += int((logits.argmax(1) == y).sum())
        total += y.numel()
    return 100.0 * correct / max(total, 1)


def retrain_differences(saved: Mapping[str, Any], current: RetrainSettings) -> list[str]:
    """Settings of ``current`` that differ from ``saved`` (a checkpoint's or result.json's record) other than
    ``RESUME_MAY_DIFFER``: what a retrain resume and an ablation grid's retrain both refuse."""
    now = asdict(current)
    return [k for k in now if k not in RESUME_MAY_DIFFER and saved.get(k) != now[k]]


class _Run:
    """One retrain: the state a checkpoint holds, and the steps of an epoch."""

    def __init__(self, settings: RetrainSettings, progress: bool):
        # search_spaces pulls in NNI (seconds): imported when a run starts, so the CLI parser stays light.
        from search_spaces.families import architecture_to_json, get_family, load_architecture

        from nni_offpolicy.data.batches import BatchLoader
        from nni_offpolicy.data.datasets import load_dataset
        from nni_offpolicy.data.split import search_split

        self.settings, self.progress = settings, progress
        # Everything that can fail on bad input happens here, before anything is written.
        self.family, self.arch = load_architecture(settings.genotype, settings.index)
        self.arch_json = architecture_to_json(self.family, self.arch)
        self.device = resolve_device(settings.device)
        self.inputs = run_inputs(dataset=settings.dataset)  # files.inputs: what a resume must find unchanged
        train = load_dataset(settings.dataset, "train", data_dir=settings.data_dir, download=settings.download,
                             image_size=settings.image_size)
        test = load_dataset(settings.dataset, "test", data_dir=settings.data_dir, download=settings.download,
                            image_size=settings.image_size)
        if settings.valid_portion > 0:
            train, valid = search_split(train, portion=1.0 - settings.valid_portion, seed=settings.seed)
            self.valid_split = "holdout"
        else:
            valid = test
            self.valid_split = "test"
        s = settings
        self.train_loader = BatchLoader(train, s.batch_size, device=self.device, train=True, cutout=s.cutout,
                                        seed=s.seed)
        self.valid_loader = BatchLoader(valid, s.batch_size, device=self.device, train=False, seed=s.seed)
        self.test_loader = BatchLoader(test, s.batch_size, device=self.device, train=False, seed=s.seed) \
            if valid is not test else self.valid_loader
        self.steps = len(self.train_loader) if s.max_steps is None else min(s.max_steps, len(self.train_loader))

        seed_everything(s.seed)
        self.model = build_network(self.family, self.arch, s, train.in_channels, train.input_size,
                                   train.num_classes).to(self.device)
        spec = get_family(self.family)
        self.uses_drop_path = spec.drop_path and s.drop_path > 0
        self.aux_weight = s.auxiliary_weight if spec.auxiliary and s.auxiliary else 0.0
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=s.lr, momentum=s.momentum,
                                         weight_decay=s.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=s.epochs, eta_min=0.0)
        self.criterion = nn.CrossEntropyLoss()
        self.epoch = 0                 # epochs completed
        self.best_valid_acc = 0.0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0             # training wall time of earlier sessions

    # ------------------------------------------------------------------ checkpoint

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "family": self.family, "architecture": self.arch_json,
            "settings": asdict(self.settings), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(), "best_valid_acc": self.best_valid_acc, "history": self.history,
            "wall_time_s": self.elapsed, "inputs": self.inputs,
        }

    def restore(self, path: Path) -> None:
        ckpt = load(path)  # UserError for a truncated, foreign or unsafe file
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path} is not a retrain checkpoint")
        if ckpt.get("architecture") != self.arch_json:
            raise UserError(f"{path} was trained on a different architecture than {self.settings.genotype!r}; "
                            f"resume with the same genotype or choose another --output")
        saved, now = ckpt.get("settings") or {}, asdict(self.settings)
        differences = [f"{k}={saved.get(k)!r} (asked: {now[k]!r})" for k in retrain_differences(saved, self.settings)]
        if differences:
            raise UserError(f"{path} was written with other settings: {', '.join(differences)}")
        problem = _damage(ckpt, self.settings.epochs)
        if problem:
            raise UserError(f"{path} is damaged ({problem}); start again with --overwrite (or another --output)")
        check_resume_inputs(ckpt.get("inputs"), self.inputs, path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            self.epoch, self.best_valid_acc = ckpt["epoch"], ckpt["best_valid_acc"]
            self.history, self.elapsed = list(ckpt["history"]), ckpt["wall_time_s"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a damaged or hand-made file
            raise UserError(f"{path} is not a complete retrain checkpoint ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:120]}); start again with --overwrite") from None

    # ------------------------------------------------------------------ training

    def train_epoch(self) -> dict[str, Any]:
        from tqdm import tqdm

        s, e = self.settings, self.epoch  # e: 0-based index of the epoch being trained
        drop_prob = s.drop_path * e / s.epochs if self.uses_drop_path else 0.0
        self.model.set_drop_path(drop_prob)
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(total=self.steps, desc=f"retrain epoch {e + 1}/{s.epochs}", file=sys.stderr, leave=False,
                   disable=not bars_wanted(self.progress), dynamic_ncols=True)
        try:
            for step, (x, y) in enumerate(self.train_loader.epoch(e)):
                if step >= self.steps:
                    break
                self.optimizer.zero_grad(set_to_none=True)
                logits, aux = self.model(x)
                loss = self.criterion(logits, y)
                if aux is not None and self.aux_weight > 0:
                    loss = loss + self.aux_weight * self.criterion(aux, y)
                if not torch.isfinite(loss):
                    kept = f"the checkpoint of epoch {e} is intact" if e else "no checkpoint was written yet"
                    raise UserError(f"loss is {loss.item()} at epoch {e + 1} step {step + 1}: stopped ({kept}); "
                                    f"try a lower --lr")
                loss.backward()
                if s.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
                self.optimizer.step()
                loss_sum += loss.item() * y.numel()
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += y.numel()
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
        finally:
            bar.close()
        self.scheduler.step()
        return {"train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1), "lr": lr,
                "drop_path": drop_prob}


def _damage(ckpt: dict[str, Any], epochs: int) -> str | None:
    """What makes a retrain checkpoint's counters impossible (an edited file: epoch=-5 trained epochs -4..1)."""
    epoch, history = ckpt.get("epoch"), ckpt.get("history")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs:
        return f"epoch {epoch!r} is not in 0..{epochs}"
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        return f"its history does not hold one record for each of its {epoch} epochs"
    for name in ("best_valid_acc", "wall_time_s"):
        value = ckpt.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"{name} {value!r} is not a finite number >= 0"
    return None


def checkpoint_settings(output_dir: str | Path) -> dict[str, Any] | None:
    """The settings a retrain checkpoint in ``output_dir`` was written with (None when there is none)."""
    path = Path(output_dir) / CHECKPOINT
    if not path.exists():
        return None
    ckpt = load(path)  # UserError for a truncated, foreign or unsafe file
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or not isinstance(ckpt.get("settings"),
                                                                                                 dict):
        raise UserError(f"{path} is not a retrain checkpoint; start again with --overwrite (or another --output)")
    return dict(ckpt["settings"])


def _write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text("".join(json.dumps(row) + "\n" for row in history), path)



def run_retrain(settings: RetrainSettings, output_dir: str | Path, resume: bool = False,
                on_epoch: Callable[[dict], None] | None = None, progress: bool = True,
                overwrite: bool = False, shared: bool = False) -> dict[str, Any]:
    """Train ``settings.genotype`` from scratch (or on from ``output_dir/checkpoint.pt`` with ``resume``).

    Calls ``on_epoch({"epoch", "epochs", "train_loss", "train_acc", "valid_acc", "lr", "drop_path",
    "epoch_time_s"})`` after every epoch (``epoch`` counts from 1). Returns what it writes to ``result.json``:
    ``genotype`` (``architecture_to_json``), ``family``, ``test_acc`` (final epoch, on the test split),
    ``best_valid_acc``, ``final_valid_acc``, ``valid_split`` ("test" or "holdout"), ``params`` / ``params_m``
    (without the auxiliary head), ``network`` (the shape actually built), ``epochs``, ``settings``,
    ``wall_time_s`` (training time summed over resumed sessions). Raises ``UserError`` on bad input before
    writing anything, and on a NaN/inf loss (the last good checkpoint stays). A folder holding a checkpoint or a
    result.json is continued (``resume``), started again only with ``overwrite`` (only the retrain's own files
    are removed), or refused; a folder holding anything that is not a retrain's is refused unless ``shared`` (an
    NNI trial's output folder, see ``run_folder.check_run_folder``); it is locked for the run.
    """
    settings.validate()
    check_resume_flags(resume, overwrite)
    output_dir = check_writable_folder(Path(output_dir))
    check_run_folder(output_dir, RETRAIN_FOLDER, shared)  # before the lock file: a refused folder stays as it was
    with output_lock(output_dir, "retrain"):
        return _retrain_locked(settings, output_dir, resume, on_epoch, progress, overwrite, shared)


def _retrain_locked(settings: RetrainSettings, output_dir: Path, resume: bool,
                    on_epoch: Callable[[dict], None] | None, progress: bool, overwrite: bool,
                    shared: bool) -> dict[str, Any]:
    check_run_folder(output_dir, RETRAIN_FOLDER, shared)  # again under the lock: what counts
    checkpoint = output_dir / CHECKPOINT
    if resume and not checkpoint.exists():
        raise UserError(f"nothing to resume: {checkpoint} does not exist")
    if not resume:
        refuse_existing_run(output_dir, {CHECKPOINT: "resumable", RESULT: "finished"}, overwrite, "retrain")
    run = _Run(settings, progress)
    if resume:
        run.restore(checkpoint)
        logger.info("resuming %s after epoch %d of %d", output_dir, run.epoch, settings.epochs)
    # every check passed: only now is anything in the folder changed
    claim_run_folder(output_dir, RETRAIN_FOLDER, clear=not resume)

    from torch.utils.tensorboard import SummaryWriter

    output_dir.mkdir(parents=True, exist_ok=True)
    _write_metrics(output_dir / METRICS, run.history)  # drops lines of an epoch the checkpoint did not keep
    writer = SummaryWriter(str(output_dir / TENSORBOARD), purge_step=run.epoch + 1 if resume else None)
    session_start = time.perf_counter()
    try:
        while run.epoch < settings.epochs:
            start = time.perf_counter()
            row = run.train_epoch()
            valid_acc = evaluate(run.model, run.valid_loader)
            run.epoch += 1
            run.best_valid_acc = max(run.best_valid_acc, valid_acc)
            row = {"epoch": run.epoch, "epochs": settings.epochs, "train_loss": row["train_loss"],
                   "train_acc": row["train_acc"], "valid_acc": valid_acc, "lr": row["lr"],
                   "drop_path": row["drop_path"], "epoch_time_s": round(time.perf_counter() - start, 3)}
            run.history.append(row)
            now = time.perf_counter()
            run.elapsed += now - session_start
            session_start = now
            atomic_save(run.state(), checkpoint)  # the checkpoint first: metrics never run ahead of it
            atomic_append_line(json.dumps(row), output_dir / METRICS)
            for key in ("train_loss", "train_acc", "valid_acc", "lr", "drop_path"):
                writer.add_scalar(f"retrain/{key}", row[key], run.epoch)
            writer.flush()
            if progress:
                from tqdm import tqdm

                tqdm.write(f"retrain epoch {run.epoch}/{settings.epochs}: train loss {row['train_loss']:.4f} "
                           f"acc {row['train_acc']:.2f} %, valid acc {valid_acc:.2f} % ({run.valid_split}), "
                           f"lr {row['lr']:.5f}, {row['epoch_time_s']:.1f} s", file=sys.stderr)
            if on_epoch is not None:
                on_epoch(dict(row))

        final_valid_acc = run.history[-1]["valid_acc"]
        test_acc = final_valid_acc if run.valid_split == "test" else evaluate(run.model, run.test_loader)
        writer.add_scalar("retrain/test_acc", test_acc, settings.epochs)
    finally:
        writer.close()

    layers, channels = settings.shape(run.family)
    params = count_params(run.model)
    result = {
        "genotype": run.arch_json,
        "family": run.family,
        "test_acc": test_acc,
        "best_valid_acc": run.best_valid_acc,
        "final_valid_acc": final_valid_acc,
        "valid_split": run.valid_split,
        "params": params,
        "params_m": round(params / 1e6, 4),
        "network": {"layers": layers, "channels": channels, "auxiliary": run.model.auxiliary_head is not None,
                    "drop_path": settings.drop_path if run.uses_drop_path else 0.0},
        "epochs": settings.epochs,
        "settings": asdict(settings),
        "wall_time_s": round(run.elapsed + time.perf_counter() - session_start, 3),
    }
    atomic_write_text(json.dumps(result, indent=2) + "\n", output_dir / RESULT)
    return result
