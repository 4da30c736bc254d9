"""``nni-offpolicy export``: the top-K architectures of an NNI experiment, with hyperparameters and metrics.

Works on a running experiment (asks its manager over REST; the port comes from nnictl's experiment list) and on
a stopped one (reads ``<experiment dir>/db/nni.sqlite``). The output is written atomically and only when
everything checked out; ``retrain --genotype FILE --index N`` and ``experiments/retrain.yml`` read it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nni_offpolicy.files.atomic import atomic_write_text, check_writable_file  # torch-free: export stays light
from nni_offpolicy.errors import UserError
from nni_offpolicy.tools.export import export_top


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the top-K architectures of an NNI experiment",
                                   description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--experiment", "-e", required=True, metavar="ID", help="NNI experiment id")
    parser.add_argument("--top", "-k", type=int, default=3, metavar="K", help="how many (default 3)")
    parser.add_argument("--metric", default="default", metavar="NAME",
                        help="numeric key of the trials' final results to rank by (default: 'default', what the "
                             "tuner optimised)")
    parser.add_argument("--minimize", action="store_true", help="lower is better (default: higher is better)")
    parser.add_argument("--experiment-dir", metavar="DIR",
                        help="the experiment's directory or its parent (experimentWorkingDirectory) when it is "
                             "not in nnictl's experiment list")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="output JSON file ('-' = stdout)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    if args.output != "-":
        check_writable_file(args.output)  # before the experiment is read, not after
    doc = export_top(args.experiment, top=args.top, metric=args.metric, mode="min" if args.minimize else "max",
                     experiment_dir=args.experiment_dir)
    text = json.dumps(doc, indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(text, Path(args.output))
    archs = doc["architectures"]
    missing = [a["trial_id"] for a in archs if a["genotype"] is None]
    summary = ", ".join(f"#{a['rank']} {a['trial_id']} {doc['metric']}={a['metrics'].get(doc['metric'])}"
                        for a in archs)
    print(f"exported {len(archs)} of {doc['ranked_trials']} ranked trial(s) of {doc['experiment']} "
          f"({doc['source']}) by {doc['metric']}: {summary}" + ("" if args.output == "-" else f" -> {args.output}"),
          file=sys.stderr)
    if missing:
        print(f"warning: trial(s) {', '.join(missing)} reported no genotype", file=sys.stderr)
    return 0
