"""What a run may do to an output folder that already holds a run.

A search or retrain folder that holds a checkpoint (a resumable run) or a final result (a finished run) is
never emptied unless the user says so with ``--overwrite``: forgetting ``--resume`` after a kill, or reusing an
``--output`` by mistake, would otherwise delete hours of training. The check reads only; ``clear_run`` deletes,
and is called after every other check has passed.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Mapping

from nni_offpolicy.errors import UserError

GENOTYPE_FILE = "genotype.json"  # a finished search's result document: search writes it, ablate and lookup read it


def check_resume_flags(resume: bool, overwrite: bool) -> None:
    """Both at once has no meaning: refused rather than one of them silently winning."""
    if resume and overwrite:
        raise UserError("--resume continues the run in --output and --overwrite discards it: give one of them")


def refuse_existing_run(folder: Path, markers: Mapping[str, str], overwrite: bool, noun: str = "run") -> None:
    """``UserError`` when ``folder`` holds any of ``markers`` and ``overwrite`` is off. ``markers`` maps a file
    name to what it shows: ``"resumable"`` (a checkpoint) or ``"finished"`` (a final result)."""
    found = [name for name in markers if (folder / name).exists()]
    if found and not overwrite:
        kind = "finished" if any(markers[name] == "finished" for name in found) else "resumable"
        raise UserError(f"{folder} already holds a {kind} {noun} ({', '.join(found)}); continue it with --resume, "
                        f"discard it with --overwrite, or choose another --output")


def clear_run(folder: Path, files: Iterable[str], folders: Iterable[str] = ()) -> None:
    """Remove a previous run's files (only after ``refuse_existing_run`` and every other check passed)."""
    for name in files:
        (folder / name).unlink(missing_ok=True)
    for name in folders:
        shutil.rmtree(folder / name, ignore_errors=True)
