"""``nni-offpolicy bench``: the protocol's time per stage and phase, extrapolated from short real searches."""
from __future__ import annotations

import argparse
import sys

from nni_offpolicy.commands import parse_pairs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="time the P-DARTS protocol (or a preset's) per stage and phase; compare with P-DARTS",
        description="Run one short real search per weight mode x precision at the protocol's real shapes "
                    "(4 epochs of --steps steps per stage: a cold and a warm weights-only epoch, a first and a "
                    "warm controller epoch), then extrapolate seconds per epoch per stage and phase, images/s, "
                    "peak GPU memory and the whole protocol's time, and compare with the official P-DARTS code "
                    "on one H100. Prints a table; writes JSON (--json). Each search stays in --output.")
    p.add_argument("--preset", default="pdarts", help="protocol to time: pdarts (default, with the P-DARTS anchor), "
                                                      "nb201, or any search preset")
    p.add_argument("--dataset", default=None,
                   help="default for the CIFAR-10 presets (pdarts, nb201): imagefolder: of "
                        "shared/data/cifar10-jpeg.tar.gz next to or above the working directory or the repository; "
                        "other presets keep their own (demo: digits)")
    p.add_argument("--device", default="auto", help="auto (default: the GPU when there is one) | cpu | cuda[:N]")
    p.add_argument("--steps", type=int, default=None,
                   help="weight steps measured per epoch (default 40; with --against nni: timed steps per side, "
                        "default 3 on a CPU, 20 on a GPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's (96)")
    p.add_argument("--layers", default=None, help="cells per stage, default the preset's (5,11,17)")
    p.add_argument("--weight-modes", default="mixed,path", help="comma-separated: mixed, path (default both)")
    p.add_argument("--precisions", default=None,
                   help="comma-separated: auto, fp32, bf16 (default auto,fp32: the fast path and the fp32 "
                        "reference for the accuracy check; one run where they coincide, e.g. on a CPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other search setting for every run (repeatable), e.g. --set compile=ops")
    p.add_argument("--output", "-o", default=None, help="folder for the searches (default runs/bench-<preset>)")
    p.add_argument("--json", dest="json_path", default=None, metavar="FILE",
                   help="where the JSON goes (default OUTPUT/bench.json; - for stdout)")
    p.add_argument("--fresh", action="store_true",
                   help="measure every run again (default: reuse a run measured earlier in --output with the same "
                        "settings on the same device)")
    p.add_argument("--against", default=None, metavar="nni",
                   help="nni: run NNI 3.0's own DARTS and RandomOneShot strategies (NasExperiment, hub DARTS "
                        "space) and ours (darts learner mixed, off-policy mixed and path) at the same shapes "
                        "(--layers cells, default 8; --set channels=C, default 16; --batch-size, default 64), "
                        "alternating A B A B, and report s/step, images/s, peak memory and the ratios")
    p.add_argument("--rounds", type=int, default=2, help="with --against nni: A B rounds (default 2)")
    p.add_argument("--warm-skip", type=int, default=1,
                   help="with --against nni: NNI's first steps left out of its timing (default 1)")
    p.add_argument("--sides", default=None,
                   help="with --against nni: comma-separated subset of nni-darts, ours-darts, ours-mixed, "
                        "nni-random, ours-path (default all)")
    p.add_argument("--verbose", action="store_true", help="the searches' progress bars and per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nni_offpolicy.tools.bench import format_table, plan_bench, run_bench
    from nni_offpolicy.errors import UserError

    if args.against is not None:
        return _run_against(args)
    for flag, value, default in (("--rounds", args.rounds, 2), ("--warm-skip", args.warm_skip, 1),
                                 ("--sides", args.sides, None)):
        if value != default:
            raise UserError(f"{flag} only applies with --against nni")
    if args.steps is None:
        args.steps = 40
    plan = plan_bench(args.preset, args.dataset, args.device, args.steps, args.batch_size, args.layers,
                      args.weight_modes, args.precisions, parse_pairs(args.overrides), args.output, args.json_path,
                      args.verbose, args.fresh)
    doc = run_bench(plan)
    table_to = sys.stderr if plan.json_path is None else sys.stdout  # stdout carries the JSON with --json -
    print(format_table(doc), file=table_to)
    if plan.json_path is not None:
        print(f"wrote {plan.json_path}; the searches are in {plan.output}/")
    return 0


def _run_against(args: argparse.Namespace) -> int:
    from nni_offpolicy.tools.bench_nni import format_nni_table, plan_nni, run_nni_bench
    from nni_offpolicy.errors import UserError

    if args.against != "nni":
        raise UserError(f"--against {args.against!r}: the only comparison is --against nni")
    if args.preset != "pdarts" or args.weight_modes != "mixed,path" or args.fresh:
        raise UserError("--against nni runs its own fixed sides: drop --preset/--weight-modes/--fresh "
                        "(choose sides with --sides)")
    plan = plan_nni(args.dataset, args.device, args.steps, args.batch_size, args.layers, args.rounds,
                    args.warm_skip, args.sides, args.precisions, parse_pairs(args.overrides), args.output,
                    args.json_path, args.verbose)
    doc = run_nni_bench(plan)
    print(format_nni_table(doc), file=sys.stderr if plan.json_path is None else sys.stdout)
    if plan.json_path is not None:
        print(f"wrote {plan.json_path}; our searches are in {plan.output}/")
    return 0
