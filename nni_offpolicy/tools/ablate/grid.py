"""The grid: planned (every check before anything is trained or written), run (its searches one after another or
side by side, then its retrains) and resumed (a finished run skipped, a killed one resumed from its checkpoint,
after checking either was made with these settings), then reported. The top of the package: it uses the others,
none uses it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from nni_offpolicy.errors import UserError
from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.files.atomic import check_writable_folder
from nni_offpolicy.files.locking import output_lock
from nni_offpolicy.files.run_folder import GENOTYPE_FILE, FolderKind, check_run_folder, claim_run_folder
from nni_offpolicy.retrain import coerce_overrides
from nni_offpolicy.search.loop import CHECKPOINT, run_search
from nni_offpolicy.settings import SearchSettings, load_settings, resume_differences
from nni_offpolicy.tools.ablate.judging import (check_budgets, open_grid_surrogate, open_grid_table, last_trained_stage,
                                                run_row, surrogate_values, table_values)
from nni_offpolicy.tools.ablate.plan import Log, Plan, Run
from nni_offpolicy.tools.ablate.report import write_outputs
from nni_offpolicy.tools.ablate.retrains import (RETRAIN_RESERVED, check_retrain, check_retrain_data, retrain_cell,
                                                 retrain_settings)
from nni_offpolicy.tools.ablate.variants import (REFERENCE_DIR, REFERENCE_GENOTYPE, RESERVED, VARIANTS, parse_seeds,
                                                 parse_variants, variant_overrides)


def plan_ablation(preset: str = "demo", variants: str | Sequence[str] = tuple(VARIANTS),
                  seeds: str | Sequence[int] = (0, 1, 2), epsilon: float = 0.3,
                  overrides: Mapping[str, Any] | None = None, output: str | Path | None = None,
                  retrain_epochs: int | None = None, retrain_overrides: Mapping[str, Any] | None = None,
                  space: str | None = None, table: str | None = None, surrogate: str | None = None) -> Plan:
    """Check everything (variants, seeds, every run's settings, what an earlier grid left in ``output``) before
    anything is trained or written; raise ``UserError`` with one line on bad input."""
    variants = parse_variants(variants)
    seeds = parse_seeds(seeds)
    if not 0.0 <= epsilon <= 1.0:
        raise UserError(f"--epsilon must be in [0, 1], got {epsilon}")
    overrides = {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    for key, flag in RESERVED.items():
        if key in overrides:
            raise UserError(f"--set {key}: the harness sets it per run; use {flag}")
    if space is not None:
        overrides["space"] = space
    overrides.setdefault("progress", False)
    if retrain_epochs is not None and retrain_epochs < 1:
        raise UserError(f"--retrain-epochs must be >= 1, got {retrain_epochs}")
    if retrain_overrides and retrain_epochs is None:
        raise UserError("--retrain-set needs --retrain-epochs N")
    retrain_overrides = coerce_overrides(retrain_overrides or {}, "--retrain-set", RETRAIN_RESERVED)
    output = Path(output or f"runs/ablate-{preset}")
    runs = []
    stages = load_settings(preset, overrides).stages  # what a variant's stage-list function is given
    for variant in variants:
        defaults, fixed = variant_overrides(variant, stages, epsilon, preset)
        for seed in seeds:
            settings = load_settings(preset, {**defaults, **overrides, **fixed, "seed": seed})
            runs.append(Run(variant, seed, settings, output / variant / f"seed{seed}"))
    plan = Plan(preset, variants, seeds, output, runs, dict(overrides), epsilon, retrain_epochs,
                retrain_overrides)
    if table is not None:
        plan.table, plan.table_column = open_grid_table(plan, table)
    if surrogate is not None:
        plan.surrogate = open_grid_surrogate(plan, surrogate)
    for run in runs:
        _check_existing(run)
    if plan.table is not None:
        check_budgets(plan)
    if retrain_epochs is not None:
        retrain_settings(plan, runs[0].settings, {"eval_size": {"input_size": 32}}, seeds[0], REFERENCE_GENOTYPE)
        check_retrain_data(plan)
        for run in runs:  # a finished search tells the retrain settings; unfinished ones are checked when run
            if (run.dir / GENOTYPE_FILE).exists():
                doc = json.loads((run.dir / GENOTYPE_FILE).read_text())
                check_retrain(run.dir / "retrain", retrain_settings(plan, run.settings, doc, run.seed,
                                                                     str(run.dir / GENOTYPE_FILE)))
                for seed in seeds:
                    check_retrain(output / REFERENCE_DIR / f"seed{seed}" / "retrain",
                                   retrain_settings(plan, run.settings, doc, seed, REFERENCE_GENOTYPE))
    return plan


def _check_existing(run: Run) -> None:
    """A finished or checkpointed run in the grid's folder must have been made with this run's settings."""
    done, partial = run.dir / GENOTYPE_FILE, run.dir / CHECKPOINT
    if done.exists():
        try:
            saved = json.loads(done.read_text())["settings"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{done}: not a search result; delete it or choose another --output") from None
    elif partial.exists():
        try:
            saved = ckpt.load(partial)["settings"]
        except Exception:
            raise UserError(f"{partial}: unreadable checkpoint; delete it or choose another --output") from None
    else:
        return
    changed = resume_differences(saved, run.settings)
    if changed:
        raise UserError(f"{run.dir} was run with other settings ({', '.join(changed)}); use the same --preset/--set "
                        f"to resume this grid, or another --output")


def run_ablation(plan: Plan, log: Log | None = None, jobs: int = 1) -> dict[str, Any]:
    """Run (or skip) every search of the plan, ``jobs`` at a time, then the retrains, then write runs.csv,
    summary.md, ablation.png. Returns ``{"rows": [...], "reference": [...], "files": [...]}``. ``plan.output`` is
    checked writable and locked for the whole grid, so two ablations never write the same folders."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    check_writable_folder(plan.output)
    check_run_folder(plan.output, ABLATE_FOLDER)  # before the lock file: a refused folder is left as it was
    with output_lock(plan.output, "ablate"):
        check_run_folder(plan.output, ABLATE_FOLDER)
        claim_run_folder(plan.output, ABLATE_FOLDER, clear=False)
        return _run_ablation(plan, log, jobs)


# what a grid writes at the top of its folder (files/run_folder.py): a grid writes only into an empty folder or a
# grid's own, whose finished runs it skips; every search checks its own <variant>/seed<k>/ the same way
ABLATE_FOLDER = FolderKind("ablate", ("runs.csv", "summary.md", "ablation.png"), runs=(*VARIANTS, REFERENCE_DIR))


def _search_one(settings: SearchSettings, out: Path, resume: bool) -> dict[str, Any]:
    """One run of the grid (module level, so a spawned worker process can be handed it)."""
    return run_search(settings, out, resume=resume)


def _run_searches(plan: Plan, log: Log, jobs: int) -> None:
    """Every search the grid still lacks. With ``jobs`` > 1 each runs in its own spawned process (a fresh
    interpreter: no forked torch thread pools), ``jobs`` at a time, each taking its own ``threads``. The grid
    stops as a whole (``processes.run_in_workers``): Ctrl-C starts no queued search and ends the running ones
    (each resumable from its last checkpoint), and the workers die with a killed grid. A search's result does not
    depend on what ran beside it (tests/test_ablate.py compares the two ways)."""
    total = len(plan.runs)
    todo = []
    for k, run in enumerate(plan.runs, start=1):
        done = run.dir / GENOTYPE_FILE
        if done.exists():
            log(f"[{k}/{total}] {run.name}: done already ({done}), skipped")
        else:
            todo.append((k, run, (run.dir / CHECKPOINT).exists()))

    def report(k: int, run: Run, resume: bool, doc: Mapping[str, Any]) -> None:
        last = last_trained_stage(doc)
        log(f"[{k}/{total}] {run.name}{' (resumed)' if resume else ''}: derived valid acc "
            f"{doc['derived_valid_acc']:.1f} %, {doc['params_m']:.3f} M params, top-op share "
            f"{last['top_op_share']:.2f}, argmax frozen share {last['argmax_frozen_share']:.2f}, "
            f"{doc['wall_time_s']:.1f} s -> {run.dir}")

    if jobs == 1 or len(todo) < 2:
        started = time.time()
        for k, run, resume in todo:
            log(f"[{k}/{total}] {run.name}: {'resuming' if resume else 'starting'} ({time.time() - started:.0f} s "
                f"into the grid)")
            report(k, run, resume, _search_one(run.settings, run.dir, resume))
        return
    from nni_offpolicy.processes import run_in_workers

    log(f"running {len(todo)} searches, {min(jobs, len(todo))} at a time")
    runs = {k: (k, run, resume) for k, run, resume in todo}
    run_in_workers([(k, _search_one, (run.settings, run.dir, resume)) for k, run, resume in todo], jobs,
                   lambda k, doc: report(*runs[k], doc))


def _run_ablation(plan: Plan, log: Log | None = None, jobs: int = 1) -> dict[str, Any]:
    log = log or (lambda line: print(line, flush=True))
    rows: list[dict[str, Any]] = []
    started = time.time()
    _run_searches(plan, log, jobs)
    for run in plan.runs:
        done = run.dir / GENOTYPE_FILE
        doc = json.loads(done.read_text())
        rows.append(run_row(run.variant, run.seed, doc))
        if plan.table is not None:
            rows[-1].update(table_values(plan, doc, log))
        if plan.surrogate is not None:
            rows[-1].update(surrogate_values(plan, doc, log, run.name))
        if plan.retrain_epochs is not None:
            settings = retrain_settings(plan, run.settings, doc, run.seed, str(done))
            result = retrain_cell(run.dir / "retrain", settings, log, run.name)
            rows[-1]["retrain_test_acc"] = result["test_acc"]
            rows[-1]["retrain_params_m"] = result["params_m"]
    reference: list[dict[str, Any]] = []
    if plan.retrain_epochs is not None:
        if REFERENCE_GENOTYPE in plan.family.published:
            any_doc = json.loads((plan.runs[0].dir / GENOTYPE_FILE).read_text())
            for seed in plan.seeds:
                settings = retrain_settings(plan, plan.runs[0].settings, any_doc, seed, genotype=REFERENCE_GENOTYPE)
                result = retrain_cell(plan.output / REFERENCE_DIR / f"seed{seed}" / "retrain", settings, log,
                                  f"published P-DARTS seed {seed}")
                reference.append({"genotype": REFERENCE_GENOTYPE, "seed": seed, "retrain_test_acc": result["test_acc"],
                                  "retrain_params_m": result["params_m"]})
        else:
            log("  (no published P-DARTS reference in the NAS-Bench-201 space: its cell is a DARTS genotype)")
    files = write_outputs(plan, rows, reference)
    log(f"ablation: {len(rows)} runs in {time.time() - started:.0f} s; wrote {', '.join(str(f) for f in files)}")
    return {"rows": rows, "reference": reference, "files": files}
