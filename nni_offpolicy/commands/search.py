"""``nni-offpolicy search``: a whole progressive search from a preset, a config file and overrides."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from nni_offpolicy.commands import parse_pairs
from nni_offpolicy.settings import SEARCH_PRESETS, flag_settings

# The flags most people touch, each described once at its field in settings.py (``settings.flag``); every other
# setting goes through --set KEY=VALUE (or --config FILE.yml).
COMMON_FLAGS = flag_settings()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="run a progressive off-policy search",
        description="Run P-DARTS progressive shrinking with the off-policy REINFORCE controller. Leaves "
                    "genotype.json, cell.png, metrics.jsonl, tensorboard/ and checkpoint.pt in --output.")
    p.add_argument("--preset", default="demo", help=f"one of: {', '.join(SEARCH_PRESETS)} (default demo)")
    p.add_argument("--config", help="YAML/JSON file of settings (may name a preset)")
    for name, text in COMMON_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=text)
    p.add_argument("--download", action="store_true", default=None, help="allow torchvision to download CIFAR")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting (repeatable), e.g. --set samples_per_update=20")
    p.add_argument("--output", "-o", default=None, help="output directory (default runs/search-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the search checkpointed in --output")
    p.add_argument("--overwrite", action="store_true",
                   help="discard a finished or resumable search already in --output (refused without it)")
    p.add_argument("--quiet", action="store_true",
                   help="one line per stage instead of per epoch (progress bars are drawn only on a terminal anyway)")
    p.add_argument("--print-settings", action="store_true", help="print the resolved settings and exit")
    p.set_defaults(func=run)


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {name: getattr(args, name) for name in COMMON_FLAGS if getattr(args, name) is not None}
    if args.download:
        overrides["download"] = True
    overrides.update(parse_pairs(args.overrides))
    if args.quiet:
        overrides["progress"] = False
    return overrides


def run(args: argparse.Namespace) -> int:
    from nni_offpolicy.search.loop import run_search
    from nni_offpolicy.settings import load_settings

    settings = load_settings(args.preset, collect_overrides(args), args.config)
    if args.print_settings:
        print(json.dumps(settings.to_dict(), indent=2))
        return 0
    output = Path(args.output or f"runs/search-{args.preset}")
    doc = run_search(settings, output, resume=args.resume, overwrite=args.overwrite,
                     on_epoch=stage_lines(settings) if args.quiet else None)
    _draw_cell(doc, output)
    shown = doc.get("arch") or doc.get("genotype_str")
    print(f"derived architecture: {shown}")
    print(f"params {doc['params_m']:.2f} M, FLOPs {doc['flops_m']:.1f} M at evaluation size; "
          f"reward {doc['derived_reward']:.4f}, "
          + (f"table {doc['reward_column']} {doc['derived_valid_acc']:.2f}%; " if doc.get("reward_source") == "table"
             else f"supernet valid acc {doc['derived_valid_acc']:.1f}%; ") +
          f"{doc['wall_time_s']:.0f} s")
    if doc.get("within_budget") is False:
        print(f"warning: the derived cell's {doc['params_m']:.3f} M params exceed size_budget "
              f"{doc['settings']['size_budget']} M: no candidate of the last stage fit it (genotype.json: "
              f"within_budget false); a later size_budget_from_stage or final_pick=best-sampled may help",
              file=sys.stderr)
    print(f"wrote {output}/genotype.json, cell.png, metrics.jsonl, tensorboard/, checkpoint.pt")
    return 0


def stage_lines(settings: Any) -> Callable[[dict], None]:
    """``--quiet``'s progress: one line at the end of each stage's last epoch (the search prints one per epoch
    when not quiet), so a long quiet search still shows it is alive and how far it got."""
    started = time.time()

    def on_epoch(record: dict) -> None:
        stage = int(record["stage"])
        if record["epoch"] != settings.epochs[stage - 1]:
            return
        reward = f", greedy reward {record['greedy_reward']:.4f}" if "greedy_reward" in record else ""
        print(f"stage {stage}/{settings.stages}: {record['epoch']} epochs, valid acc {record['valid_acc']:.1f}%"
              f"{reward} ({time.time() - started:.0f} s so far)", file=sys.stderr, flush=True)
        if stage < settings.stages and settings.epochs[stage] == 0:
            print(f"stage {stage + 1}/{settings.stages}: not trained (epochs 0); the zero-cost pick scores its "
                  f"space whole", file=sys.stderr, flush=True)

    return on_epoch


def _draw_cell(doc: dict, output: Path) -> None:
    from nni_offpolicy.tools.plot import plot_architecture

    plot_architecture(doc["family"], doc["genotype"], output / "cell.png")
