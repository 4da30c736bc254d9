#!/usr/bin/env python
"""How well do the zero-cost scores rank NAS-Bench-201 cells? A development study behind the score registry.

    python scripts/zero_cost_study.py --table ../shared/data/nb201-imagenet16-120.csv --cells 200 --seed 0 \\
        --scores naswot,synflow,zico,snip,grad_norm,jacob_cov,params,flops,ens:naswot+synflow+zico

Draws ``--cells`` cells uniformly at random from the table's cells (``--seed``) and scores each with every score
of ``--scores`` as a search scores it (``search.zero_cost``): the cell's untrained evaluation network, weights
seeded from the cell, at the ``nb201-proxy`` preset's zero-cost size (1 cell per stack, 8 channels; ``--layers``,
``--channels``), on the first ``--images`` (64) images of the first reward batch of the search's validation half
of the CIFAR-10 archive (loaded by ``nni_offpolicy.data`` as a search loads it), with their labels
(``--data digits``: the embedded digits, for a quick run). An ensemble ``ens:a+b[+c...]`` is each cell's mean
rank among the N cells, as ``final_pick=zero-cost`` scores a last space.

Prints one table: per score, Spearman and Kendall τ with the table over the N cells, the same inside the N cells'
top 10 % by table value, the table value of the score's best cell (best of N) and that value's percentile in
the whole table, and the seconds a cell took (an ensemble: the sum of its components'). ``--json PATH`` also
writes it. A development study, never imported by the package: the table only measures here; the package never
reads it unless a user names it, and no default may encode what it says.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from nni_offpolicy.data.batches import BatchLoader
from nni_offpolicy.data.datasets import load_dataset
from nni_offpolicy.data.split import search_split
from nni_offpolicy.data.tables import open_table
from nni_offpolicy.search.rewards import zero_cost_probe_size
from nni_offpolicy.search.zero_cost import ZeroCostScorer, mean_rank
from nni_offpolicy.search.zero_cost_names import components
from nni_offpolicy.settings import load_settings

PRESET = "nb201-proxy"  # whose zero-cost network and probe batch the study scores with by default
DATA = {"cifar10": "cifar10-jpeg", "digits": "digits"}


def probe_batch(data_spec: str, reward_batch: int, portion: float, split_seed: int, size: int):
    """The first ``size`` images and labels of the first reward batch of the search's validation half."""
    data = load_dataset(data_spec)
    _, valid = search_split(data, portion, split_seed)
    images, labels = next(BatchLoader(valid, reward_batch, "cpu", train=False, drop_last=False).epoch(0))
    return images[:size], labels[:size], data.num_classes


def correlations(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    if len(truth) < 3 or np.ptp(scores) == 0:
        return math.nan, math.nan
    return float(spearmanr(scores, truth)[0]), float(kendalltau(scores, truth)[0])


def signed(value: float, width: int) -> str:
    """A correlation, or n/a where it has none (fewer than 3 cells, or a score equal on all of them)."""
    return f"{'n/a':>{width}s}" if math.isnan(value) else f"{value:+{width}.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="TABLE.csv[:COLUMN] (an NB201 benchmark table)")
    parser.add_argument("--cells", type=int, default=200, help="cells drawn uniformly from the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scores", default="naswot,synflow,zico,snip,grad_norm,jacob_cov,params,flops,"
                        "ens:naswot+synflow+zico", help="comma-separated scores and ens:a+b[+c...] ensembles")
    parser.add_argument("--data", choices=sorted(DATA), default="cifar10",
                        help="probe images: the CIFAR-10 archive (../shared/data) or the embedded digits")
    settings = load_settings(PRESET, {})
    parser.add_argument("--layers", type=int, default=settings.zero_cost_layers or settings.layers[0],
                        help=f"cells per stack of the scored network (default: {PRESET}'s zero-cost network)")
    parser.add_argument("--channels", type=int, default=settings.zero_cost_channels)
    parser.add_argument("--images", type=int, default=zero_cost_probe_size(settings), help="probe images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        wanted = {spec: components(spec) for spec in args.scores.split(",")}
    except ValueError as exc:
        parser.error(str(exc))
    table, column = open_table(args.table)
    column = table.single_column(column)
    known = [arch for arch, value in zip(table.archs, table.values[column]) if np.isfinite(value)]
    if not 1 <= args.cells <= len(known):
        parser.error(f"--cells must be 1 to {len(known)} (the table's cells)")
    archs = random.Random(args.seed).sample(known, args.cells)
    truth = np.array([table.value(arch, column) for arch in archs])
    images, labels, classes = probe_batch(DATA[args.data], settings.reward_batch, settings.train_portion,
                                          settings.split_seed, args.images)

    # one scorer, one cache: every score's components are computed once per cell (an ensemble reuses them)
    scorer = ZeroCostScorer("nb201", images, args.layers, args.channels, classes, labels=labels)
    names = list(dict.fromkeys(name for parts in wanted.values() for name in parts))
    raw: dict[str, dict[str, float]] = {name: {} for name in names}
    seconds = dict.fromkeys(names, 0.0)
    started = time.time()
    for i, arch in enumerate(archs):
        for name in names:
            t = time.perf_counter()
            raw[name][arch] = scorer.component(name, arch, arch)
            seconds[name] += time.perf_counter() - t
        if (i + 1) % max(1, len(archs) // 10) == 0:
            print(f"{i + 1}/{len(archs)} cells scored ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    top = np.argsort(-truth, kind="stable")[: math.ceil(len(archs) / 10)]
    oracle = table.lookup(archs[int(np.argmax(truth))], column)
    rows = []
    for spec, parts in wanted.items():
        values = raw[parts[0]] if len(parts) == 1 else mean_rank({name: raw[name] for name in parts})
        scores = np.array([values[arch] for arch in archs])
        best = table.lookup(archs[int(np.argmax(scores))], column)  # the first of equal scores, in draw order
        rho, tau = correlations(scores, truth)
        top_rho, top_tau = correlations(scores[top], truth[top])
        rows.append({"score": spec, "spearman": rho, "kendall": tau, "top10_spearman": top_rho,
                     "top10_kendall": top_tau, "best_of_n": best.value, "best_percentile": best.percentile,
                     "seconds_per_cell": sum(seconds[name] for name in parts) / len(archs)})

    print(f"{args.cells} cells of {table.path.name} ({column}) drawn with seed {args.seed}; the top 10 %: "
          f"{len(top)} cells; probe: {len(images)} {args.data} images; network: {args.layers} cell(s) per stack, "
          f"{args.channels} channels; the N cells' best {oracle.value:.2f} (percentile {oracle.percentile:.2f}), "
          f"mean {truth.mean():.2f}")
    header = (f"{'score':26s} {'Spearman':>8s} {'Kendall':>8s} {'top-10% ρ':>10s} {'top-10% τ':>10s} "
              f"{'best of N':>9s} {'its pct':>8s} {'s/cell':>7s}")
    print(header)
    for r in rows:
        print(f"{r['score']:26s} {signed(r['spearman'], 8)} {signed(r['kendall'], 8)} "
              f"{signed(r['top10_spearman'], 10)} {signed(r['top10_kendall'], 10)} {r['best_of_n']:9.2f} "
              f"{r['best_percentile']:8.2f} {r['seconds_per_cell']:7.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "table": str(table.path), "column": column, "cells": args.cells, "seed": args.seed, "data": args.data,
            "layers": args.layers, "channels": args.channels, "images": len(images), "top10_cells": len(top),
            "best_of_n_by_table": oracle.value, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
