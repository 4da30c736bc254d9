"""The one way the product writes a file: a temporary file in the same folder, fsync, ``os.replace``.

A reader (or a resumed run) then sees either the old file or the whole new one, never half of one, whatever kills
the writer. The temporary file is removed on any failure; one left behind by a killed process is named
``.<name>.tmp<pid>`` so that the next run in that folder can recognise and remove it (``remove_stale_temps``).
Kept free of torch so that every command can use it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Callable, Iterable

from nni_offpolicy.errors import UserError

_TEMP = re.compile(r"^\..+\.tmp(\d+)$")


def temp_path(path: Path) -> Path:
    """Where ``path``'s new content is written before it is moved in: hidden, and named after this process so
    that ``remove_stale_temps`` can tell a dead writer's leftovers from a live one's."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a binary handle to a temporary file next to ``path``, fsync it, then move it
    over ``path``. The temporary file is created with the umask's permissions (as ``open`` would) and removed
    when anything fails, so a failed write leaves ``path`` as it was and nothing else behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    """``data`` as the whole new content of ``path`` (see ``atomic_write``)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """``text`` (UTF-8) as the whole new content of ``path`` (see ``atomic_write``)."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_append_line(line: str, path: str | Path) -> Path:
    """Append one line by rewriting the whole (small) file atomically: a kill mid-write never leaves half a
    line that a later reader or a resumed run would choke on."""
    path = Path(path)
    before = path.read_bytes() if path.exists() else b""
    if before and not before.endswith(b"\n"):
        before += b"\n"
    return atomic_write_bytes(before + line.rstrip("\n").encode("utf-8") + b"\n", path)


def remove_stale_temps(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove ``.<name>.tmp<pid>`` files that a killed writer left in ``folder`` (not this process's own), for
    the ``names`` this product writes there only: another program's ``.notes.tmp123`` is not ours to remove.
    Call it only while holding the folder's lock, so no live writer of this product owns them."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    ours = set(names)
    for entry in folder.iterdir():
        match = _TEMP.match(entry.name)
        if match and entry.name[1:-len(f".tmp{match.group(1)}")] in ours and int(match.group(1)) != os.getpid() \
                and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _nearest_existing(path: Path, flag: str, target: Path) -> Path:
    """The nearest of ``path`` and its parents that is there; a symbolic link that leads nowhere (a loop, a
    missing target) is one line naming it, not mkdir's "File exists" later."""
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    if path.is_symlink() and not path.exists():
        what = f"{flag} {target} is" if path == target else f"{flag} {target} cannot be made: {path} is"
        raise UserError(f"{what} a symbolic link that leads nowhere (a loop, or a missing target)")
    return path


def check_writable_folder(folder: str | Path, flag: str = "--output") -> Path:
    """Raise ``UserError`` unless ``folder`` is (or can be made as) a writable folder; creates nothing. Checked
    before any work, so an unwritable output never costs a run."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder; choose a folder")
    probe = _nearest_existing(folder, flag, folder)
    if not probe.is_dir():
        raise UserError(f"{flag} {folder} cannot be made: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder} is not writable ({probe} does not allow writing)")
    return folder


def check_writable_file(path: str | Path, flag: str = "--output") -> Path:
    """Raise ``UserError`` unless ``path`` can be written as a file (its folder exists or can be made, and is
    writable; ``path`` itself is not a folder); creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    probe = _nearest_existing(path.parent, flag, path)
    if not probe.is_dir():
        raise UserError(f"{flag} {path} cannot be written: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path} is not writable")
    return path
