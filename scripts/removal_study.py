#!/usr/bin/env python
"""Op scoring by removal (Zero-Cost-PT, Xiang et al. 2021) on NB201: what cell does it derive, and how good is it?
A development study behind issue 26; the package never reads the table unless a user names it.

    python scripts/removal_study.py --table ../shared/data/nb201-imagenet16-120.csv --scores naswot,zico --seeds 0,1,2

An untrained weight-sharing supernet of the space (every op of every edge, summed with equal weights; the
evaluation size of ``--preset``, on its probe images) is scored by a zero-cost score; then, edge by edge in a
random order, each op still on the edge is removed in turn and the supernet scored again: the op whose removal
lowers the score most is the edge's answer, and the edge keeps only it from then on. A space is the full NB201
space, or with ``runs`` each search folder's stage ``--stage`` space (e.g. 2: the 3 ops per edge the first shrink
kept). It prints each seed's derived cell and its table value, and the mean.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from last_space_study import probe_images
from nni_offpolicy.data.tables import open_table
from nni_offpolicy.search.progressive import arch_key
from nni_offpolicy.search.supernet import Supernet
from nni_offpolicy.search.zero_cost import SCORES, Cell
from nni_offpolicy.settings import load_settings
from search_spaces.presets import build_space, initial_edge_ops


def removal_pick(edge_ops: dict, score: str, probe: torch.Tensor, labels: torch.Tensor, classes: int,
                 layers: int, channels: int, seed: int) -> dict[str, str]:
    torch.manual_seed(seed)
    supernet = Supernet(build_space("nb201", edge_ops, layers=layers, channels=channels, num_classes=classes,
                                    in_channels=probe.shape[1]))
    kept = {f"cell/op_{e}": list(ops) for e, ops in edge_ops["cell"].items()}

    def value(masked: dict[str, list[str]]) -> float:
        weights = {label: torch.tensor([1.0 / len(masked[label]) if op in masked[label] else 0.0
                                        for op in edge_ops["cell"][label.split("op_")[1]]]) for label in masked}
        supernet.set_mixed(weights)
        torch.manual_seed(seed)  # the same batch-norm and any random draw for every variant of the supernet
        return SCORES[score](Cell(lambda: copy.deepcopy(supernet), probe, labels, lambda: (0, 0)))

    order = list(kept)
    np.random.default_rng(seed).shuffle(order)
    for label in order:
        if len(kept[label]) == 1:
            continue
        base = value(kept)
        drops = {op: base - value({**kept, label: [o for o in kept[label] if o != op]}) for op in kept[label]}
        kept[label] = [max(drops, key=drops.get)]
    return {label: ops[0] for label, ops in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="TABLE.csv[:COLUMN] (an NB201 benchmark table)")
    parser.add_argument("--scores", default="naswot", help="comma-separated registry scores")
    parser.add_argument("--seeds", default="0,1,2", help="weight and edge-order seeds")
    parser.add_argument("--preset", default="nb201-proxy", help="whose data, probe images and evaluation size")
    parser.add_argument("--stage", type=int, default=2, help="with runs: the stage whose space is scored")
    parser.add_argument("runs", nargs="*", help="search folders (genotype.json); none: the full NB201 space")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table, column = open_table(args.table)
    column = table.single_column(column)
    settings = load_settings(args.preset)
    probe, labels, classes = probe_images(settings)
    spaces = {"full space": initial_edge_ops("nb201")}
    for run in args.runs:
        doc = json.loads((Path(run) / "genotype.json").read_text())
        spaces[run] = doc["stages"][args.stage - 1]["edge_ops"]
    for score in args.scores.split(","):
        for name, edge_ops in spaces.items():
            values = []
            for seed in [int(s) for s in args.seeds.split(",")]:
                started = time.time()
                sample = removal_pick(edge_ops, score, probe, labels, classes, settings.eval_layers,
                                      settings.eval_channels, seed)
                key = arch_key("nb201", sample)
                values.append(table.value(key, column))
                print(f"{score:8s} {name}: seed {seed} {key} {values[-1]:.2f} ({time.time() - started:.0f} s)",
                      flush=True)
            print(f"{score:8s} {name}: mean {np.mean(values):.2f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
