"""The one place that touches ``nni.trial`` internals.

A classic NNI trial calls ``nni.get_next_parameter()`` once and reports through the default trial command
channel. Our trials run an NNI NAS search *inside* the trial, and NNI's sequential execution engine hijacks
that machinery while it runs (``nni/nas/execution/sequential.py``):

- it installs its own ``SequentialTrialCommandChannel`` and calls ``nni.get_next_parameter()``, which leaves
  ``nni.trial._params`` pointing at *its* record (parameter_id 0). A final result reported afterwards through
  ``nni.report_final_result`` would be attributed to parameter 0, i.e. to another trial's hyperparameters;
- anything reported while the search runs (``nni.report_intermediate_result``) goes to that engine, not to the
  NNI manager, so the web UI would show no per-epoch curve;
- ``Evaluator.mock_runtime`` refuses to run while ``nni.get_current_parameter()`` is set.

``TrialSession`` therefore takes the parameters once, keeps the manager's channel object and parameter id, runs
the search with ``nni.trial._params`` cleared (``isolated()``), puts everything back afterwards, and sends
PERIODICAL/FINAL metrics straight through the saved channel with the saved parameter id.

It also corrects an NNI 3.0 race: with ``trialConcurrency > 1`` the local training service may hand a trial the
parameters submitted for its sibling (see ``_assigned_record``); the trial then runs with, and reports under, the
record the manager assigned to it.

It also links ``<experiment dir>/trials/<trial id>/output`` to ``$NNI_OUTPUT_DIR``: the web UI's TensorBoard
button reads ``<experiment dir>/trials/<trial id>/output/tensorboard`` while the local training service gives
the trial ``<experiment dir>/environments/<env>/trials/<trial id>`` as its output directory.

And it gives our log messages a handler where NNI gives them none (``ensure_log_handler``): on the remote
training service with ``reuseMode: true`` NNI attaches its stdout handler to the ``nni`` logger only, so the
trial's INFO lines (which parameters and which copy of the code it runs, its final result) were dropped.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Mapping

from nni_offpolicy.errors import UserError
from nni_offpolicy.files.atomic import atomic_write_text

logger = logging.getLogger("nni_offpolicy.trial")

STANDALONE_OUTPUT = Path("runs") / "trial"


def _environment_int(name: str) -> int:
    """A whole number NNI sets in the trial's environment (0 when unset); one line naming it otherwise."""
    text = os.environ.get(name) or "0"
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name}={text[:40]!r} in the trial's environment (NNI sets it) is not a whole number") \
            from None


def in_nni_trial() -> bool:
    """True when this process was started by an NNI training service (not standalone, not NNI's unit tests)."""
    return os.environ.get("NNI_PLATFORM") not in (None, "", "unittest")


def _plain_number(value: Any) -> float | int | None:
    """A finite Python int/float from a number-like (numpy, 0-d tensor), else None."""
    if isinstance(value, bool):
        return None
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def numeric_items(record: Mapping[str, Any]) -> dict[str, float | int]:
    """The finite numeric entries of ``record`` as plain Python numbers (strings, lists, NaN are dropped)."""
    out: dict[str, float | int] = {}
    for key, value in record.items():
        number = _plain_number(value)
        if number is not None:
            out[str(key)] = number
    return out


class TrialSession:
    """Parameters, metric channel and output directory of this trial, captured before any NAS code runs.

    Outside NNI (``nni-offpolicy trial search`` run by hand) parameters are empty, metrics are logged, and the
    output directory is ``./runs/trial``.
    """

    def __init__(self, standalone_output: str | Path = STANDALONE_OUTPUT) -> None:
        self.in_nni = in_nni_trial()
        self.trial_id = os.environ.get("NNI_TRIAL_JOB_ID") or "STANDALONE"
        self.experiment_id = os.environ.get("NNI_EXP_ID") or "STANDALONE"
        self.sequence_id = _environment_int("NNI_TRIAL_SEQ_ID")
        output = os.environ.get("NNI_OUTPUT_DIR") if self.in_nni else None
        self.output_dir = Path(output) if output else Path(standalone_output)
        self.parameters: dict[str, Any] = {}
        self.parameter_id: int | None = None
        self._record: Any = None
        self._channel: Any = None
        self._sequence = 0

    # ------------------------------------------------------------------ parameters
    def start(self) -> "TrialSession":
        """Ask the manager for this trial's parameters (once) and keep the channel they came through."""
        import nni
        from nni.runtime.trial_command_channel import get_default_trial_command_channel

        if self.in_nni:
            ensure_log_handler()
        received_id = None
        if self.in_nni:
            parameters = nni.get_next_parameter()
            self._record = nni.trial._params
            if parameters is None or self._record is None:
                raise RuntimeError("the NNI manager sent no parameters to this trial (is the experiment stopping?)")
            received_id = self._record.get("parameter_id")
            assigned = self._assigned_record()
            if assigned is not None and assigned.get("parameter_id") != received_id:
                logger.info("NNI handed trial %s the parameters of a sibling trial (parameter_id %s), as NNI 3.0's "
                            "local training service does when trials start together: expected, and corrected here; "
                            "this trial runs and reports the parameters the manager assigned to it (parameter_id "
                            "%s)", self.trial_id, received_id, assigned.get("parameter_id"))
                self._record = assigned
                nni.trial._params = assigned
                parameters = assigned["parameters"]
            if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
                raise UserError(f"the NNI tuner sent this trial {type(parameters).__name__} "
                                f"{str(parameters)[:60]!r}, not a flat dict of setting: value")
            self.parameters = dict(parameters)
            self.parameter_id = self._record.get("parameter_id")
        self._channel = get_default_trial_command_channel()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # Which copy of the code runs: on remote machines it is NNI's upload of trialCodeDirectory
        # (<remote exp dir>/trials/<trial>/code), not the package installed in the machine's environment.
        package_dir = str(Path(__file__).resolve().parents[1])
        record = {"trial_id": self.trial_id, "sequence_id": self.sequence_id, "parameter_id": self.parameter_id,
                  "parameters": self.parameters, "received_parameter_id": received_id,
                  "platform": os.environ.get("NNI_PLATFORM"), "package_dir": package_dir}
        atomic_write_text(json.dumps(record, indent=2, default=str) + "\n", self.output_dir / "nni_parameters.json")
        logger.info("trial %s runs parameter_id %s (received parameter_id %s): %s", self.trial_id,
                    self.parameter_id, received_id, json.dumps(self.parameters, default=str))
        logger.info("trial %s: NNI platform %s, code %s, output %s", self.trial_id, record["platform"],
                    package_dir, self.output_dir)
        return self

    def _assigned_record(self, attempts: int = 10) -> dict[str, Any] | None:
        """The parameter record the NNI manager assigned to *this* trial, from its REST API.

        NNI 3.0's local training service (``nni_node/training_service/v3/compat.js``) queues submitted parameters
        and hands them to whichever trial process asks first, so with ``trialConcurrency > 1`` two trials that
        start together can swap parameter sets. The manager (web UI, trial-end events sent to the tuner) still
        believes the assignment, so a swapped trial shows its sibling's parameters in the web UI and, worse, the
        TPE tuner crashes (``KeyError`` in ``receive_trial_result``: the trial-end event of one trial already
        dropped the parameter id the other trial then reports) and the experiment hangs. Running with the
        assigned record instead keeps the manager, the tuner and the metrics consistent.

        None when it cannot be asked (no HTTP trial channel, e.g. another training service) or did not answer.
        """
        channel_url = os.environ.get("NNI_TRIAL_COMMAND_CHANNEL") or ""
        if not channel_url.startswith("http://") or "/env/" not in channel_url:
            return None
        import urllib.error
        import urllib.request

        url = f"{channel_url.split('/env/', 1)[0]}/api/v1/nni/trial-jobs/{self.trial_id}"
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    job = json.loads(response.read() or b"null")
                record = json.loads((job or {}).get("hyperParameters", [None])[0] or "null")
                if isinstance(record, dict) and isinstance(record.get("parameters"), Mapping):
                    return record
            except (urllib.error.URLError, OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
                if attempt == attempts - 1:
                    logger.warning("cannot read this trial's assigned parameters from %s: %s", url, exc)
            time.sleep(0.5)  # the manager fills the record in right after spawning the trial
        return None

    @contextlib.contextmanager
    def isolated(self) -> Iterator[None]:
        """Run NNI NAS code that installs its own trial channel; restore ours and ``nni.trial`` state after."""
        import nni
        from nni.runtime.trial_command_channel import set_default_trial_command_channel

        saved_params = nni.trial._params
        saved_sequence = nni.trial._intermediate_seq
        nni.trial._params = None  # Evaluator.mock_runtime refuses to run while trial APIs look available
        try:
            yield
        finally:
            if self._channel is not None:
                set_default_trial_command_channel(self._channel)
            nni.trial._params = saved_params
            nni.trial._intermediate_seq = saved_sequence

    # ------------------------------------------------------------------ metrics
    def _send(self, kind: str, value: Any, sequence: int) -> None:
        if self._channel is None:
            raise RuntimeError("TrialSession.start() was not called")
        self._channel.send_metric(type=kind, parameter_id=self.parameter_id, trial_job_id=self.trial_id,
                                  sequence=sequence, value=value)

    def report_intermediate(self, metrics: Mapping[str, Any]) -> bool:
        """One PERIODICAL metric; ``metrics['default']`` must be a finite number (else nothing is sent)."""
        value = numeric_items(metrics)
        if "default" not in value:
            logger.warning("intermediate result without a finite 'default' skipped: %s", dict(metrics))
            return False
        self._send("PERIODICAL", value, self._sequence)
        self._sequence += 1
        return True

    def report_final(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The FINAL metric: numbers as plain floats/ints, other values as they are (strings show in the UI).

        ``default`` must be a finite number: NNI's tuners crash on anything else.
        """
        value: dict[str, Any] = {}
        for key, item in metrics.items():
            number = _plain_number(item)
            if number is not None:
                value[str(key)] = number
            elif isinstance(item, (str, type(None))):
                value[str(key)] = item
            elif isinstance(item, float):  # NaN / inf: not JSON
                value[str(key)] = None
            else:
                value[str(key)] = json.dumps(item, default=str)
        if not isinstance(value.get("default"), (int, float)) or isinstance(value.get("default"), bool):
            raise ValueError(f"final result needs a finite number as 'default', got {metrics.get('default')!r}")
        self._send("FINAL", value, 0)
        logger.info("final result for parameter_id %s: %s", self.parameter_id, json.dumps(value))
        return value

    # ------------------------------------------------------------------ web UI TensorBoard button
    def experiment_dir(self) -> Path | None:
        """``<exp dir>`` when the output dir has the local layout ``<exp dir>/environments/<env>/trials/<id>``."""
        if not self.in_nni:
            return None
        out = self.output_dir.resolve()
        if out.name != self.trial_id or out.parent.name != "trials" or len(out.parents) < 4 \
                or out.parents[2].name != "environments":
            return None
        return out.parents[3]

    def link_tensorboard_output(self) -> Path | None:
        """Make ``<exp dir>/trials/<trial id>/output`` point at ``$NNI_OUTPUT_DIR`` (relative symlink).

        Returns the link, or None where there is nothing to link (standalone, or a training service with another
        layout, e.g. remote machines, whose output lives on the remote host).
        """
        exp_dir = self.experiment_dir()
        if exp_dir is None:
            return None
        link = exp_dir / "trials" / self.trial_id / "output"
        target = self.output_dir.resolve()
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                if link.resolve() == target:
                    return link
                link.unlink()
            elif link.is_dir():
                if any(link.iterdir()):
                    logger.warning("%s exists and is not empty; TensorBoard logs stay in %s", link, target)
                    return None
                link.rmdir()
            os.symlink(os.path.relpath(target, link.parent), link, target_is_directory=True)
        except OSError as exc:  # never fail a trial over the web UI's convenience
            logger.warning("cannot link %s -> %s: %s", link, target, exc)
            return None
        return link


def ensure_log_handler() -> None:
    """Send this package's INFO messages to stdout when nothing else would show them.

    ``import nni`` configures logging per platform (``nni/runtime/log.py``): a local trial gets a root handler
    writing ``trial.log``, but a trial under a reusable training service (remote with ``reuseMode: true``, whose
    trial runner forwards the trial's stdout) only gets a stdout handler on the ``nni`` logger. Without a handler
    of our own, ``nni_offpolicy`` INFO lines vanish there (warnings and errors reach stderr through logging's
    last resort only).
    """
    ours = logging.getLogger("nni_offpolicy")
    if logging.getLogger().handlers or ours.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s (%(name)s) %(message)s"))
    ours.addHandler(handler)
    if ours.level == logging.NOTSET or ours.level > logging.INFO:
        ours.setLevel(logging.INFO)


def log_failure(exc: BaseException) -> None:
    """Put the traceback where the web UI's "View trial log" looks (trial.log), not only in trial.stderr."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    logger.error("trial failed:\n%s", text.rstrip())
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
