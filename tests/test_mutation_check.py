"""The suite bites: scripts/mutation_check.py breaks a scratch copy of the repository in eight named ways (weight
step in search and in retrain, controller update, truncation, metric term, derivation's best op, controller
restore on resume, the budget-keeping shrink) and every one must make its guarding tests fail. Run as part of
the suite so CI sees a breakage going uncaught the day a test is weakened (about 1 min on 2 cores: one pytest
process per core)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_listed_breakage_is_caught_by_the_suite():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "mutation_check.py"), "--fast"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    names = subprocess.run([sys.executable, str(REPO / "scripts" / "mutation_check.py"), "--list"], cwd=REPO,
                           capture_output=True, text=True, timeout=60).stdout
    listed = [line.split()[0] for line in names.splitlines() if line.strip()]
    assert len(listed) >= 8
    for name in listed:
        assert any(line.split()[:2] == [name, "caught"] for line in done.stdout.splitlines()), name
