"""``nni-offpolicy ablate``: a grid of searches over variants x seeds, then a table (CSV + markdown) and a plot."""
from __future__ import annotations

import argparse

from nni_offpolicy.commands import parse_pairs

VARIANT_NAMES = ("offpolicy-uniform", "offpolicy-egreedy", "on-policy", "random", "darts",
                 "offpolicy-naswot", "offpolicy-naswot-pick", "random-naswot-pick", "offpolicy-naswot-taper",
                 "random-naswot-taper", "offpolicy-naswot-space", "random-naswot-space", "offpolicy-ens-space",
                 "offpolicy-size-abs", "offpolicy-size-abs-naswot")  # = ablate.VARIANTS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablate", help="run a grid of searches over variants and seeds; write a table and plots",
        description="Run one search per (variant, seed), all with the same preset, space, data, epochs and "
                    "--set overrides, into DIR/<variant>/seed<k>/; then write DIR/runs.csv, DIR/summary.md "
                    "(one row per run and a per-variant mean ± std table) and DIR/ablation.png. Runs whose "
                    "genotype.json exists are skipped, so re-running a killed grid resumes it.")
    p.add_argument("--preset", default="demo", help="search preset for every run (default demo)")
    p.add_argument("--space", default=None, help="search space for every run: darts, pdarts, extended, nb201")
    p.add_argument("--variants", default=",".join(VARIANT_NAMES),
                   help=f"comma-separated subset of: {', '.join(VARIANT_NAMES)} (default all)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epsilon", type=float, default=0.3, help="epsilon of the offpolicy-egreedy variant (0.3)")
    p.add_argument("--retrain-epochs", type=int, default=None, metavar="N",
                   help="also retrain each derived cell and the published P-DARTS cell for N epochs at the "
                        "search's evaluation size, and report test accuracy mean ± std over seeds")
    p.add_argument("--retrain-set", dest="retrain_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a retrain setting for every retrain (repeatable), e.g. --retrain-set max_steps=20")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a search setting for every run (repeatable), e.g. --set epochs=2,2,2")
    p.add_argument("--table", default=None, metavar="TABLE[:COLUMN]",
                   help="NB201 benchmark table (.csv/.json; :COLUMN when it has several numeric columns): runs.csv, "
                        "summary.md and ablation.png gain each run's derived and best-sampled cell's value, "
                        "beside the table's median and optimum")
    p.add_argument("--surrogate", default=None, metavar="MODEL.onnx[:ENCODING.json]",
                   help="NAS-Bench-301 surrogate (ONNX; DARTS-family grids only; needs pip install -e '.[bench]'): "
                        "runs.csv, summary.md and ablation.png gain each run's derived, best-sampled and policy "
                        "cell's predicted accuracy, the derived cell's percentile among random cells, its "
                        "parameter-free normal edges and params at 20 cells x 36 channels")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="searches run side by side, each in its own process with its own `threads` (default 1: "
                        "one after another in this process); the results are the same either way")
    p.add_argument("--output", "-o", default=None, help="output directory (default runs/ablate-<preset>)")
    p.add_argument("--verbose", action="store_true", help="each search's per-epoch lines too")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nni_offpolicy.tools.ablate import plan_ablation, run_ablation

    overrides = parse_pairs(args.overrides)
    if args.verbose:
        overrides.setdefault("progress", "true")
    plan = plan_ablation(args.preset, args.variants, args.seeds, args.epsilon, overrides, args.output,
                         args.retrain_epochs, parse_pairs(args.retrain_overrides, "--retrain-set"), args.space,
                         args.table, surrogate=args.surrogate)
    run_ablation(plan, jobs=args.jobs)
    return 0
