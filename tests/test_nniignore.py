"""experiments' .nniignore, read as NNI 3.0 reads it. Its own module: it needs neither nnictl nor sshd, so the
skip marks of test_remote (where it used to live) no longer hide it."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def nniignore_patterns() -> list[str]:
    lines = (REPO / ".nniignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_nniignore_patterns_match_directories_as_nni_reads_them():
    """NNI 3.0 checks .nniignore against directory paths without their trailing slash (``ignore`` 5.x then treats
    them as files) and tar-packs every directory it did not skip *recursively*. A ``dir/`` pattern therefore skips
    nothing: ``.venv/`` would upload the whole virtual environment. Patterns must name the top-level entry."""
    patterns = nniignore_patterns()
    assert {".venv", ".git", "runs"} <= set(patterns), patterns
    assert not [p for p in patterns if p.endswith("/")], patterns
