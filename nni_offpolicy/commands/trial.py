"""``nni-offpolicy trial``: the trialCommand of NNI experiments (``experiments/*.yml``).

``trial search``  one whole progressive search per trial. The tuner's parameters are a flat dict of search
                  settings (``controller_lr``, ``behaviour``, ``epsilon``, ...) applied over ``--preset``,
                  ``--config`` and ``--set``. One intermediate result per epoch (``default`` = supernet valid
                  accuracy), one final result (``default`` = ``--metric`` of the derived architecture, plus
                  ``genotype`` as JSON text, ``params_m``, ``flops_m``, ...). TensorBoard logs go to
                  ``$NNI_OUTPUT_DIR/tensorboard`` and the web UI's TensorBoard button finds them.
``trial retrain`` one retrain per trial; the parameter ``index`` picks the entry of an exported top-K file
                  (``--genotype top.json``), other parameters override the retrain settings. Intermediate
                  ``default`` = valid accuracy per epoch, final ``default`` = test accuracy.

Outside NNI both run once with no tuner parameters, writing to ``./runs/trial``. A failing trial logs its
traceback to ``trial.log`` (the web UI's "View trial log") and exits non-zero, so NNI marks it FAILED.
"""
from __future__ import annotations

import argparse
import json
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from nni_offpolicy.commands import parse_pairs
from nni_offpolicy.errors import UserError

if typing.TYPE_CHECKING:
    from nni_offpolicy.nni_glue.trial import TrialSession

# Numeric keys of run_search's document that can be a trial's 'default' metric.
SEARCH_METRICS = ("derived_reward", "derived_valid_acc", "params_m", "flops_m")
# Extra numeric keys of the final result (the web UI's table can show them as columns).
SEARCH_FINAL_KEYS = ("derived_reward", "derived_valid_acc", "params_m", "flops_m", "wall_time_s")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("trial", help="run one NNI trial (the trialCommand of experiments/*.yml)",
                                   description=__doc__.splitlines()[0].split(": ", 1)[1])
    sub = parser.add_subparsers(dest="trial_kind", required=True, metavar="KIND")

    search = sub.add_parser("search", help="one progressive search per trial; tuner parameters = settings")
    search.add_argument("--preset", default="demo", help="settings preset under the tuner's parameters "
                                                          "(default demo)")
    search.add_argument("--config", metavar="FILE", help="YAML/JSON settings file applied over the preset")
    search.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed setting for every trial (repeatable); the tuner's parameters win")
    search.add_argument("--metric", default="derived_reward", choices=SEARCH_METRICS,
                        help="what the final result's 'default' is (default derived_reward, the MnasNet-form "
                             "reward of the derived architecture)")
    search.set_defaults(func=run_search_trial)

    retrain = sub.add_parser("retrain", help="one retrain per trial; parameter 'index' picks the architecture")
    from nni_offpolicy.commands.retrain import add_settings_options

    add_settings_options(retrain)
    retrain.set_defaults(func=run_retrain_trial)


# ----------------------------------------------------------------------------------------------------- helpers
def parse_sets(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` -> {key: value}; values are JSON when they parse (numbers, lists), else strings."""
    out: dict[str, Any] = {}
    for key, value in parse_pairs(items).items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run_trial(body: typing.Callable[["TrialSession"], None]) -> int:
    from nni_offpolicy.nni_glue.trial import TrialSession, log_failure

    session = TrialSession()
    try:
        session.start()
        body(session)
    except BaseException as exc:  # KeyboardInterrupt too: NNI stops trials with SIGINT
        if not isinstance(exc, KeyboardInterrupt):
            log_failure(exc)
        raise
    return 0


# ----------------------------------------------------------------------------------------------------- search
def final_search_result(doc: Mapping[str, Any], metric: str) -> dict[str, Any]:
    value = doc.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        numeric = [k for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        raise UserError(f"the search reported no number {metric!r}; numeric keys: {', '.join(numeric)}")
    result: dict[str, Any] = {"default": float(value)}
    for key in SEARCH_FINAL_KEYS:
        if isinstance(doc.get(key), (int, float)) and not isinstance(doc.get(key), bool):
            result[key] = doc[key]
    result["genotype"] = json.dumps(doc["genotype"])
    result["family"] = doc.get("family")
    best = doc.get("best_sampled")
    if isinstance(best, Mapping) and "genotype" in best:
        result["best_sampled"] = json.dumps(best["genotype"])
        if isinstance(best.get("reward"), (int, float)):
            result["best_sampled_reward"] = best["reward"]
    result["metric"] = metric
    return result


def _epoch_reporter(session: "TrialSession") -> typing.Callable[[Mapping[str, Any]], None]:
    """Each epoch's record as an NNI intermediate result whose ``default`` is the validation accuracy (searches
    and retrains alike), so the web UI's curves compare trials of either kind."""
    def on_epoch(record: Mapping[str, Any]) -> None:
        session.report_intermediate({"default": record.get("valid_acc"), **{
            k: v for k, v in record.items() if k != "default"}})

    return on_epoch


def run_search_trial(args: argparse.Namespace) -> int:
    def body(session) -> None:
        from nni_offpolicy.search.loop import run_search
        from nni_offpolicy.settings import load_settings

        overrides = {**parse_sets(args.overrides), **session.parameters}
        overrides["progress"] = False  # no progress bars in trial.log / trial.stderr
        settings = load_settings(args.preset, overrides, args.config)
        session.link_tensorboard_output()

        with session.isolated():
            # the trial's own folder: NNI re-running a trial starts it again, as it always did
            doc = run_search(settings, session.output_dir, on_epoch=_epoch_reporter(session), progress=False,
                             overwrite=True, shared=True)  # NNI's own files share the folder
        session.report_final(final_search_result(doc, args.metric))

    return _run_trial(body)


# ----------------------------------------------------------------------------------------------------- retrain
def _source_entry(genotype: str, index: int | None) -> dict[str, Any]:
    """The exported top-K entry a retrain trial trains (trial id, rank), when the file is one."""
    path = Path(genotype)
    if not path.suffix == ".json" or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    entries = data.get("architectures") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        return {}
    i = index or 0
    entry = entries[i] if -len(entries) <= i < len(entries) else None
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in {"source_trial": entry.get("trial_id"), "source_rank": entry.get("rank"),
                              "source_experiment": data.get("experiment") if isinstance(data, dict) else None
                              }.items() if v is not None}


def run_retrain_trial(args: argparse.Namespace) -> int:
    def body(session) -> None:
        from nni_offpolicy.retrain import RetrainSettings, coerce_overrides, run_retrain

        given = {f.name: getattr(args, f.name) for f in fields(RetrainSettings) if hasattr(args, f.name)}
        values = {**given, **coerce_overrides(session.parameters, "the trial's parameters")}
        if "genotype" not in values:
            raise UserError("trial retrain needs --genotype (a top-K file from 'nni-offpolicy export', a genotype "
                            "JSON, or a built-in name)")
        settings = RetrainSettings(**values)
        session.link_tensorboard_output()

        with session.isolated():
            result = run_retrain(settings, session.output_dir, on_epoch=_epoch_reporter(session),
                                 progress=False, shared=True)  # NNI's own files share the folder
        final = {"default": result["test_acc"], "test_acc": result["test_acc"],
                 "best_valid_acc": result["best_valid_acc"], "params_m": result["params_m"],
                 "genotype": json.dumps(result["genotype"]), "family": result.get("family"),
                 **_source_entry(settings.genotype, settings.index)}
        session.report_final(final)

    return _run_trial(body)

