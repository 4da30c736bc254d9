"""What a run depends on besides its settings, recorded in its checkpoint: a resume whose inputs changed is refused.

Settings are compared on resume (``settings.resume_differences``), but a search also reads files the settings only
name: the reward table (``reward_table``), the metric's module (``metric``) and an image folder or archive
(``dataset: imagefolder:PATH``). Rewritten after a kill, a resumed search would silently mix two of them (a table's
values changed under a resume derived 34.11 against 45.11). Each is recorded as an identity:

- the reward table and the metric module: the SHA-256 of the file's bytes;
- an image folder or archive: its path, size and modification time (every file's, for a folder), as the decoded
  cache is keyed (``data.archive.imagefolder_cache_path``); hashing 60,000 JPEGs at every resume would cost more
  than it guards.

A checkpoint written before this (no ``inputs``) is resumed as before, unchecked.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from nni_offpolicy.errors import UserError

_CHUNK = 1 << 20
WHAT = {"reward_table": "the reward table", "metric": "the metric's module", "dataset": "the dataset"}


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _metric_file(spec: str) -> Path | None:
    """The file a ``module:function`` metric's module is loaded from (as ``rewards.load_metric`` finds it, the
    working directory last), without importing it; None for a module that is not a file."""
    module = spec.partition(":")[0].strip()
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None)
    if origin is None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None and os.getcwd() not in sys.path:
            candidate = Path.cwd() / (module.replace(".", os.sep) + ".py")
            return candidate if candidate.is_file() else None
        origin = found.origin if found is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def dataset_identity(spec: str) -> str | None:
    """An image folder's or archive's identity (path, size, modification times; ``cifar10-jpeg`` is the archive
    it names); None for the built-in datasets, which their name (a setting) already identifies."""
    if spec == "cifar10-jpeg":  # the shared archive load_dataset finds: an image archive like any other
        from nni_offpolicy.data.datasets import local_cifar10_archive

        try:
            spec = f"imagefolder:{local_cifar10_archive()}"
        except UserError:  # not found: the run itself says so
            return None
    if not spec.startswith("imagefolder:") or not spec[len("imagefolder:"):]:
        return None
    path = Path(spec[len("imagefolder:"):]).expanduser().resolve()
    if path.is_dir():
        from nni_offpolicy.data.archive import folder_stats

        count, size, mtime = folder_stats(path)
        return f"{path}: {count} files, {size} bytes, newest {mtime}"
    if path.is_file():
        st = path.stat()
        return f"{path}: {st.st_size} bytes, modified {st.st_mtime_ns}"
    return None


def run_inputs(dataset: str | None = None, reward_table: str | None = None, metric: str | None = None
               ) -> dict[str, str]:
    """The identities of the files a run reads besides its settings (only those it reads)."""
    inputs: dict[str, str] = {}
    if reward_table:
        from nni_offpolicy.data.tables import split_spec

        path = Path(split_spec(reward_table)[0]).expanduser()
        if path.is_file():
            inputs["reward_table"] = file_digest(path)
    if metric:
        path = _metric_file(metric)
        if path is not None:
            inputs["metric"] = file_digest(path)
    if dataset:
        identity = dataset_identity(dataset)
        if identity is not None:
            inputs["dataset"] = identity
    return inputs


def search_inputs(settings: Any) -> dict[str, str]:
    """A search's inputs: its dataset (unless the table source reads none), reward table and metric module."""
    table = settings.reward_source == "table"
    return run_inputs(None if table else settings.dataset, settings.reward_table if table else None, settings.metric)


def check_resume_inputs(saved: Any, now: Mapping[str, str], path: Path) -> None:
    """One line naming what changed since the checkpoint at ``path`` was written; nothing for a checkpoint written
    before inputs were recorded (``saved`` None)."""
    if saved is None:
        return
    if not isinstance(saved, Mapping):
        raise UserError(f"checkpoint {path}: its record of the run's inputs is damaged; start again with --overwrite")
    changed = [k for k in sorted({*saved, *now}) if saved.get(k) != now.get(k)]
    if changed:
        names = ", ".join(WHAT.get(k, k) for k in changed)
        raise UserError(f"--resume: {names} changed since {path} was written (the run would mix the old and the "
                        f"new); restore it, or start again with --overwrite")
