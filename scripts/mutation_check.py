#!/usr/bin/env python
"""Does the test suite notice when the search stops working? Break it on purpose, one way at a time, and see.

    python scripts/mutation_check.py            # every breakage
    python scripts/mutation_check.py --list     # their names
    python scripts/mutation_check.py --only controller-update-skipped,retrain-no-step

For each named breakage: copy the repository (its tracked and untracked, not ignored, files) to a scratch
directory, apply the breakage there as exact source-string replacements (a replacement whose target string is
not found, or is found a different number of times than expected, stops the script: the breakage would
silently test nothing), and run the tests that guard it with ``PYTHONPATH`` pointing at the scratch copy. A
breakage is *caught* when those tests fail. First the same tests run on the unbroken copy: they must pass, or
a failure under a breakage would mean nothing.

Prints one line per breakage and exits 1 when any breakage went uncaught (2 when the baseline fails or a
breakage no longer applies). Run with the environment the suite runs in (the interpreter running this script).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEARNING = "tests/test_learning.py"
SUPERNET_LEARNS = (f"{LEARNING}::test_path_mode_supernet_beats_chance_on_separable_textures",
                   f"{LEARNING}::test_mixed_mode_supernet_beats_chance_on_separable_textures")
RETRAIN_LEARNS = (f"{LEARNING}::test_retrain_of_a_fixed_cell_beats_chance_on_separable_textures",)
PLANTED = (f"{LEARNING}::test_search_derives_the_planted_best_op_on_most_edges",)


@dataclass(frozen=True)
class Breakage:
    name: str
    what: str
    edits: tuple[tuple[str, str, str, int], ...]  # (file, exact old text, new text, expected occurrences)
    tests: tuple[str, ...]  # pytest node ids or files, relative to the repository


BREAKAGES = (
    Breakage("search-no-weight-step", "the search's weight optimiser never steps",
             (("nni_offpolicy/search/loop.py", "        self.optimizer.step()\n", "        pass\n", 1),),
             SUPERNET_LEARNS),
    Breakage("retrain-no-step", "retraining never updates the weights",
             (("nni_offpolicy/retrain.py", "                self.optimizer.step()\n", "                pass\n", 1),),
             RETRAIN_LEARNS),
    Breakage("controller-update-skipped", "the search loop never applies a REINFORCE update",
             (("nni_offpolicy/search/learners.py", "return controller.update(samples, torch.tensor(rewards))",
               "return {}", 1),),
             PLANTED),
    Breakage("truncation-removed", "per-decision and trajectory importance weights are not truncated",
             (("nni_offpolicy/search/controller.py", "weights = ratio.clamp(max=truncation)", "weights = ratio", 2),),
             ("tests/test_controller.py::test_truncation_caps_weights",)),
    Breakage("metric-term-dropped", "the reward leaves out the custom metric term",
             (("nni_offpolicy/search/rewards.py", '                 ("metric", s.metric_target, s.metric_exponent),\n',
               "", 1),),
             (*PLANTED, "tests/test_rewards.py")),
    Breakage("derive-first-op", "derivation takes each edge's first op instead of its most probable one",
             (("nni_offpolicy/search/progressive.py", "return max(allowed, key=lambda o: (p[o], -ops.index(o))) if allowed "
               "else None", "return allowed[0] if allowed else None", 1),
              ("nni_offpolicy/search/progressive.py", 'max(ops, key=lambda o: (probs[f"{kind}/op_{key}"][o], -ops.index(o)))',
               "ops[0]", 1)),
             (*PLANTED, "tests/test_search.py::test_derivation_limits_skip_connects_and_drops_none")),
    Breakage("resume-loses-controller", "a resumed stage starts from a fresh controller, not the checkpoint's",
             (("nni_offpolicy/search/loop.py", '        self.controller.load_state(state["controller"])\n',
               "        pass\n", 1),),
             ("tests/test_search.py::test_killed_search_resumes_to_the_same_genotype",
              "tests/test_mixed_mode.py::test_mixed_search_killed_in_stage_2_resumes_to_the_same_result")),
    Breakage("budget-shrink-unchecked", "the shrink keeps its top ops even where no cell of them meets the budget",
             (("nni_offpolicy/search/loop.py", "fits=fits, op_price=fits.op_params if fits else None)",
               "fits=None)", 1),),
             ("tests/test_budget.py::test_a_late_budget_over_a_space_of_one_op_per_edge_still_ends_within_it",)),
)


def copy_repo(dest: Path) -> None:
    """The working tree as git sees it (tracked plus untracked, not ignored): no .git, caches or venvs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def apply(copy: Path, breakage: Breakage, dry_run: bool = False) -> None:
    """Every edit of ``breakage`` on the tree at ``copy``; ``dry_run``: only check that each target is there."""
    for rel, old, new, expected in breakage.edits:
        path = copy / rel
        text = path.read_text()
        found = text.count(old)
        if found != expected:
            raise SystemExit(f"mutation_check: breakage {breakage.name}: {rel} holds {found} copies of "
                             f"{old!r}, expected {expected}; update the breakage to today's source")
        if not dry_run:
            path.write_text(text.replace(old, new))


def run_tests(copy: Path, tests: tuple[str, ...], stop_early: bool) -> tuple[bool, float, str, list[str]]:
    """(passed, seconds, pytest's last line, the failing tests' ids)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-n0", *(["-x"] if stop_early else []),
                           "-p", "no:cacheprovider", *tests], cwd=copy, env=env, capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [line.split()[1].split("::", 1)[-1] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return proc.returncode == 0, time.time() - started, lines[-1] if lines else "", failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the breakages and exit")
    parser.add_argument("--only", help="comma-separated breakage names")
    parser.add_argument("--fast", action="store_true",
                        help="stop each breakage's tests at the first failure (-x): faster, names one catcher")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="pytest processes at a time (default: one per CPU)")
    args = parser.parse_args(argv)
    if args.list:
        for b in BREAKAGES:
            print(f"{b.name:28s} {b.what}")
        return 0
    chosen = list(BREAKAGES)
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - {b.name for b in BREAKAGES}
        if unknown:
            print(f"mutation_check: unknown breakage(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        chosen = [b for b in BREAKAGES if b.name in names]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as scratch:
        scratch = Path(scratch)
        baseline = scratch / "baseline"
        copy_repo(baseline)
        for b in chosen:  # every breakage still applies to today's source, before anything runs
            apply(baseline, b, dry_run=True)
        guarded = tuple(dict.fromkeys(t for b in chosen for t in b.tests))

        def broken(b: Breakage) -> tuple[bool, float, str, list[str]]:
            copy = scratch / b.name
            copy_repo(copy)
            apply(copy, b)
            try:
                return run_tests(copy, b.tests, stop_early=args.fast)
            finally:
                shutil.rmtree(copy)

        # The baseline and the breakages are independent pytest processes of one thread each: they run
        # side by side (--jobs), and the verdicts wait for the baseline, so a failing baseline still voids them.
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            base = pool.submit(run_tests, baseline, guarded, False)
            results = [pool.submit(broken, b) for b in chosen]
            ok, seconds, tail, failing = base.result()
            print(f"baseline (unbroken)          {'passed' if ok else 'FAILED'} in {seconds:.0f}s  {tail}"
                  + ("" if ok else f"\n{'':28s} failing: {', '.join(failing)}"), flush=True)
            if not ok:
                for future in results:
                    future.cancel()
                print("mutation_check: the guarding tests fail without any breakage; fix that first", file=sys.stderr)
                return 2
            missed = []
            for b, future in zip(chosen, results):
                passed, seconds, tail, failed = future.result()
                print(f"{b.name:28s} {'NOT CAUGHT' if passed else 'caught'} in {seconds:.0f}s  ({b.what})"
                      + ("" if passed else f"\n{'':28s} by {', '.join(failed) or tail}"), flush=True)
                if passed:
                    missed.append(b.name)
    print(f"{len(chosen) - len(missed)} of {len(chosen)} breakages caught in {time.time() - started:.0f}s"
          + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
