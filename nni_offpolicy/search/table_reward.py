"""The table reward source (``reward_source=table``): the controller learns from a benchmark table, not a supernet.

This is NAS-Bench-201's multi-trial REINFORCE setting: every sampled cell's accuracy term is its value in
``reward_table`` (``TABLE:COLUMN``; a percentage column is divided by 100, a fraction is taken as it is, see
``tables.reward_scale``), times the metric terms as with the supernet (``RewardModel``). No supernet is built and
no data is loaded (for cifar10/cifar100 the shapes are known; digits and image folders are read for their size
only), so a whole progressive search takes a second or two on a CPU and a controller change can be judged over
many seeds. Everything else runs as in ``ProgressiveSearch``: the same stages, epochs and steps per epoch
(the weight-training half's size // batch_size, or max_steps_per_epoch), warm-up epochs without controller
updates, a controller step every ``rl_interval_steps`` steps, shrinking, behaviour policies, derivation,
checkpoints and resume. Accuracies in the records and in genotype.json (``derived_valid_acc``,
``best_sampled.valid_acc``, ``greedy_acc``) are the table's values in %, and genotype.json says
``reward_source: table``.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.search.monitor import RunLogger, update_tag
from nni_offpolicy.search.progressive import arch_key, stage_controller
from nni_offpolicy.search.records import epoch_record
from nni_offpolicy.search.replicas import Replicas
from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.settings import SearchSettings
from nni_offpolicy.data.tables import open_table, reward_scale

if TYPE_CHECKING:  # annotations only: the loop imports this module, never the other way round
    from search_spaces.families import Family

    from nni_offpolicy.search.loop import EpochCallback

# Datasets whose shapes are fixed by definition (so their files, which may not be here, need not be read).
KNOWN_SHAPES = {"cifar10": (50_000, 10, 3, 32), "cifar100": (50_000, 100, 3, 32)}


@dataclass(frozen=True)
class DataShape:
    train_images: int  # the whole training set, before the search's split
    num_classes: int
    in_channels: int
    input_size: int


def data_shape(settings: SearchSettings) -> DataShape:
    """What the schedule (steps per epoch) and the cost model (params/FLOPs at evaluation size) need to know of
    the dataset, without holding its images where that can be avoided."""
    if settings.dataset in KNOWN_SHAPES:
        shape = DataShape(*KNOWN_SHAPES[settings.dataset])
        return shape if settings.image_size is None else replace(shape, input_size=settings.image_size)
    from nni_offpolicy.data.datasets import load_dataset

    data = load_dataset(settings.dataset, "train", data_dir=settings.data_dir, download=settings.download,
                        image_size=settings.image_size)
    return DataShape(len(data), data.num_classes, data.in_channels, data.input_size)


def steps_per_epoch(settings: SearchSettings, shape: DataShape) -> int:
    """What the supernet's loop would take: weight-training images // batch size (drop_last), capped."""
    steps = math.floor(settings.train_portion * shape.train_images) // settings.batch_size
    if settings.max_steps_per_epoch:
        steps = min(steps, settings.max_steps_per_epoch)
    return max(steps, 1)


_PRICES: dict[tuple, tuple[int, int]] = {}


class MemoRewards(RewardModel):
    """Each cell priced once per process and evaluation size (an ablation grid runs many searches in one
    process): pricing forks the RNG on every call, which costs more than the rest of a table-scored controller
    step. NB201 cells only (this source's family), whose sample dicts are their own key."""

    def price(self, arch: Any) -> tuple[int, int]:
        c = self.cost
        key = (c.layers, c.channels, c.num_classes, c.in_channels, c.input_size, tuple(sorted(arch.items())))
        if key not in _PRICES:
            _PRICES[key] = super().price(arch)
        return _PRICES[key]


class TableStage:
    """A stage with only a controller: no supernet, optimiser or schedule to build, save or restore."""

    supernet = None

    def __init__(self, search: "TableScoring", stage: int, edge_ops: dict):
        self.stage, self.edge_ops = stage, edge_ops
        self.controller = stage_controller(search.settings, search.family, edge_ops, stage)
        self.op_rows = [row for row, d in enumerate(self.controller.decisions) if d.kind == "op"]

    def state(self) -> dict[str, Any]:
        return {"controller": self.controller.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.controller.load_state(state["controller"])


class TableScoring:
    """What the table source changes in ``ProgressiveSearch``: the table as the accuracy term. ``search.loop``
    mixes it in first (``loop.TableSearch``), so the loop, stages, shrinking, derivation and persistence stay the
    search's; what a step trains and how a cell is scored are these. What they call of the search
    (``init_run_state``, ``controller_step``, ``greedy_sample``, ``publish_epoch``, ``finish``) comes with the class
    it is mixed into: this module never imports the loop."""

    settings: SearchSettings
    family: "Family"

    def __init__(self, settings: SearchSettings, output_dir: Path, shape: DataShape,
                 on_epoch: "EpochCallback | None" = None, progress: bool = True, initial_ops: dict | None = None):
        # not super().__init__: that loads batches onto a device for a supernet this search never builds
        self.settings, self.dir = settings, output_dir
        self.replicas = Replicas(torch.device("cpu"))
        self.device = self.replicas.device
        self.initial_ops, self.family = initial_ops, settings.family  # nb201: validated
        self.num_classes, self.in_channels, self.input_size = shape.num_classes, shape.in_channels, shape.input_size
        self.table, column = open_table(settings.reward_table)
        self.column = self.table.single_column(column)
        self.scale = reward_scale(self.table, self.column)
        self.steps = steps_per_epoch(settings, shape)
        self.valid_batches: list = []  # none: what the base class reads of them is the table's here
        self.accel = None  # no network runs forwards here (the learners take it for the supernet's)
        self.eval_batches = 0
        self.rewards = MemoRewards(settings, self.family, self.num_classes, self.in_channels, self.input_size)
        self.init_run_state(on_epoch, progress)
        self._values: dict[str, float] = {}

    def new_stage(self, stage: int, edge_ops: dict) -> TableStage:
        return TableStage(self, stage, edge_ops)

    def table_accuracy(self, sample: dict) -> float:
        """The cell's table value as a fraction (the reward's accuracy term)."""
        key = arch_key(self.family, sample, self.settings.nodes)
        if key not in self._values:
            self._values[key] = self.table.value(key, self.column) * self.scale
        return self._values[key]

    def sample_accuracies(self, run: Any, sample_dicts: list[dict]) -> tuple[list[float], tuple]:
        self.reward_updates += 1
        return [self.table_accuracy(d) for d in sample_dicts], (None, None)

    def evaluate(self, run: Any, sample: dict | None, batches: int | None = None) -> float:
        """The table value in % of ``sample`` (None, the mixed supernet elsewhere: the greedy cell)."""
        return 100.0 * self.table_accuracy(sample if sample is not None else self.greedy_sample(run))

    def train_epoch(self, run: Any, epoch: int, logger: RunLogger) -> None:
        """The supernet loop's schedule without its weight steps: the same steps, controller steps at the same
        ones after the warm-up, one record per epoch."""
        s, stage = self.settings, run.stage
        controlling = epoch >= s.warmup_epochs[stage]
        rewards: list[float] = []
        step_stats: dict[str, list[float]] = {}
        started = time.time()
        for step in range(self.steps):
            self.global_step += 1
            if controlling and (step + 1) % s.rl_interval_steps == 0:
                stats = self.controller_step(run, epoch, step)
                rewards.extend(stats.pop("_rewards"))
                for name, value in stats.items():
                    if isinstance(value, (int, float)):
                        step_stats.setdefault(name, []).append(float(value))
        # the controller steps' statistics as one epoch mean each: a TensorBoard event per step would take most
        # of a run's time here, where a step costs a millisecond
        logger.scalars({name: sum(v) / len(v) for name, v in step_stats.items()}, self.global_step,
                       partial(update_tag, stage + 1))
        seconds = time.time() - started
        greedy = self.greedy_sample(run)
        greedy_acc = self.evaluate(run, greedy)
        record = epoch_record(self, run, epoch, greedy, greedy_acc, seconds, rewards, reward_source="table",
                              valid_acc=greedy_acc)
        record["steps"] = self.steps
        self.publish_epoch(run, logger, record, stage)
        if self.progress:
            print(f"stage {stage + 1} epoch {epoch + 1}/{s.epochs[stage]}: table value of the greedy cell "
                  f"{greedy_acc:.2f}% greedy reward {record['greedy_reward']:.4f}", file=sys.stderr)

    def finish(self, run: Any) -> dict[str, Any]:
        doc = super().finish(run)  # type: ignore[misc]  (ProgressiveSearch.finish, after this in the MRO)
        doc.pop("valid_images", None)  # no validation images were used
        doc.update(reward_source="table", reward_table=str(self.table.path), reward_column=self.column,
                   reward_scale=self.scale,
                   note="derived_valid_acc, best_sampled.valid_acc and the stages' accuracies are the table's "
                        f"values of column {self.column} (in %); no supernet was trained")
        return doc


def table_search(search_class: type[TableScoring], settings: SearchSettings, out: Path,
                 resume_state: dict[str, Any] | None, on_epoch: "EpochCallback | None", progress: bool,
                 initial_ops: dict | None) -> dict[str, Any]:
    """A whole search with the table reward source (``run_search`` calls it with ``loop.TableSearch``, so the
    outputs are the same)."""
    # the controller's tensors are a few dozen numbers: more than one intra-op thread only makes them wait for
    # each other (ten times slower on a busy 2-core machine), so one unless the settings name more
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads if settings.threads > 0 else 1)
    try:
        if resume_state is None:
            ckpt.seed_everything(settings.seed)
        search = search_class(settings, out, data_shape(settings), on_epoch, progress, initial_ops)
        return search.run(resume_state)
    finally:
        torch.set_num_threads(before)
