#!/usr/bin/env python
"""How far can a zero-cost pick get under a hard parameter budget? A development study behind the README's
hard-budget figures.

    python scripts/budget_study.py --table ../shared/data/nb201-imagenet16-120.csv --budget 0.5 --groups 3

Every NB201 cell is priced at evaluation size by the search's own cost model (``RewardModel.price``); cells of one
price form a group (the same number of 3x3 and 1x1 convolutions). The ``--groups`` costliest groups within the
budget, where a budget's best cells lie, are scored whole with the NASWOT score the zero-cost pick uses (its
evaluation-size network and probe images, for the ``--preset``'s settings). For each group it prints its size,
its best table value, the table value of its NASWOT favourite and their Spearman correlation, then the favourite
over all scored groups against the budget's optimum: what the zero-cost pick would answer if a search handed it
the whole in-budget space. The table only measures here: the package never reads it unless a user names it.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from search_spaces import NB201_OPS

from last_space_study import probe_images
from nni_offpolicy.data.tables import open_table
from nni_offpolicy.search.progressive import arch_key, sample_to_arch
from nni_offpolicy.search.rewards import RewardModel
from nni_offpolicy.search.zero_cost import ZeroCostScorer
from nni_offpolicy.settings import load_settings

EDGES = ("1_0", "2_0", "2_1", "3_0", "3_1", "3_2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="TABLE.csv[:COLUMN] (an NB201 benchmark table)")
    parser.add_argument("--budget", type=float, required=True, help="M params at evaluation size")
    parser.add_argument("--groups", type=int, default=3, help="how many of the costliest in-budget groups to score")
    parser.add_argument("--preset", default="nb201-proxy", help="whose data, probe images and evaluation size")
    parser.add_argument("--score", default=None,
                        help="rank by this score or ensemble of the registry (e.g. ens:naswot+synflow+zico) instead "
                             "of the preset's zero_cost; the scored groups' cells are scored together, as the "
                             "zero-cost pick scores the in-budget cells of a last space")
    args = parser.parse_args()
    table, column = open_table(args.table)
    column = table.single_column(column)
    settings = load_settings(args.preset)
    torch.set_num_threads(settings.threads or torch.get_num_threads())  # the preset's own (nb201-proxy: 1)
    probe, labels, classes = probe_images(settings)
    rewards = RewardModel(settings, "nb201", classes, probe.shape[1], probe.shape[2], probe_images=probe)
    score = args.score or settings.zero_cost
    scorer = ZeroCostScorer("nb201", probe, settings.eval_layers, settings.eval_channels, classes, score=score,
                            labels=labels)
    groups: dict[float, list[tuple[str, dict]]] = {}
    price_of: dict[tuple[int, int], float] = {}  # a cell's price depends only on its convolution counts
    for ops in itertools.product(NB201_OPS, repeat=len(EDGES)):
        sample = {f"cell/op_{e}": op for e, op in zip(EDGES, ops)}
        counts = (ops.count("nor_conv_3x3"), ops.count("nor_conv_1x1"))
        if counts not in price_of:
            price_of[counts] = rewards.price(sample_to_arch("nb201", sample, 4))[0] / 1e6
        if price_of[counts] <= args.budget:
            groups.setdefault(price_of[counts], []).append((arch_key("nb201", sample), sample))
    everything = [key for cells in groups.values() for key, _ in cells]
    optimum = max(table.value(key, column) for key in everything)
    print(f"budget {args.budget} M: {len(everything)} cells within it, table optimum {optimum:.2f}")
    scored = sorted(groups, reverse=True)[: args.groups]
    started = time.time()
    values = scorer.score_set({key: sample_to_arch("nb201", s, 4) for price in scored for key, s in groups[price]})
    print(f"scored {len(values)} cells by {score} at evaluation size in {time.time() - started:.0f} s")
    favourites = []
    for price in scored:
        cells = groups[price]
        truth = np.array([table.value(key, column) for key, _ in cells])
        scores = np.array([values[key] for key, _ in cells])
        best = int(np.argmax(scores))
        favourites.append((scores[best], truth[best]))
        rho = spearmanr(scores, truth)[0] if len(cells) > 2 else float("nan")
        print(f"  {price:.3f} M: {len(cells)} cells, table best {truth.max():.2f}, {score} favourite "
              f"{truth[best]:.2f}, Spearman {rho:+.2f}")
    _, value = max(favourites)
    print(f"{score} favourite over the scored groups: {value:.2f}, {optimum - value:.2f} below the optimum")


if __name__ == "__main__":
    main()
