"""The grid's retrains: with --retrain-epochs, each derived cell and the published P-DARTS cell trained again on
one short schedule: its settings, the check that an earlier retrain used them, and running (or skipping) one.
Apart from the grid because the same schedule is checked when the grid is planned and used when it runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from nni_offpolicy.errors import UserError
from nni_offpolicy.retrain import CHECKPOINT as RETRAIN_CHECKPOINT
from nni_offpolicy.retrain import RESULT, RetrainSettings, retrain_differences, run_retrain
from nni_offpolicy.settings import SearchSettings
from nni_offpolicy.tools.ablate.plan import Log, Plan
from nni_offpolicy.tools.ablate.variants import REFERENCE_GENOTYPE

RETRAIN_RESERVED = {"genotype": "the harness", "index": "the harness", "seed": "--seeds",
                    "epochs": "--retrain-epochs"}


def check_retrain_data(plan: Plan) -> None:
    """Every dataset the retrains will load (the search's, or --retrain-set's) is there with a train and a test
    split: checked on its files and names before the first search, not after the last."""
    from nni_offpolicy.data.datasets import check_dataset

    seen = set()
    for run in plan.runs:
        r = retrain_settings(plan, run.settings, {"eval_size": {"input_size": 32}}, run.seed, REFERENCE_GENOTYPE)
        if (r.dataset, r.data_dir, r.download) not in seen:
            seen.add((r.dataset, r.data_dir, r.download))
            try:
                check_dataset(r.dataset, ("train", "test"), data_dir=r.data_dir, download=r.download)
            except UserError as exc:
                raise UserError(f"--retrain-epochs: the retrain's dataset cannot be loaded: {exc}") from None


def retrain_settings(plan: Plan, search: SearchSettings, doc: Mapping[str, Any], seed: int, genotype: str):
    """The short retrain schedule shared by every derived cell and the published reference: the network at the
    search's evaluation size (the size params/FLOPs are reported at), cutout at most half the image side
    (DARTS' 16 px on 32 px CIFAR; 4 px on 8 px digits), then --retrain-set."""
    base = dict(dataset=search.dataset, data_dir=search.data_dir, download=search.download,
                layers=search.eval_layers, channels=search.eval_channels, device=search.device,
                cutout=min(16, int(doc["eval_size"]["input_size"]) // 2))
    return RetrainSettings(genotype=genotype, epochs=int(plan.retrain_epochs or 1), seed=seed,
                           **{**base, **plan.retrain_overrides}).validate()


def check_retrain(out: Path, settings) -> None:
    result = out / RESULT
    if not result.exists():
        return
    changed = sorted(retrain_differences(json.loads(result.read_text()).get("settings", {}), settings))
    if changed:
        raise UserError(f"{out} was retrained with other settings ({', '.join(changed)}); use the same "
                        f"--retrain-epochs/--retrain-set, or another --output")


def retrain_cell(out: Path, settings, log: Log, label: str) -> dict[str, Any]:
    if (out / RESULT).exists():
        check_retrain(out, settings)
        log(f"  retrain {label}: done already ({out / RESULT}), skipped")
        return json.loads((out / RESULT).read_text())
    result = run_retrain(settings, out, resume=(out / RETRAIN_CHECKPOINT).exists(), progress=False)
    log(f"  retrain {label}: test acc {result['test_acc']:.2f} %, {result['params_m']:.3f} M params, "
        f"{result['wall_time_s']:.1f} s")
    return result
