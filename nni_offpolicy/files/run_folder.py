"""What a run may do to its output folder: write only where nothing of anyone else's can be lost.

A run (a search, a retrain, an ablation grid, a bench) writes only into

- a folder that does not exist yet, or an empty one (our lock file aside);
- a folder of its own kind, which ``.nni-offpolicy-run.json`` names: it may resume it, or start it again with
  ``--overwrite``; the user's files beside the run's stay where they are;
- its own new sub-names (ablate's ``<variant>/seed<k>/``, bench's ``<mode>-<precision>/``), each again one of these.

Anything else there is refused in one line naming what is in the way, before anything is written (not even the
lock file). ``--overwrite`` removes only what the kind writes: its files by name, and inside its folders
(``tensorboard/``) only the event files a TensorBoard writer makes. A name of the kind's that is of the wrong sort
(a folder called ``metrics.jsonl``, a file called ``tensorboard``, a symbolic link) was not made by the run and is
in the way too. A folder an earlier version made has no marker: it is taken as the kind's own when everything in
it is a name the kind writes and its run is there (a checkpoint or a result).

A search or retrain folder that holds a checkpoint (a resumable run) or a final result (a finished run) is never
emptied unless the user says so with ``--overwrite``: forgetting ``--resume`` after a kill, or reusing an
``--output`` by mistake, would otherwise delete hours of training (``refuse_existing_run``).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from nni_offpolicy.errors import UserError
from nni_offpolicy.files.atomic import atomic_write_text, remove_stale_temps
from nni_offpolicy.files.locking import LOCK_NAME

GENOTYPE_FILE = "genotype.json"  # a finished search's result document: search writes it, ablate and lookup read it
MARKER = ".nni-offpolicy-run.json"  # {"kind": "search"}: which kind of run the folder belongs to
_EVENTS = re.compile(r"^events\.out\.tfevents\.")  # what a TensorBoard SummaryWriter names its files
_RUN_FILES = ("checkpoint.pt", GENOTYPE_FILE, "result.json", MARKER)  # what shows that a folder holds a run
_SHOWN = 3  # names listed in a refusal


@dataclass(frozen=True)
class FolderKind:
    """What one kind of run writes at the top of its folder.

    ``files`` are plain files it writes (and ``--overwrite`` removes); ``folders`` are folders it writes event
    files into (only those files are ever removed); ``markers`` maps a file to what it shows, ``"resumable"`` (a
    checkpoint) or ``"finished"`` (a result); ``runs`` are sub-folders holding runs of their own (ablate's variants,
    bench's measurements), which are checked by those runs and never removed."""

    name: str
    files: tuple[str, ...]
    folders: tuple[str, ...] = ()
    markers: Mapping[str, str] = field(default_factory=dict)
    runs: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return {*self.files, *self.folders, *self.runs}


def check_resume_flags(resume: bool, overwrite: bool) -> None:
    """Both at once has no meaning: refused rather than one of them silently winning."""
    if resume and overwrite:
        raise UserError("--resume continues the run in --output and --overwrite discards it: give one of them")


def _show(name: str) -> str:
    """A name as a message may show it: printable, and short however long it is."""
    text = name if name.isprintable() else ascii(name)[1:-1]
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(names: list[str]) -> str:
    shown = ", ".join(_show(n) for n in sorted(names)[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def folder_kind(folder: Path) -> str | None:
    """The kind named by ``folder``'s marker (None without one); a damaged marker is one line."""
    path = folder / MARKER
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    kind = None
    if stat.S_ISREG(info.st_mode) and info.st_size <= 4096:
        try:
            doc = json.loads(path.read_text())
            kind = doc.get("kind") if isinstance(doc, dict) else None
        except (OSError, ValueError):
            kind = None
    if not isinstance(kind, str) or not kind:
        raise UserError(f"{path} is damaged, so what made {folder} is unknown; choose another --output")
    return kind


def _holds_a_run(path: Path, depth: int = 2) -> bool:
    """Whether ``path`` (or a folder up to ``depth`` below it) holds a run's checkpoint, result or marker."""
    if not path.is_dir() or path.is_symlink():
        return False
    if any((path / name).exists() for name in _RUN_FILES):
        return True
    return depth > 0 and any(_holds_a_run(child, depth - 1) for child in path.iterdir())


def _entries(folder: Path, kind: FolderKind) -> list[str]:
    """The folder's names that count: our lock, marker and a killed writer's temporaries of our names aside."""
    ours = {f".{name}.tmp" for name in (*kind.files, MARKER)}
    return [p.name for p in folder.iterdir()
            if p.name not in (LOCK_NAME, MARKER) and not any(p.name.startswith(t) and p.name[len(t):].isdigit()
                                                             for t in ours)]


def _wrong_sort(folder: Path, kind: FolderKind) -> tuple[str, str] | None:
    """A name of the kind's that the kind did not make: a folder where it writes a file, a file where it writes a
    folder, or a symbolic link (it makes none)."""
    wanted = {**{n: "file" for n in kind.files}, **{n: "folder" for n in (*kind.folders, *kind.runs)}}
    for name, sort in wanted.items():
        path = folder / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            return name, "a symbolic link"
        is_sort = stat.S_ISREG(mode) if sort == "file" else stat.S_ISDIR(mode)
        if not is_sort:
            return name, "a folder" if stat.S_ISDIR(mode) else ("a file" if stat.S_ISREG(mode) else "not a file")
    return None


def check_run_folder(folder: Path, kind: FolderKind, shared: bool = False) -> str:
    """Raise ``UserError`` (one line naming what is in the way) unless ``kind`` may write into ``folder``; reads
    only. Returns ``"new"`` (missing or empty), ``"own"`` (its marker, or an earlier version's run of this kind)
    or ``"shared"``. ``shared``: the folder was handed to this run (an NNI trial's output folder, where NNI keeps
    its own files): other names are left alone rather than refused."""
    if not folder.exists():
        return "new"
    other = folder_kind(folder)
    if other is not None and other != kind.name:
        raise UserError(f"{folder} holds a{'n' * (other[0] in 'aeiou')} {other} run ({MARKER}); a {kind.name} "
                        f"never writes into it: choose another --output")
    wrong = _wrong_sort(folder, kind)
    if wrong is not None:
        raise UserError(f"{folder / wrong[0]} is {wrong[1]}, which no {kind.name} makes, and is in the way of the "
                        f"{kind.name}'s own {wrong[0]}: move it away or choose another --output")
    if other == kind.name:
        return "own"
    entries = _entries(folder, kind)
    if shared:
        return "shared"
    if not entries:
        return "new"
    foreign = [n for n in entries if n not in kind.names()]
    earlier = any((folder / n).exists() for n in kind.markers) or any(_holds_a_run(folder / n) for n in kind.runs)
    if not foreign and earlier:
        return "own"  # a folder an earlier version made, before the marker
    if foreign:
        raise UserError(f"{folder} holds {_listing(foreign)}, which no {kind.name} wrote; a {kind.name} writes only "
                        f"into an empty folder or one of its own: choose another --output")
    raise UserError(f"{folder} holds {_listing(entries)} that no {kind.name} wrote there (no {MARKER}); a "
                    f"{kind.name} writes only into an empty folder or one of its own: choose another --output")


def refuse_existing_run(folder: Path, markers: Mapping[str, str], overwrite: bool, noun: str = "run") -> None:
    """``UserError`` when ``folder`` holds any of ``markers`` and ``overwrite`` is off. ``markers`` maps a file
    name to what it shows: ``"resumable"`` (a checkpoint) or ``"finished"`` (a final result)."""
    found = [name for name in markers if (folder / name).exists()]
    if found and not overwrite:
        kind = "finished" if any(markers[name] == "finished" for name in found) else "resumable"
        raise UserError(f"{folder} already holds a {kind} {noun} ({', '.join(found)}); continue it with --resume, "
                        f"discard it with --overwrite, or choose another --output")


def claim_run_folder(folder: Path, kind: FolderKind, clear: bool) -> None:
    """After every check passed: mark ``folder`` as ``kind``'s, remove a killed writer's temporaries of its names,
    and with ``clear`` a previous run of this kind (its files by name, and the event files in its folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder, (*kind.files, MARKER))
    if folder_kind(folder) != kind.name:
        atomic_write_text(json.dumps({"kind": kind.name, "format": 1}) + "\n", folder / MARKER)
    if not clear:
        return
    for name in kind.files:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    for name in kind.folders:
        path = folder / name
        if not path.is_dir() or path.is_symlink():
            continue
        for entry in path.iterdir():
            if _EVENTS.match(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink()
        if not any(path.iterdir()):
            path.rmdir()
