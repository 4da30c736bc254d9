"""``ProgressiveOffPolicy``: the search as an NNI 3.0 one-shot strategy, and the evaluator that names its data.

    from nni.nas.experiment import NasExperiment
    space = DartsCellSpace(normal_ops=DARTS_OPS, reduce_ops=DARTS_OPS, channels=16)
    exp = NasExperiment(space, SearchData("imagefolder:cifar10-jpeg.tar.gz"),
                        ProgressiveOffPolicy(preset="pdarts", output_dir="runs/nas"))
    exp.run()
    exp.export_top_models(formatter="dict")   # [{'normal/op_2_0': 'sep_conv_3x3', ...}]

It subclasses ``OneShotStrategy`` only so that ``NasExperiment`` picks the sequential engine and the raw model
format; it replaces NNI's Lightning-based one-shot machinery with our own loop (per-stage supernets, per-edge op
lists and exact resume do not fit NNI's single-supernet hooks). The space's constructor arguments give the
initial per-edge op lists and the channels; the evaluator gives the data.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from nni.nas.evaluator import Evaluator
from nni.nas.oneshot.pytorch.strategy import OneShotStrategy
from nni.nas.space import ExecutableModelSpace

from search_spaces.families import FAMILIES, family_of_space

from nni_offpolicy.errors import UserError
from nni_offpolicy.settings import SearchSettings, load_settings

_logger = logging.getLogger(__name__)


class SearchData(Evaluator):
    """Which data a search (or a multi-trial evaluation) uses; see ``nni_offpolicy.data.datasets.load_dataset``."""

    def __init__(self, dataset: str = "digits", data_dir: str | None = None, download: bool = False,
                 train_portion: float = 0.5, split_seed: int = 0, epochs: int = 1, batch_size: int = 64,
                 lr: float = 0.05, device: str = "auto", image_size: int | None = None):
        self.dataset, self.data_dir, self.download, self.image_size = dataset, data_dir, download, image_size
        self.train_portion, self.split_seed = train_portion, split_seed
        self.epochs, self.batch_size, self.lr, self.device = epochs, batch_size, lr, device

    def extra_repr(self) -> str:
        return f"dataset={self.dataset!r}"

    def evaluate(self, model: torch.nn.Module) -> float:
        """Train a frozen model briefly and return its test accuracy (%), for NNI's multi-trial strategies."""
        import nni

        from nni_offpolicy.data.batches import BatchLoader
        from nni_offpolicy.data.datasets import load_dataset
        from nni_offpolicy.search.devices import resolve_device

        device = resolve_device(self.device)
        train = load_dataset(self.dataset, "train", self.data_dir, self.download, image_size=self.image_size)
        test = load_dataset(self.dataset, "test", self.data_dir, self.download, image_size=self.image_size)
        model = model.to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9, weight_decay=3e-4)
        loader = BatchLoader(train, self.batch_size, device, train=True)
        for epoch in range(self.epochs):
            model.train()
            for x, y in loader.epoch(epoch):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in BatchLoader(test, 256, device, train=False, drop_last=False).epoch(0):
                correct += int((model(x).argmax(1) == y).sum())
                total += y.shape[0]
        accuracy = 100.0 * correct / max(total, 1)
        if nni.get_current_parameter() is not None:
            nni.report_final_result(accuracy)
        return accuracy


def space_settings(space: Any) -> tuple[str, dict, dict[str, Any]]:
    """(family, initial per-edge op lists, settings implied by the space's constructor arguments)."""
    family = family_of_space(space)
    if family is None:
        searched = " or ".join(f.space_class.__name__ for f in FAMILIES.values())
        raise UserError(f"ProgressiveOffPolicy searches {searched}, got {type(space).__name__}")
    edge_ops, implied = family.space_settings(space)
    return family.name, edge_ops, implied


class ProgressiveOffPolicy(OneShotStrategy):
    """P-DARTS progressive shrinking with an off-policy REINFORCE controller (see ``nni_offpolicy.search.loop``).

    ``settings`` (or ``preset`` + keyword overrides, as on the command line) configure the stages, the
    controller and the reward; ``output_dir`` receives genotype.json, tensorboard/, metrics.jsonl and checkpoints.
    After ``run``, ``list_models`` yields the derived architecture and ``result`` holds genotype.json's document.
    """

    def __init__(self, settings: SearchSettings | None = None, preset: str = "demo", output_dir: str | Path =
                 "runs/nas-experiment", resume: bool = False, overwrite: bool = False, **overrides: Any):
        super().__init__()
        self.settings = settings or load_settings(preset, overrides)
        # overwrite: discard a search already in output_dir (refused otherwise; see run_folder.py)
        self.output_dir, self.resume, self.overwrite = Path(output_dir), resume, overwrite
        self.result: dict[str, Any] | None = None
        self._family = "darts"
        self._initial_ops: dict | None = None

    def _initialize(self, model_space: ExecutableModelSpace, engine: Any) -> ExecutableModelSpace:
        space = getattr(model_space, "model_space", model_space)
        evaluator = getattr(model_space, "evaluator", None)
        family, self._initial_ops, implied = space_settings(space)
        self._family = family
        overrides = dict(implied, space=FAMILIES[family].default_space)
        if isinstance(evaluator, SearchData):
            overrides.update(dataset=evaluator.dataset, data_dir=evaluator.data_dir, download=evaluator.download,
                             train_portion=evaluator.train_portion, split_seed=evaluator.split_seed)
            if evaluator.image_size is not None:  # else the settings' own (a preset's, e.g. own-small's 32)
                overrides["image_size"] = evaluator.image_size
        elif evaluator is not None:
            _logger.warning("%s does not name data; searching on the settings' dataset %r. Use SearchData.",
                            type(evaluator).__name__, self.settings.dataset)
        for key, value in overrides.items():
            setattr(self.settings, key, value)
        self.settings.validate()
        return model_space

    def _run(self) -> None:
        from nni_offpolicy.search.loop import run_search

        self.result = run_search(self.settings, self.output_dir, resume=self.resume, initial_ops=self._initial_ops,
                                 overwrite=self.overwrite)

    def list_models(self, sort: bool = True, limit: int | None = 1) -> Iterator[ExecutableModelSpace]:
        """The derived architecture (the only one a one-shot search ranks), frozen from the original space."""
        if self.result is None:
            raise RuntimeError("ProgressiveOffPolicy has not run yet")
        yield self.model_space.freeze(self.result["sample"])

    def state_dict(self) -> dict:
        return {"output_dir": str(self.output_dir), "result": self.result}

    def load_state_dict(self, state_dict: dict) -> None:
        self.result = state_dict.get("result")
