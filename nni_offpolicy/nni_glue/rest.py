"""A small client of a running NNI manager's REST API (``http://localhost:<port>/api/v1/nni/...``).

Endpoints used (``nni_node/rest_server/restHandler.js``): ``check-status`` (``{"status": "RUNNING" | "DONE" |
"NO_MORE_TRIAL" | "ERROR" | ..., "errors": [...]}``), ``experiment`` (the profile: ``id``, ``params`` = the
config, ``logDir`` = the experiment dir), ``trial-jobs`` and ``metric-data``. Metric ``data`` is JSON-encoded
twice and ``hyperParameters`` entries are JSON strings; both are decoded into ``store`` records.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nni_offpolicy.nni_glue.store import (ExperimentData, MetricRecord, NniDataError, TrialRecord, as_int, attach_metrics,
                                          decode_metric, decode_parameters, read_registry, registry_entry)


class RestError(RuntimeError):
    pass


class NniRest:
    def __init__(self, port: int, host: str = "127.0.0.1", prefix: str | None = None, timeout: float = 10.0):
        self.port = int(port)
        parts = [f"http://{host}:{self.port}", (prefix or "").strip("/"), "api/v1/nni"]
        self.base = "/".join(p for p in parts if p)
        self.timeout = timeout

    def get(self, api: str) -> Any:
        url = f"{self.base}/{api.lstrip('/')}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise RestError(f"GET {url}: HTTP {exc.code} {exc.read()[:200]!r}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RestError(f"GET {url}: {getattr(exc, 'reason', exc)}") from None
        try:
            return json.loads(body) if body else None
        except (ValueError, RecursionError):
            raise NniDataError(f"the NNI manager at {self.base}: GET {api} answered something that is not JSON "
                               f"({body[:60]!r})") from None

    def _reply(self, api: str, kind: type, what: str) -> Any:
        """``GET api`` checked at the edge: a ``kind`` (dict or list of dicts), else one line naming the source."""
        reply = self.get(api)
        if reply is None and kind is list:
            return []
        if not isinstance(reply, kind) or (kind is list and not all(isinstance(r, dict) for r in reply)):
            raise NniDataError(f"the NNI manager at {self.base}: GET {api} answered {type(reply).__name__} "
                               f"{str(reply)[:60]!r}, not {what}")
        return reply

    # ------------------------------------------------------------------ endpoints
    def check_status(self) -> dict[str, Any]:
        return self._reply("check-status", dict, "a status object")

    def experiment(self) -> dict[str, Any]:
        return self._reply("experiment", dict, "the experiment's profile (an object)")

    def trial_jobs(self) -> list[dict[str, Any]]:
        jobs = self._reply("trial-jobs", list, "a list of trial objects")
        for job in jobs:
            if not isinstance(job.get("trialJobId"), str) or not job["trialJobId"]:
                raise NniDataError(f"the NNI manager at {self.base}: GET trial-jobs answered a trial without a "
                                   f"trialJobId ({str(job)[:60]!r})")
        return jobs

    def metric_data(self, trial_id: str | None = None) -> list[dict[str, Any]]:
        return self._reply(f"metric-data/{trial_id}" if trial_id else "metric-data", list, "a list of metric objects")

    # ------------------------------------------------------------------ decoded
    def read_experiment(self, experiment_id: str | None = None) -> ExperimentData:
        profile = self.experiment()
        exp_id = profile.get("id")
        if experiment_id is not None and exp_id != experiment_id:
            raise RestError(f"the manager on port {self.port} runs experiment {exp_id}, not {experiment_id}")
        status = self.check_status().get("status")
        trials: dict[str, TrialRecord] = {}
        for job in self.trial_jobs():
            hyper = job.get("hyperParameters") or []
            parameter_id, parameters = decode_parameters(hyper[0]) if hyper else (None, {})
            trials[job["trialJobId"]] = TrialRecord(
                trial_id=job["trialJobId"], status=job.get("status", "UNKNOWN"),
                sequence_id=as_int(job.get("sequenceId")), parameter_id=parameter_id, parameters=parameters,
                log_path=job.get("logPath"), start_time=job.get("startTime"), end_time=job.get("endTime"))
        metrics = [MetricRecord(trial_id=m.get("trialJobId"), parameter_id=as_int(m.get("parameterId")),
                                type=m.get("type", ""), sequence=as_int(m.get("sequence")) or 0,
                                value=decode_metric(m.get("data")), timestamp=m.get("timestamp"))
                   for m in self.metric_data()]
        attach_metrics(trials, metrics)
        ordered = sorted(trials.values(), key=lambda t: (t.sequence_id if t.sequence_id is not None else 1 << 30))
        log_dir = profile.get("logDir")
        return ExperimentData(experiment_id=exp_id, source="rest", status=status if isinstance(status, str) else None,
                              trials=ordered, experiment_dir=Path(log_dir) if isinstance(log_dir, str) and log_dir
                              else None)


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def find_running(experiment_id: str, registry: dict[str, dict[str, Any]] | None = None,
                 timeout: float = 5.0) -> NniRest | None:
    """A client for ``experiment_id`` if nnictl's registry lists it and its manager answers as that experiment.

    The registry's status can lag (it says RUNNING after a crash, and ports are reused), so the manager's pid
    must be alive and ``/experiment`` must report the same id.
    """
    entry = registry_entry(registry if registry is not None else read_registry(), experiment_id)
    if not entry or entry.get("status") == "STOPPED":
        return None
    try:  # NAS experiments with a one-shot strategy register with port "N/A": no manager, no REST
        port = int(entry.get("port"))
    except (TypeError, ValueError):
        return None
    if entry.get("pid") is not None and not _pid_alive(entry["pid"]):
        return None
    client = NniRest(port, prefix=entry.get("prefixUrl"), timeout=timeout)
    try:
        if client.experiment().get("id") != experiment_id:
            return None
    except (RestError, ValueError):
        return None
    return client
