"""The progressive off-policy search: stages of (weight steps + controller updates), then shrink, then derive.

One stage = a fresh supernet of ``layers[s]`` cells over the current per-edge op lists, fresh weights and a fresh
controller. Weight steps run on training batches (mixed: softmax-weighted sum; path: one behaviour-sampled path);
after the warm-up, every ``rl_interval_steps`` steps the controller draws ``samples_per_update`` architectures
from its behaviour policy, scores each on the next validation batch through the shared weights (train-mode BN,
no skip dropout) times the metric terms, and takes one Adam step. A checkpoint is written after every epoch, so a
killed search resumes at the last epoch boundary and ends exactly where the uninterrupted one would have.
"""
from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from search_spaces.presets import build_space, initial_edge_ops

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.search.budget import budget_fit
from nni_offpolicy.search.accel import Accel, NonFiniteWatch, peak_memory_gb, reset_peak_memory
from nni_offpolicy.files.atomic import atomic_write_text, check_writable_folder
from nni_offpolicy.search.controller import OffPolicyController
from nni_offpolicy.console import bars_wanted
from nni_offpolicy.data.batches import BatchLoader
from nni_offpolicy.data.datasets import load_dataset
from nni_offpolicy.data.imageset import ImageSet
from nni_offpolicy.data.split import search_split, train_half_size
from nni_offpolicy.search.devices import resolve_device
from nni_offpolicy.search.divergence import DivergenceGuard
from nni_offpolicy.errors import SearchDiverged, UserError  # noqa: F401 (SearchDiverged: also importable from here)
from nni_offpolicy.search.learners import make_learner
from nni_offpolicy.files.inputs import check_resume_inputs, search_inputs
from nni_offpolicy.files.locking import output_lock
from nni_offpolicy.search.monitor import RunLogger, SilentLogger, epoch_tag, log_policy, update_tag
from nni_offpolicy.search.final_picks import Answer, make_final_pick
from nni_offpolicy.search.progressive import arch_key, build_decisions, derive, sample_to_arch, shrink, stage_controller
from nni_offpolicy.search.replicas import Replicas, check_devices, launch
from nni_offpolicy.search.rewards import RewardModel, probe_metric
from nni_offpolicy.files.run_folder import (GENOTYPE_FILE, FolderKind, check_resume_flags, check_run_folder,
                                           claim_run_folder, refuse_existing_run)
from nni_offpolicy.search.checkpoint import CHECKPOINT, RESUME_KEYS, SearchCheckpoint, load_resume_state  # noqa: F401
from nni_offpolicy.search.records import epoch_record, global_epoch, stage_record
from nni_offpolicy.search.result import ResultBuilder
from nni_offpolicy.settings import SearchSettings
from nni_offpolicy.search.supernet import Supernet
from nni_offpolicy.search.table_reward import TableScoring, table_search
from nni_offpolicy.search.tracker import Tracker
from nni_offpolicy.search.validation import Validation

MONITOR_BATCHES = 10  # validation batches behind each epoch record's valid_acc/greedy_acc
EpochCallback = Callable[[dict], None]


class StageRun:
    """Everything that lives for one stage: supernet, controller, optimiser, schedule."""

    def __init__(self, search: "ProgressiveSearch", stage: int, edge_ops: dict):
        s = search.settings
        self.stage, self.edge_ops = stage, edge_ops
        reset_peak_memory(search.device)  # records' peak_memory_gb: since this stage started
        space = build_space(s.space, edge_ops, layers=s.layers[stage], channels=s.channels,
                            num_classes=search.num_classes, in_channels=search.in_channels, nodes=s.nodes)
        self.supernet = Supernet(space).to(search.device)
        search.accel.prepare(self.supernet, self.supernet.candidate_ops())  # before the optimiser sees the weights
        self.controller = stage_controller(s, search.family, edge_ops, stage)
        self.optimizer = torch.optim.SGD(self.supernet.parameters(), lr=s.lr, momentum=s.momentum,
                                         weight_decay=s.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=s.epochs[stage],
                                                                    eta_min=s.lr_min)
        self.op_rows = [row for row, d in enumerate(self.controller.decisions) if d.kind == "op"]

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, accel: Accel, replicas: Replicas,
                    grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of the supernet's weights on (x, y) along the path or mixture already set; its logits
        and loss (not synced: the caller watches them without waiting for the device)."""
        logits = accel.forward(self.supernet, x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        replicas.average_gradients(self.optimizer.param_groups[0]["params"])
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), grad_clip)
        self.optimizer.step()
        return logits, loss

    def mixed_weights(self, device: torch.device) -> dict[str, torch.Tensor]:
        pi = self.controller.pi().to(device)
        return {self.controller.decisions[row].label: pi[row, : len(self.controller.decisions[row].options)]
                for row in self.op_rows}

    def state(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "controller": self.controller.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.controller.load_state(state["controller"])


class ProgressiveSearch:
    def __init__(self, settings: SearchSettings, output_dir: Path, train_set: ImageSet, valid_set: ImageSet,
                 replicas: Replicas, on_epoch: EpochCallback | None = None, progress: bool = True,
                 initial_ops: dict | None = None):
        self.settings, self.dir, self.replicas = settings, output_dir, replicas
        self.device = device = replicas.device
        progress = progress and replicas.is_main
        self.initial_ops = initial_ops
        self.family = settings.family  # the record, resolved once by the settings
        self.num_classes, self.in_channels = train_set.num_classes, train_set.in_channels
        self.input_size = train_set.input_size
        self.accel = Accel.from_settings(settings, device)
        self.train_loader = BatchLoader(train_set, settings.batch_size, device, train=True, seed=settings.seed)
        self.validation = Validation(valid_set, settings, device, self.accel, replicas)
        self.valid_batches, self.eval_batches = self.validation.batches, self.validation.eval_batches
        self.rewards = RewardModel(settings, self.family, self.num_classes, self.in_channels, self.input_size,
                                   probe_images=self.valid_batches[0][0], probe_labels=self.valid_batches[0][1],
                                   reference_ops=initial_ops)
        self.init_run_state(on_epoch, progress)

    def init_run_state(self, on_epoch: EpochCallback | None, progress: bool) -> None:
        """What every reward source's search carries through its run and its checkpoint, however it scores
        cells: the learner, the tracker, the counters, the clock (``TableSearch`` builds no supernet and calls
        this alone, so the two cannot drift apart)."""
        s = self.settings
        self.on_epoch, self.progress = on_epoch, progress
        self.tracker = Tracker(s.recent_window)
        self.learner = make_learner(s)  # how alpha learns: the one place settings.controller is read
        self.stage_summaries: list[dict[str, Any]] = []
        self.pick_space: dict | None = None  # an untrained last stage's space (finish_untrained), else None
        self.global_step = 0
        self.reward_updates = 0
        self.total_epochs = sum(s.epochs)
        self.started = time.time()
        self.elapsed_before = 0.0
        self.checkpoint = SearchCheckpoint(self, self.dir)
        self.divergence = DivergenceGuard(self.checkpoint.exists, self.dir, self.replicas, self.device)

    # ------------------------------------------------------------------ the loop
    def run(self, resume_state: dict[str, Any] | None) -> dict[str, Any]:
        s = self.settings
        resuming = resume_state is not None
        stage, epoch, edge_ops = self.checkpoint.restore(resume_state,
                                                         self.initial_ops or initial_edge_ops(s.space, s.nodes))
        logger = RunLogger(self.dir, purge_step=self.global_step if resuming else None,
                           jsonl_lines=self.checkpoint.jsonl_lines) if self.replicas.is_main else SilentLogger()
        try:
            while stage < s.stages:
                run = self.checkpoint.open_stage(lambda: self.new_stage(stage, edge_ops))
                if epoch == 0:
                    self.tracker.reset_stage()
                for e in range(epoch, s.epochs[stage]):
                    self.train_epoch(run, e, logger)
                    self.checkpoint.save(stage, e + 1, edge_ops, run, logger.lines)
                summary = stage_record(self, run)
                self.stage_summaries.append(summary)
                if stage + 1 < s.stages:
                    edge_ops, swaps = self.shrink(run, edge_ops)
                    if swaps:  # the stage's record says why its successor's space is not its top-k
                        summary["budget_swaps"] = swaps
                stage, epoch = stage + 1, 0
                if stage < s.stages and s.epochs[stage] == 0:
                    return self.finish_untrained(run, stage, edge_ops)
                if stage < s.stages:
                    self.checkpoint.save(stage, 0, edge_ops, None, logger.lines)
            return self.finish(run)
        finally:
            logger.close()

    def shrink(self, run: StageRun, edge_ops: dict) -> tuple[dict, list[dict[str, str]]]:
        """The next stage's space: each edge's top ops (``progressive.shrink``), kept able to meet a hard budget
        (``search.budget``): the cheapest cell of the kept ops must fit, or the last stage may hold no cell that
        does."""
        s, probs = self.settings, run.controller.probabilities()
        fits = budget_fit(self.rewards, self.family, s.nodes, s.size_budget, edge_ops, probs, s.max_skip_connect)
        chooser = self.learner.choice_generator(run.stage, "shrink")  # the random learner's draw; None: by pi
        return shrink(edge_ops, probs, s.ops_kept[run.stage], generator=chooser,
                      fits=fits, op_price=fits.op_params if fits else None)

    def train_epoch(self, run: StageRun, epoch: int, logger: RunLogger) -> None:
        s, stage = self.settings, run.stage
        supernet, controller = run.supernet, run.controller
        supernet.train()
        epochs = s.epochs[stage]
        skip_p = s.skip_dropout[stage] * (epochs - epoch - 1) / epochs  # P-DARTS' linear decay
        supernet.set_skip_dropout(skip_p)
        steps = len(self.train_loader)
        if s.max_steps_per_epoch:
            steps = min(steps, s.max_steps_per_epoch)
        controlling = epoch >= s.warmup_epochs[stage]
        weights = run.mixed_weights(self.device) if s.weight_mode == "mixed" else None
        correct = torch.zeros((), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        epoch_rewards: list[float] = []
        watch = NonFiniteWatch(self.device)  # no host sync per step: checked at controller steps and epoch end
        started = time.time()
        bar = tqdm(total=steps, desc=f"stage {stage + 1}/{s.stages} epoch {epoch + 1}/{epochs}", leave=False,
                   disable=not bars_wanted(self.progress), file=sys.stderr, dynamic_ncols=True)
        replicas = self.replicas
        for step, batch in enumerate(self.train_loader.epoch(global_epoch(s, stage, epoch))):
            if step >= steps:
                break
            x, y = replicas.shard(*batch)
            if weights is not None:
                supernet.set_mixed(weights)
            else:
                path = controller.sample(1, policy=self.learner.path_policy)
                supernet.set_path(controller.to_sample(path.actions[0]))
            logits, loss = run.weight_step(x, y, self.accel, replicas, s.grad_clip)
            watch.observe(loss, step)
            correct += (logits.detach().argmax(1) == y).sum()
            loss_sum += loss.detach() * y.shape[0]
            seen += y.shape[0]
            self.global_step += 1
            if controlling and (step + 1) % s.rl_interval_steps == 0:
                self.divergence.check_loss(watch, stage, epoch)  # the controller never learns from a diverged supernet
                stats = self.controller_step(run, epoch, step)
                supernet.set_skip_dropout(skip_p)  # rewards ran without it; weight steps go on with it
                epoch_rewards.extend(stats.pop("_rewards"))
                logger.scalars(stats, self.global_step, partial(update_tag, stage + 1))
                if weights is not None:
                    weights = run.mixed_weights(self.device)
                bar.set_postfix(loss=f"{loss.item():.3f}", reward=f"{stats['reward/mean']:.3f}")
            bar.update(1)
        bar.close()
        self.divergence.check_loss(watch, stage, epoch)  # waits for the device, so `seconds` is the loop's real time
        seconds = time.time() - started
        run.scheduler.step()
        totals = replicas.sum(torch.stack([correct.float(), loss_sum.float(),
                                           torch.tensor(float(seen), device=self.device)]))
        correct, loss_sum, seen = totals[0], totals[1], int(totals[2])
        greedy = self.greedy_sample(run)
        # monitoring never walks more than the eval_images a user allowed evaluations (a CPU proxy's 512 images
        # were 2,560 here, a third of its epoch time)
        monitor = min(MONITOR_BATCHES, self.eval_batches)
        greedy_acc = self.evaluate(run, greedy, batches=monitor)
        valid_acc = self.evaluate(run, None, batches=monitor) if s.weight_mode == "mixed" else greedy_acc
        record = epoch_record(self, run, epoch, greedy, greedy_acc, seconds, epoch_rewards,
                              train_loss=float(loss_sum) / max(seen, 1), train_acc=100.0 * float(correct) / max(seen, 1),
                              valid_acc=valid_acc, lr=run.optimizer.param_groups[0]["lr"])
        record.update(steps=steps, peak_memory_gb=peak_memory_gb(self.device))
        self.publish_epoch(run, logger, record, stage)
        if self.progress:
            print(f"stage {stage + 1} epoch {epoch + 1}/{epochs}: loss {record['train_loss']:.3f} "
                  f"train {record['train_acc']:.1f}% valid {record['valid_acc']:.1f}% "
                  f"greedy reward {record['greedy_reward']:.4f} ({record['seconds']:.1f}s)", file=sys.stderr)

    def publish_epoch(self, run: Any, logger: RunLogger, record: dict[str, Any], stage: int) -> None:
        """One epoch's record to TensorBoard (its numbers), the policy's state, metrics.jsonl and the on_epoch
        hook (NNI's intermediate results), in one place, so every reward source reports an epoch alike."""
        logger.scalars({k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in
                        ("stage", "epoch", "global_epoch", "total_epochs")}, self.global_step,
                       partial(epoch_tag, stage + 1))
        if self.replicas.is_main:
            log_policy(logger.writer, run.controller, stage + 1, self.global_step)
        logger.record(record)
        if self.on_epoch is not None:
            self.on_epoch(record)

    def new_stage(self, stage: int, edge_ops: dict) -> StageRun:
        return StageRun(self, stage, edge_ops)

    def sample_accuracies(self, run: StageRun, sample_dicts: list[dict]) -> tuple[list[float], tuple]:
        """The accuracy term of each sample's reward (a fraction), and the validation batch it was scored on."""
        run.supernet.set_skip_dropout(0.0)
        self.reward_updates += 1
        return self.validation.sample_accuracies(run.supernet, sample_dicts, self.reward_updates - 1)

    def controller_step(self, run: StageRun, epoch: int, step: int) -> dict[str, Any]:
        s, controller = self.settings, run.controller
        samples = controller.sample(s.samples_per_update, policy=self.learner.sample_policy)
        sample_dicts = [controller.to_sample(a) for a in samples.actions]
        accuracies, batch = self.sample_accuracies(run, sample_dicts)
        keys = [arch_key(self.family, d, s.nodes) for d in sample_dicts]
        metrics = [self.rewards.metrics(sample_to_arch(self.family, d, s.nodes), k)
                   for d, k in zip(sample_dicts, keys)]
        rewards = [self.rewards.reward(a, m, run.stage) for a, m in zip(accuracies, metrics)]
        where = f"at stage {run.stage + 1}, epoch {epoch + 1}, step {step + 1}"
        self.divergence.check_rewards(rewards, where)
        stats = self.learner.update(controller, samples, rewards, run.supernet, run.op_rows, batch, self.accel,
                                    self.replicas)
        self.divergence.check_update(self.learner.diverged(stats), controller.alpha, where)
        self.tracker.updates += 1
        self.tracker.observe_samples(run.stage, rewards, sample_dicts, keys, metrics)
        labels = [d.label for d in controller.decisions]
        picks = self.learner.picks(controller, samples)
        self.tracker.observe_argmax(labels, picks.tolist())
        stats.update({"reward/mean": sum(rewards) / len(rewards), "reward/max": max(rewards),
                      "reward/min": min(rewards), "sample/acc_mean": sum(accuracies) / len(accuracies),
                      "sample/params_m": sum(m["params_m"] for m in metrics) / len(metrics),
                      "sample/flops_m": sum(m["flops_m"] for m in metrics) / len(metrics)})
        stats.update(self.tracker.recent_stats())
        stats["_rewards"] = rewards
        return stats

    def evaluate(self, run: StageRun, sample: dict | None, batches: int | None = None) -> float:
        """Accuracy (%) on validation batches: one path (``sample``) or the mixed supernet (None). ``batches``:
        the first that many (monitoring); None: the ``eval_images`` first images (stage-end and final)."""
        run.supernet.set_skip_dropout(0.0)
        if sample is None:
            run.supernet.set_mixed(run.mixed_weights(self.device))
        else:
            run.supernet.set_path(sample)
        return self.validation.accuracy(run.supernet, batches)

    def greedy_sample(self, run: StageRun) -> dict[str, Any]:
        """The stage's derivation as the learner derives it (by pi, or its own random draw; its input rule)."""
        return derive(self.family, run.edge_ops, run.controller.probabilities(), self.settings.max_skip_connect,
                      generator=self.learner.choice_generator(run.stage, "derive"), inputs=self.learner.inputs)

    def final_sample(self, run: StageRun) -> Answer:
        """The search's answer as ``settings.final_pick`` picks it (``search.final_picks``): its sample, its
        accuracy on the ``eval_images`` where the pick measured it (None: not measured yet) and how each
        candidate scored. ``run``: the last trained stage; the space scored is an untrained last stage's, if
        any (``finish_untrained``), else ``run``'s own."""
        return make_final_pick(self).answer(run, self.pick_space or run.edge_ops)

    def finish_untrained(self, run: StageRun, stage: int, edge_ops: dict) -> dict[str, Any]:
        """The answer of a search whose last stage has 0 epochs (``final_pick=zero-cost`` only): that stage's
        space, what the last shrink kept, is scored whole by the pick, which needs no training, so training it
        could not change the answer; it would only cost the longest stage's time (the most cells per stack).
        The candidates' accuracies come from ``run``, the last trained stage, whose space holds every cell of
        this one. No checkpoint is written at this boundary: a resume starts again from the previous stage's
        end, where its supernet is saved."""
        self.pick_space = edge_ops
        if self.progress:
            print(f"stage {stage + 1}: not trained (epochs 0); the zero-cost pick scores its space whole",
                  file=sys.stderr)
        self.stage_summaries.append({"stage": stage + 1, "layers": self.settings.layers[stage],
                                     "edge_ops": edge_ops, "trained": False})
        return self.finish(run)

    def finish(self, run: StageRun) -> dict[str, Any]:
        """genotype.json's document (``search.result.ResultBuilder``); a reward source adjusts it here."""
        return ResultBuilder(self).build(run)


class TableSearch(TableScoring, ProgressiveSearch):
    """``ProgressiveSearch`` with a benchmark table as the accuracy term (``reward_source=table``,
    ``search.table_reward``): no supernet, no data."""


RUN_FILES = (CHECKPOINT, "metrics.jsonl", GENOTYPE_FILE, "cell.png")  # what a search leaves, tensorboard/ aside
RUN_MARKERS = {CHECKPOINT: "resumable", GENOTYPE_FILE: "finished"}
SEARCH_FOLDER = FolderKind("search", RUN_FILES, ("tensorboard",), RUN_MARKERS)  # see files/run_folder.py


def run_search(settings: SearchSettings, output_dir: str | Path, resume: bool = False,
               on_epoch: EpochCallback | None = None, progress: bool | None = None,
               initial_ops: dict | None = None, overwrite: bool = False, shared: bool = False) -> dict[str, Any]:
    """Run (or resume) a whole progressive search; write and return genotype.json's document.

    ``initial_ops`` replaces the space preset's per-edge op lists (a user's own space, via the NNI strategy).
    An ``output_dir`` holding a checkpoint or a genotype.json is continued (``resume``) or, only with
    ``overwrite``, started again (only the search's own files are removed); otherwise refused. A folder holding
    anything that is not a search's is refused (``run_folder.check_run_folder``) unless ``shared`` (an NNI trial's
    output folder, which holds NNI's files too). Every check on the input runs before anything there is touched,
    and the folder is locked for the run (``locking.output_lock``).
    """
    settings.validate()
    check_resume_flags(resume, overwrite)
    if initial_ops is not None:
        available = min(len(ops) for kind in initial_ops.values() for ops in kind.values())
        if settings.ops_kept[0] > available:
            raise UserError(f"ops_kept: stage 1 keeps {settings.ops_kept[0]} ops per edge but the space's edges "
                            f"have {available}")
    out = check_writable_folder(Path(output_dir))
    check_run_folder(out, SEARCH_FOLDER, shared)  # before the lock file: a refused folder is left as it was
    with output_lock(out, "search"):
        return _run_locked(settings, out, resume, on_epoch, progress, initial_ops, overwrite, shared)


def _run_locked(settings: SearchSettings, out: Path, resume: bool, on_epoch: EpochCallback | None,
                progress: bool | None, initial_ops: dict | None, overwrite: bool, shared: bool) -> dict[str, Any]:
    check_run_folder(out, SEARCH_FOLDER, shared)  # again under the lock: what counts
    resume_state = None
    if resume:
        if not (out / CHECKPOINT).exists():
            raise UserError(f"--resume: no checkpoint in {out}; start without --resume")
        resume_state = load_resume_state(out / CHECKPOINT, settings)
    else:
        refuse_existing_run(out, RUN_MARKERS, overwrite, "search")
    table_source = settings.reward_source == "table"  # no network, no data: see table_reward.py
    device = resolve_device(settings.device)
    if not table_source:
        check_devices(settings.devices, device, settings.batch_size)
    # loaded here first even with several replicas: a bad dataset fails before anything is spawned, and a JPEG
    # folder is decoded into its cache once instead of by every replica at the same time
    data = None if table_source else load_dataset(settings.dataset, "train", data_dir=settings.data_dir,
                                                  download=settings.download, image_size=settings.image_size)
    if data is not None:
        check_split_batches(settings, data)
    if settings.metric:
        probe_metric(settings.metric, settings.family.name, known_architecture(settings, initial_ops))
    if resume_state is not None:  # the files it read must be the ones the checkpoint's run read
        check_resume_inputs(resume_state.get("inputs"), search_inputs(settings), out / CHECKPOINT)
    # every check passed: only now is anything in the folder changed
    claim_run_folder(out, SEARCH_FOLDER, clear=not resume)
    show = settings.progress if progress is None else progress
    if table_source:
        doc = table_search(TableSearch, settings, out, resume_state, on_epoch, show, initial_ops)
    elif settings.devices > 1:
        doc = launch(_search_replica, settings.devices, device.type, on_epoch, settings, out, resume_state, show,
                     initial_ops, None)
    else:
        doc = _search_replica(Replicas(device), on_epoch, settings, out, resume_state, show, initial_ops, data)
    atomic_write_text(json.dumps(doc, indent=2) + "\n", out / GENOTYPE_FILE)
    return doc


def check_split_batches(settings: SearchSettings, data: ImageSet) -> None:
    """The weight-training half of the search split must hold one whole batch (the loader drops the last partial
    one), checked before the folder is touched rather than when the first stage builds its loader."""
    n_train = train_half_size(len(data), settings.train_portion)
    if settings.batch_size > n_train:
        suggested = suggested_batch_size(n_train)
        raise UserError(f"batch_size {settings.batch_size} does not fit: the search trains weights on "
                        f"train_portion {settings.train_portion} of the images, {n_train} of the {len(data)} "
                        f"images of {settings.dataset} (the rest score architectures), and every weight step "
                        f"takes one whole batch of them, so batch_size must be at most {n_train}: e.g. "
                        f"--set batch_size={suggested} ({n_train // suggested} steps an epoch)")


def suggested_batch_size(train_images: int) -> int:
    """A batch size for a small training half: the largest power of two that leaves at least 3 steps an epoch
    (1 when even that cannot)."""
    size = 1
    while size * 2 * 3 <= train_images:
        size *= 2
    return size


def known_architecture(settings: SearchSettings, initial_ops: dict | None = None) -> Any:
    """An architecture of the search's own space (the derivation under uniform probabilities): what a metric
    is probed on before any training."""
    family = settings.family
    edge_ops = initial_ops or initial_edge_ops(settings.space, settings.nodes)
    probs = OffPolicyController(build_decisions(family, edge_ops)).probabilities()
    sample = derive(family, edge_ops, probs, settings.max_skip_connect)
    return sample_to_arch(family, sample, settings.nodes)


def _search_replica(replicas: Replicas, on_epoch: EpochCallback | None, settings: SearchSettings, out: Path,
                    resume_state: dict[str, Any] | None, progress: bool, initial_ops: dict | None,
                    data: ImageSet | None) -> dict[str, Any]:
    """One replica's whole search (the only one on a single device). Spawned replicas load the data themselves
    (from the cache the launcher warmed) rather than receive a pickled copy."""
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    if data is None:
        data = load_dataset(settings.dataset, "train", data_dir=settings.data_dir, download=settings.download,
                            image_size=settings.image_size)
    train_set, valid_set = search_split(data, settings.train_portion, settings.split_seed)
    if resume_state is None:
        ckpt.seed_everything(settings.seed)
    search = ProgressiveSearch(settings, out, train_set, valid_set, replicas, on_epoch, progress, initial_ops)
    return search.run(resume_state)
