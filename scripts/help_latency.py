#!/usr/bin/env python
"""How long ``nni-offpolicy --help`` and each sub-command's ``--help`` take, wall time of a fresh process each.

    python scripts/help_latency.py            # 3 runs per command, prints the median and the slowest
    python scripts/help_latency.py --runs 5

A benchmark, not a test: the time depends on the machine and its load. What the unit test checks instead is
the cause (tests/test_outputs.py: building the parser imports neither torch nor NNI).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nni_offpolicy.cli import COMMANDS  # noqa: E402 (the package from this checkout)


def time_help(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nni_offpolicy.cli", *argv, "--help"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv) or '(top level)'} --help failed: {done.stderr.strip()}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per command (default 3)")
    args = parser.parse_args()
    baseline = time_help_python(args.runs)
    print(f"{'command':<36} {'median s':>9} {'max s':>7}")
    print(f"{'python -c pass (floor)':<36} {statistics.median(baseline):9.2f} {max(baseline):7.2f}")
    for argv in [[], *([c] for c in COMMANDS), ["trial", "search"], ["trial", "retrain"]]:
        times = time_help(argv, args.runs)
        name = " ".join(["nni-offpolicy", *argv, "--help"])
        print(f"{name:<36} {statistics.median(times):9.2f} {max(times):7.2f}", flush=True)
    return 0


def time_help_python(runs: int) -> list[float]:
    """The interpreter's own start-up, the floor no --help can go under."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


if __name__ == "__main__":
    sys.exit(main())
