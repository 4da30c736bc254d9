"""``nni-offpolicy retrain``: train a searched architecture from scratch (DARTS/P-DARTS evaluation protocol).

One option per ``RetrainSettings`` field, generated from the dataclass (``--batch-size`` for ``batch_size``,
``--no-auxiliary`` for ``auxiliary``); options left out keep the dataclass defaults, or with ``--resume`` the
settings stored in the checkpoint.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from search_spaces.genotypes import is_existing_file_name

from nni_offpolicy.errors import UserError
from nni_offpolicy.files.atomic import check_writable_folder
from nni_offpolicy.files.run_folder import check_run_folder
from nni_offpolicy.retrain_settings import RetrainSettings  # torch-free: --help stays fast


_METAVARS = {"genotype": "FILE|NAME", "dataset": "D", "data_dir": "DIR", "device": "cpu|cuda|auto"}


def _scalar_type(hint: typing.Any) -> type:
    """``int | None`` -> ``int``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(RetrainSettings)
    for f in fields(RetrainSettings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        kind = _scalar_type(hints[f.name])
        if kind is bool:
            if f.default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    default=argparse.SUPPRESS, help=f"no {help_text}")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                                    help=help_text)
            continue
        shown = "" if f.default is MISSING or f.default is None else f" (default {f.default})"
        metavar = _METAVARS.get(f.name) or {int: "N", float: "X"}.get(kind, "S")
        parser.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS, metavar=metavar,
                            help=help_text + shown)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain", help="retrain a searched architecture from scratch",
        description=__doc__.splitlines()[0].split(": ", 1)[1])
    add_settings_options(parser)
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="output folder (default runs/retrain-<genotype name or file stem>)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard a finished or resumable retrain already in DIR (refused without it)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=main)


def default_output_dir(genotype: str, index: int | None) -> Path:
    """``runs/retrain-<name>``: a built-in name or a file's stem; a pasted Genotype/arch string gets a hash."""
    path = Path(genotype)
    if re.fullmatch(r"[\w.-]+", genotype) and not path.suffix:
        name = genotype
    elif genotype.lstrip().startswith(("Genotype(", "|")):  # pasted text: never asked of the file system
        name = "arch-" + hashlib.sha1(genotype.strip().encode()).hexdigest()[:8]
    elif path.suffix == ".json" or is_existing_file_name(path):
        name = path.stem
    else:
        name = "arch-" + hashlib.sha1(genotype.strip().encode()).hexdigest()[:8]
    return Path("runs") / (f"retrain-{name}" + (f"-{index}" if index is not None else ""))


def main(args: argparse.Namespace) -> int:
    from nni_offpolicy.retrain import RETRAIN_FOLDER, checkpoint_settings, run_retrain

    given = {f.name: getattr(args, f.name) for f in fields(RetrainSettings) if hasattr(args, f.name)}
    if "genotype" not in given and not (args.resume and args.output):
        raise UserError("--genotype is required (a built-in name, a Genotype(...) string, an arch string or a "
                        "JSON file); with --resume and --output it is read from the checkpoint")
    output = Path(args.output) if args.output else default_output_dir(given["genotype"], given.get("index"))
    if args.resume:  # what is in the way is said before the checkpoint is read
        check_run_folder(check_writable_folder(output), RETRAIN_FOLDER)
    base = checkpoint_settings(output) if args.resume else None
    if args.resume and base is None:
        raise UserError(f"nothing to resume: {output / 'checkpoint.pt'} does not exist")
    known = {f.name for f in fields(RetrainSettings)}
    settings = RetrainSettings(**{**{k: v for k, v in (base or {}).items() if k in known}, **given})
    result = run_retrain(settings, output, resume=args.resume, progress=args.progress, overwrite=args.overwrite)
    print(f"retrain {settings.genotype}: test acc {result['test_acc']:.2f} % "
          f"(best valid {result['best_valid_acc']:.2f} % on {result['valid_split']}), "
          f"{result['params_m']:.3f} M params, {result['epochs']} epoch{'s' * (result['epochs'] != 1)} in "
          f"{result['wall_time_s']:.1f} s")
    print(f"output: {output}")
    sys.stdout.flush()
    return 0
