"""Top-K architectures of an NNI experiment whose trials ran ``nni-offpolicy trial search`` (or ``retrain``).

``export_top(experiment_id, top, metric)`` reads the experiment (REST while its manager runs, else its
``db/nni.sqlite``), keeps SUCCEEDED trials with a final result, ranks them by ``metric`` (a numeric key of the
final result; ``default`` is what the tuner optimised; higher is better unless ``mode="min"``) and returns::

    {"experiment": ID, "metric": NAME, "mode": "max", "source": "rest" | "db", "finished_trials": N,
     "architectures": [{"rank": 1, "trial_id", "sequence_id", "parameter_id", "parameters": {...},
                        "metrics": {final result without the genotype}, "genotype": <DARTS dict or NB201
                        arch string>, "family": "darts" | "nb201" | None}, ...]}

``search_spaces.families.load_architecture(file, index)`` reads this file (``--index`` picks the entry), so
``nni-offpolicy retrain --genotype top.json --index 1`` and the retrain experiment use it as is.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

from nni_offpolicy.errors import UserError
from nni_offpolicy.nni_glue.rest import RestError, find_running
from nni_offpolicy.nni_glue.store import (ExperimentData, TrialRecord, find_experiment_dir, read_experiment_db,
                                          read_registry, registry_entry)

EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")  # nni.experiment.management.is_valid_experiment_id
ARCH_KEYS = ("genotype",)


def load_experiment(experiment_id: str, experiment_dir: str | None = None) -> ExperimentData:
    """The experiment's trials, from its running manager if there is one, else from its directory."""
    if not EXPERIMENT_ID.match(experiment_id or ""):
        raise UserError(f"{experiment_id!r} is not an NNI experiment id (8 letters/digits, as nnictl prints)")
    registry = read_registry()
    client = find_running(experiment_id, registry)
    if client is not None:
        try:
            return client.read_experiment(experiment_id)
        except RestError:
            pass  # it stopped between the two calls: read the database instead
    entry = registry_entry(registry, experiment_id)  # its fields checked: one line naming the registry
    found = find_experiment_dir(experiment_id, experiment_dir, registry)
    if found is None and entry is not None and experiment_dir is None:
        where = Path(str(entry.get("logDir") or "~/nni-experiments")).expanduser() / experiment_id
        kind = ("; it ran without an NNI manager (a NAS experiment with a one-shot strategy), so its result is the "
                "search's genotype.json, not trials" if "retiarii" in (entry.get("tag") or []) or entry.get("port") == "N/A" else "")
        raise UserError(f"experiment {experiment_id} is in nnictl's experiment list but has no trial database "
                        f"at {where}/db/nni.sqlite{kind}")
    if found is None:
        where = (f"{experiment_dir} (nor {experiment_dir}/{experiment_id})" if experiment_dir
                 else "nnictl's experiment list (~/nni-experiments/.experiment) or ~/nni-experiments")
        known = sorted(registry)
        hint = (f"; known: {', '.join(known[-10:])}" if known and not experiment_dir else "")
        raise UserError(f"unknown experiment id {experiment_id!r}: no experiment database found in {where}"
                        f"{hint} (give --experiment-dir for an experiment created elsewhere)")
    data = read_experiment_db(found, experiment_id)
    data.status = entry.get("status") if entry else None
    return data


def decode_architecture(value: Any) -> Any:
    """The ``genotype`` of a final result -> a DARTS genotype dict or an NB201 arch string. Trials report its text
    (``Genotype(...)`` or ``|op~0|+...``); earlier ones reported ``json.dumps`` of the dict."""
    if isinstance(value, str) and value.lstrip().startswith("Genotype("):
        from search_spaces.genotypes import genotype_to_dict, parse_genotype

        return genotype_to_dict(parse_genotype(value))
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # an NB201 arch string reported raw
    return value


def final_metrics(trial: TrialRecord) -> dict[str, Any]:
    value = trial.final_value
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"default": value}
    return {}


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def status_summary(data: ExperimentData) -> str:
    counts = Counter(t.status for t in data.trials)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"


def rank_trials(data: ExperimentData, top: int, metric: str = "default", mode: str = "max") -> dict[str, Any]:
    if top < 1:
        raise UserError(f"--top must be >= 1, got {top}")
    if mode not in ("max", "min"):
        raise UserError(f"mode must be max or min, got {mode!r}")
    finished = [t for t in data.trials if t.status == "SUCCEEDED" and t.final]
    if not finished:
        state = f" (experiment status {data.status})" if data.status else ""
        raise UserError(f"experiment {data.experiment_id} has no finished trial yet (none SUCCEEDED with a final "
                        f"result; trials: {status_summary(data)}){state}")
    reported = sorted({k for t in finished for k, v in final_metrics(t).items() if _numeric(v)})
    candidates = [(final_metrics(t)[metric], t) for t in finished if _numeric(final_metrics(t).get(metric))]
    if not candidates:
        raise UserError(f"no finished trial of {data.experiment_id} reported metric {metric!r}; numeric metrics "
                        f"reported: {', '.join(reported) or 'none'}")
    sign = -1.0 if mode == "max" else 1.0
    candidates.sort(key=lambda vt: (sign * vt[0], vt[1].sequence_id if vt[1].sequence_id is not None else 1 << 30))
    architectures = []
    for rank, (value, trial) in enumerate(candidates[:top], start=1):
        metrics = final_metrics(trial)
        genotype = decode_architecture(metrics.pop("genotype", None))
        family = metrics.pop("family", None)
        if family is None and genotype is not None:
            family = "nb201" if isinstance(genotype, str) and genotype.lstrip().startswith("|") else "darts"
        architectures.append({
            "rank": rank,
            "trial_id": trial.trial_id,
            "sequence_id": trial.sequence_id,
            "parameter_id": trial.reported_parameter_id,
            "parameters": data.parameters_of(trial),
            "metrics": metrics,
            "genotype": genotype,
            "family": family,
        })
    return {
        "experiment": data.experiment_id,
        "metric": metric,
        "mode": mode,
        "source": data.source,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished_trials": len(finished),
        "ranked_trials": len(candidates),
        "architectures": architectures,
    }


def export_top(experiment_id: str, top: int = 3, metric: str = "default", mode: str = "max",
               experiment_dir: str | None = None) -> dict[str, Any]:
    if top < 1:  # before touching anything
        raise UserError(f"--top must be >= 1, got {top}")
    return rank_trials(load_experiment(experiment_id, experiment_dir), top, metric, mode)
