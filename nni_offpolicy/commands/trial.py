"""``nni-offpolicy trial``: the trialCommand of NNI experiments (``experiments/*.yml``).

``trial search``  one whole progressive search per trial. The tuner's parameters are a flat dict of search
                  settings (``behaviour``, ``epsilon``, ``warmup_epochs``, ...) applied over ``--preset``,
                  ``--config`` and ``--set``. ``default`` is one quantity in one unit at every report, so the web
                  UI's per-epoch and final charts agree: ``--metric`` of the derived architecture in the final
                  result, and per epoch the same of the cell the policy would derive then (``PER_EPOCH``). By
                  default that is an accuracy in % (``derived_valid_acc``: the derived cell's accuracy on the
                  search's validation images through the trained supernet; per epoch ``greedy_acc``); with
                  ``--metric derived_reward`` the reward (0-1 scale, accuracy x size terms), per epoch
                  ``greedy_reward``. The final result lists ``default``, ``derived_valid_acc``, ``params_m`` and
                  ``genotype`` first (the detail view and ``nnictl trial ls`` show them in that order), then
                  ``flops_m``, ``derived_reward``, ...; architectures are their text (``Genotype(...)``,
                  ``|op~0|+...``), which NNI's JSON does not escape. Each epoch is also a line in trial.log.
                  TensorBoard logs go to ``$NNI_OUTPUT_DIR/tensorboard`` and the web UI's TensorBoard button
                  finds them.
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

# Numeric keys of run_search's document that can be a trial's 'default' metric, and for each the epoch record's
# key that measures the same of the cell the policy would derive at that epoch (the intermediate 'default').
PER_EPOCH = {"derived_valid_acc": "greedy_acc", "derived_reward": "greedy_reward", "params_m": "greedy_params_m",
             "flops_m": "greedy_flops_m"}
SEARCH_METRICS = tuple(PER_EPOCH)
# The final result's keys in the order the web UI's detail view and `nnictl trial ls` show them: the useful ones
# first ('default' and 'genotype' are placed by final_search_result).
SEARCH_FINAL_KEYS = ("derived_valid_acc", "params_m", "flops_m", "derived_reward", "wall_time_s")


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
    search.add_argument("--metric", default="derived_valid_acc", choices=SEARCH_METRICS,
                        help="what 'default' is, per epoch and at the end (default derived_valid_acc: the derived "
                             "cell's validation accuracy in %%, per epoch the policy's cell's; derived_reward: the "
                             "reward, 0-1, accuracy x size terms)")
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
def architecture_text(family: str | None, arch: Any) -> str:
    """An architecture as the text users paste (``Genotype(...)``, ``|op~0|+...``). Reported as a JSON string
    instead (``json.dumps`` of its dict), it came out of NNI's own two layers of JSON escaped three times in
    ``nnictl trial ls`` and the web UI; this text holds no double quote to escape."""
    if isinstance(arch, str):
        return arch
    from search_spaces.families import get_family

    spec = get_family(family or "darts")
    return spec.to_text(spec.normalise(arch))


def final_search_result(doc: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """The FINAL result: ``default`` (``metric``), then the derived cell's accuracy (%), params, genotype text,
    and the rest (see the module docstring)."""
    value = doc.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        numeric = [k for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        raise UserError(f"the search reported no number {metric!r}; numeric keys: {', '.join(numeric)}")
    family = doc.get("family")
    numbers = {key: doc[key] for key in SEARCH_FINAL_KEYS
               if isinstance(doc.get(key), (int, float)) and not isinstance(doc.get(key), bool)}
    result: dict[str, Any] = {"default": float(value)}
    result.update({k: numbers.pop(k) for k in ("derived_valid_acc", "params_m") if k in numbers})
    result["genotype"] = architecture_text(family, doc["genotype"])
    result.update(numbers)
    result["family"] = family
    best = doc.get("best_sampled")
    if isinstance(best, Mapping) and "genotype" in best:
        result["best_sampled"] = architecture_text(family, best["genotype"])
        if isinstance(best.get("reward"), (int, float)):
            result["best_sampled_reward"] = best["reward"]
    result["metric"] = metric
    return result


def epoch_reporter(session: "TrialSession", metric: str = "derived_valid_acc"
                   ) -> typing.Callable[[Mapping[str, Any]], None]:
    """Each epoch's record as an NNI intermediate result whose ``default`` is ``PER_EPOCH[metric]`` (a retrain's:
    its validation accuracy, %), and one line in trial.log."""
    key = PER_EPOCH.get(metric, "valid_acc")

    def on_epoch(record: Mapping[str, Any]) -> None:
        session.report_intermediate({"default": record.get(key), **{
            k: v for k, v in record.items() if k != "default"}})
        _log_epoch(record)

    return on_epoch


def _log_epoch(record: Mapping[str, Any]) -> None:
    """trial.log's line for an epoch (the web UI's "View trial log"): where the search is and how it goes."""
    from nni_offpolicy.nni_glue.trial import logger

    def number(key: str, text: str) -> str:
        value = record.get(key)
        return text.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""

    if "stage" in record:
        where = (f"epoch {record.get('global_epoch')}/{record.get('total_epochs')} (stage {record['stage']} epoch "
                 f"{record.get('epoch')})")
    else:
        where = f"epoch {record.get('epoch')}/{record.get('epochs')}"
    parts = [number("train_loss", "train loss {:.3f}"), number("valid_acc", "valid acc {:.1f}%"),
             number("greedy_acc", "greedy cell acc {:.1f}%"), number("greedy_reward", "greedy reward {:.4f}"),
             number("greedy_params_m", "{:.3f} M params"), number("seconds", "{:.1f} s"),
             number("epoch_time_s", "{:.1f} s")]
    logger.info("%s: %s", where, ", ".join(p for p in parts if p))


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
            doc = run_search(settings, session.output_dir, on_epoch=epoch_reporter(session, args.metric),
                             progress=False, overwrite=True, shared=True)  # NNI's own files share the folder
        session.report_final(final_search_result(doc, args.metric))

    return _run_trial(body)


# ----------------------------------------------------------------------------------------------------- retrain
def _source_entry(genotype: str, index: int | None) -> dict[str, Any]:
    """The exported top-K entry a retrain trial trains (trial id, rank), when the file is one."""
    path = Path(genotype)
    if not path.suffix == ".json" or not path.is_file():
        return {}
    from nni_offpolicy.files.reading import read_json

    try:
        data = read_json(path, "genotype file")
    except UserError:
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
            result = run_retrain(settings, session.output_dir, on_epoch=epoch_reporter(session, "retrain"),
                                 progress=False, shared=True)  # NNI's own files share the folder
        final = {"default": result["test_acc"], "test_acc": result["test_acc"],
                 "best_valid_acc": result["best_valid_acc"], "params_m": result["params_m"],
                 "genotype": architecture_text(result.get("family"), result["genotype"]),
                 "family": result.get("family"),
                 **_source_entry(settings.genotype, settings.index)}
        session.report_final(final)

    return _run_trial(body)

