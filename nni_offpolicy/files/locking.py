"""One run per output folder: an exclusive ``flock`` on ``<folder>/.nni-offpolicy.lock``.

Two runs writing the same checkpoint, metrics and genotype files would corrupt each other's results without any
error; the second one refuses at once instead. ``flock`` belongs to the open file, so the kernel releases it
when the process ends in any way (kill -9 included): there is never a stale lock to clean up by hand. The lock
file itself stays (an empty file); removing it would let two processes lock two different inodes.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from nni_offpolicy.errors import UserError

LOCK_NAME = ".nni-offpolicy.lock"


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str = "run") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (making the folder if needed). A folder this call made is
    removed again when the block fails and left nothing but the lock, so bad input leaves no empty folder.
    Raises ``UserError`` (one line) when another process holds the lock."""
    folder = Path(folder)
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"cannot use output folder {folder}: {exc.strerror or exc}") from None
    failed = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise UserError(f"{folder} is in use by another {command}" + (f" (pid {holder})" if holder else "")
                            + "; wait for it to end or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message above; the lock itself is the flock
        try:
            yield folder
        except BaseException:
            failed = True
            raise
    finally:
        os.close(fd)  # releases the flock
        if made and failed:
            with contextlib.suppress(OSError):
                if [p.name for p in folder.iterdir()] == [LOCK_NAME]:
                    (folder / LOCK_NAME).unlink()
                    folder.rmdir()
