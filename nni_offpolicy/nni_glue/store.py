"""Read NNI experiments from disk: the experiment registry and a (stopped) experiment's ``db/nni.sqlite``.

Layout written by NNI 3.0's manager::

    ~/nni-experiments/.experiment          registry (JSON): id -> port, status, pid, logDir (= experiment
                                           working directory, the parent of the experiment dir), ...
    <logDir>/<id>/db/nni.sqlite            TrialJobEvent, MetricData, ExperimentProfile tables
    <logDir>/<id>/log/nnimanager.log, dispatcher.log, experiment.log
    <logDir>/<id>/environments/local-env/trials/<trial>/trial.log   ($NNI_OUTPUT_DIR of a local trial)
    <logDir>/<id>/trials/<trial>/output    what the web UI's TensorBoard button reads (see nni_glue.trial)

Quirks handled here:

- ``MetricData.data`` is JSON-encoded twice (a JSON string whose content is the trial's ``nni.dump`` of the
  value); ``decode_metric`` undoes both.
- A trial's parameters appear only on its first event (``WAITING``/``RUNNING``), as a JSON record
  ``{"parameter_id", "parameter_source", "parameters", "parameter_index"}``; later events have ``data`` NULL.
- With ``trialConcurrency > 1`` NNI 3.0's local training service (``training_service/v3/compat.js``) hands
  queued parameters to whichever trial asks first, so the record stored for a trial may be a sibling's. Our
  trials correct for it (``nni_glue.trial``), but other trials may not: the metric rows carry the parameter id
  the trial really used; ``TrialRecord.reported_parameter_id`` is that one and ``ExperimentData.parameters_by_id``
  maps it to its parameters.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from nni_offpolicy.errors import UserError

TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")


class NniDataError(UserError):
    """What NNI wrote or answered is not what NNI 3.0 writes (a hand-edited registry, another manager's reply):
    checked where it enters, one line naming where it came from."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def nni_home() -> Path:
    """Where nnictl keeps its registry (``~/nni-experiments``; follows ``$HOME`` like NNI does)."""
    return Path(os.path.expanduser("~")) / "nni-experiments"


# ---------------------------------------------------------------------------------------------------- records
@dataclass
class MetricRecord:
    trial_id: str
    parameter_id: int | None
    type: str  # "PERIODICAL" | "FINAL"
    sequence: int
    value: Any  # a number or a dict (with "default")
    timestamp: int | None = None


@dataclass
class TrialRecord:
    trial_id: str
    status: str
    sequence_id: int | None = None
    parameter_id: int | None = None  # what the manager assigned (see module doc)
    parameters: dict[str, Any] = field(default_factory=dict)
    log_path: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    final: list[MetricRecord] = field(default_factory=list)
    intermediate: list[MetricRecord] = field(default_factory=list)

    @property
    def reported_parameter_id(self) -> int | None:
        """The parameter id this trial's metrics carry (what it really ran with), else the assigned one."""
        for metric in self.final + self.intermediate:
            if metric.parameter_id is not None:
                return metric.parameter_id
        return self.parameter_id

    @property
    def final_value(self) -> Any:
        return self.final[-1].value if self.final else None


@dataclass
class ExperimentData:
    experiment_id: str
    source: str  # "rest" or "db"
    status: str | None
    trials: list[TrialRecord]
    experiment_dir: Path | None = None

    @property
    def parameters_by_id(self) -> dict[int, dict[str, Any]]:
        return {t.parameter_id: t.parameters for t in self.trials if t.parameter_id is not None}

    def parameters_of(self, trial: TrialRecord) -> dict[str, Any]:
        pid = trial.reported_parameter_id
        return self.parameters_by_id.get(pid, trial.parameters) if pid is not None else trial.parameters


# ---------------------------------------------------------------------------------------------------- decoding
def as_int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


# what each registry field may hold (NNI 3.0's nnictl writes these types)
_REGISTRY_FIELDS = {"logDir": (str,), "status": (str,), "prefixUrl": (str,), "port": (int, str), "pid": (int, str),
                    "tag": (list,), "platform": (str,), "experimentName": (str,)}


def registry_entry(registry: dict[str, dict[str, Any]], experiment_id: str, home: Path | None = None
                   ) -> dict[str, Any] | None:
    """``experiment_id``'s entry of nnictl's registry, its fields checked (``logDir: ["a"]`` was a TypeError
    deep in export); None when it has none."""
    entry = registry.get(experiment_id)
    if entry is None:
        return None
    source = f"nnictl's experiment list ({(home or nni_home()) / '.experiment'}), experiment {experiment_id}"
    for key, kinds in _REGISTRY_FIELDS.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise NniDataError(f"{source}: {key} is {_shown(value)}, which NNI never writes there")
    if isinstance(entry.get("tag"), list) and not all(isinstance(t, str) for t in entry["tag"]):
        raise NniDataError(f"{source}: tag is {_shown(entry['tag'])}, not a list of text")
    return entry


def decode_metric(data: Any) -> Any:
    """A metric's ``data`` as stored/served by the manager -> the value the trial reported.

    The trial sends ``nni.dump(value)`` inside a JSON message, the manager stores ``JSON.stringify`` of that
    string: two layers of JSON around a number or a dict.
    """
    value = data
    for _ in range(3):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


def decode_parameters(data: Any) -> tuple[int | None, dict[str, Any]]:
    """A ``hyperParameters`` entry (JSON record) -> ``(parameter_id, parameters)``."""
    record = data
    for _ in range(2):
        if not isinstance(record, str):
            break
        try:
            record = json.loads(record)
        except json.JSONDecodeError:
            return None, {}
    if not isinstance(record, dict):
        return None, {}
    params = record.get("parameters")
    return as_int(record.get("parameter_id")), dict(params) if isinstance(params, dict) else {}


def attach_metrics(trials: dict[str, TrialRecord], metrics: Iterable[MetricRecord]) -> None:
    for metric in metrics:
        trial = trials.get(metric.trial_id)
        if trial is None:
            continue
        (trial.final if metric.type == "FINAL" else trial.intermediate).append(metric)
    for trial in trials.values():
        trial.intermediate.sort(key=lambda m: (m.sequence, m.timestamp or 0))
        trial.final.sort(key=lambda m: m.timestamp or 0)


# ---------------------------------------------------------------------------------------------------- registry
def read_registry(home: Path | None = None) -> dict[str, dict[str, Any]]:
    """nnictl's experiment list (``~/nni-experiments/.experiment``), read-only; {} when there is none.

    Read without NNI's file lock: the manager and nnictl rewrite it whole, so a torn read is retried.
    """
    from nni_offpolicy.files.reading import read_text  # a regular file of bounded size, or one line

    path = (home or nni_home()) / ".experiment"
    for attempt in range(5):
        if not os.path.lexists(path):
            return {}
        try:
            data = json.loads(read_text(path, "nnictl's experiment list"))
        except (json.JSONDecodeError, RecursionError):
            time.sleep(0.1 * (attempt + 1))
            continue
        except UserError as exc:
            if "not text" not in str(exc):
                raise
            time.sleep(0.1 * (attempt + 1))
            continue
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
    return {}


def find_experiment_dir(experiment_id: str, experiment_dir: str | Path | None = None,
                        registry: dict[str, dict[str, Any]] | None = None) -> Path | None:
    """The directory holding ``db/nni.sqlite`` of ``experiment_id``.

    ``experiment_dir`` may be the experiment directory itself or its parent (the ``experimentWorkingDirectory``);
    without it the registry's ``logDir`` is used, then ``~/nni-experiments``.
    """
    candidates: list[Path] = []
    if experiment_dir is not None:
        base = Path(experiment_dir).expanduser()
        candidates += [base, base / experiment_id]
    else:
        entry = registry_entry(registry if registry is not None else read_registry(), experiment_id)
        if entry and entry.get("logDir"):
            candidates.append(Path(entry["logDir"]).expanduser() / experiment_id)
        candidates.append(nni_home() / experiment_id)
    for candidate in candidates:
        db = candidate / "db" / "nni.sqlite"
        if db.is_file() and _profile_id(db) in (experiment_id, None):
            return candidate
    return None


def _connect(db: Path) -> sqlite3.Connection:
    # read-only: never create or lock-upgrade the manager's database
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def _profile_id(db: Path) -> str | None:
    try:
        with contextlib.closing(_connect(db)) as conn:
            row = conn.execute("select id from ExperimentProfile order by revision desc limit 1").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


# ---------------------------------------------------------------------------------------------------- db reader
def read_experiment_db(experiment_dir: str | Path, experiment_id: str | None = None) -> ExperimentData:
    """All trials of the experiment in ``experiment_dir`` (the one holding ``db/nni.sqlite``)."""
    experiment_dir = Path(experiment_dir)
    db = experiment_dir / "db" / "nni.sqlite"
    if not db.is_file():
        raise UserError(f"{experiment_dir} is not an NNI experiment directory (no db/nni.sqlite)")
    try:
        with contextlib.closing(_connect(db)) as conn:
            events = conn.execute("select timestamp, trialJobId, event, data, logPath, sequenceId "
                                  "from TrialJobEvent order by rowid").fetchall()
            metric_rows = conn.execute("select timestamp, trialJobId, parameterId, type, sequence, data "
                                       "from MetricData order by rowid").fetchall()
            profile = conn.execute("select id from ExperimentProfile order by revision desc limit 1").fetchone()
    except sqlite3.Error as exc:
        raise UserError(f"cannot read {db}: {exc}") from None
    trials: dict[str, TrialRecord] = {}
    for timestamp, trial_id, event, data, log_path, sequence_id in events:
        trial = trials.get(trial_id)
        if trial is None:
            trial = trials[trial_id] = TrialRecord(trial_id=trial_id, status=event)
        trial.status = event
        if data and not trial.parameters:
            trial.parameter_id, trial.parameters = decode_parameters(data)
        if log_path:
            trial.log_path = log_path
        if as_int(sequence_id) is not None:
            trial.sequence_id = as_int(sequence_id)
        if event in ("WAITING", "RUNNING") and trial.start_time is None:
            trial.start_time = timestamp
        if event in TERMINAL_STATUSES:
            trial.end_time = timestamp
    metrics = [MetricRecord(trial_id=t, parameter_id=as_int(p), type=k, sequence=as_int(s) or 0,
                            value=decode_metric(d), timestamp=ts)
               for ts, t, p, k, s, d in metric_rows]
    attach_metrics(trials, metrics)
    exp_id = experiment_id or (profile[0] if profile else experiment_dir.name)
    ordered = sorted(trials.values(), key=lambda t: (t.sequence_id if t.sequence_id is not None else 1 << 30))
    return ExperimentData(experiment_id=exp_id, source="db", status=None, trials=ordered,
                          experiment_dir=experiment_dir)
