#!/usr/bin/env python
"""How well does NASWOT rank the cells of a finished NB201 search's last space? A development study behind
``final_pick=zero-cost``.

    python scripts/last_space_study.py --table ../shared/data/nb201-imagenet16-120.csv runs/grid/*/seed*

For each search folder: every cell of its last stage's space (``stages[-1].edge_ops``) is scored with the search's
own NASWOT (its probe images: the first ``zero_cost_images`` of the first reward batch, each cell's weights drawn
from a seed of the cell itself), once on the reward's small network and once on the evaluation-size network the
zero-cost pick uses. It prints the space's table mean and best, each score's Spearman correlation with the table
over the space and the table value of each score's favourite (what the pick answers), and the same for the
supernet's accuracies of the candidates the search recorded. The table only measures here: the package never
reads it unless a user names it.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from nni_offpolicy.data.images import BatchLoader, load_dataset, search_split
from nni_offpolicy.data.tables import open_table
from nni_offpolicy.search.progressive import arch_key
from nni_offpolicy.search.rewards import zero_cost_probe_size
from nni_offpolicy.search.zero_cost import ZeroCostScorer
from nni_offpolicy.settings import SearchSettings


def probe_images(settings: SearchSettings):
    """The batch a search's zero-cost scorer looked at (``RewardModel``'s probe images)."""
    data = load_dataset(settings.dataset, data_dir=settings.data_dir)
    _, valid = search_split(data, settings.train_portion, settings.split_seed)
    first, _ = next(BatchLoader(valid, settings.reward_batch, "cpu", train=False, drop_last=False).epoch(0))
    return first[: zero_cost_probe_size(settings)], data.num_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="TABLE.csv[:COLUMN] (an NB201 benchmark table)")
    parser.add_argument("runs", nargs="+", help="NB201 search folders (holding genotype.json)")
    args = parser.parse_args()
    table, column = open_table(args.table)
    column = table.single_column(column)
    images: dict[tuple, tuple] = {}
    for run in args.runs:
        doc = json.loads((Path(run) / "genotype.json").read_text())
        s = SearchSettings(**doc["settings"])
        key = (s.dataset, s.data_dir, s.train_portion, s.split_seed, s.reward_batch, s.zero_cost_images)
        if key not in images:
            images[key] = probe_images(s)
        probe, classes = images[key]
        space = doc["stages"][-1]["edge_ops"]["cell"]
        edges = list(space)
        samples = [{f"cell/op_{e}": op for e, op in zip(edges, ops)}
                   for ops in itertools.product(*(space[e] for e in edges))]
        archs = [arch_key("nb201", sample) for sample in samples]
        truth = np.array([table.value(a, column) for a in archs])
        scorers = {"reward-size NASWOT": ZeroCostScorer("nb201", probe, s.zero_cost_layers or s.layers[0],
                                                        s.zero_cost_channels, classes),
                   "eval-size NASWOT": ZeroCostScorer("nb201", probe, s.eval_layers, s.eval_channels, classes)}
        print(f"{run}: {len(samples)} cells, table mean {truth.mean():.2f}, best {truth.max():.2f}; "
              f"the search answered {table.value(doc['arch'], column):.2f}")
        for name, scorer in scorers.items():
            scores = np.array([scorer(sample, a) for sample, a in zip(samples, archs)])
            print(f"  {name:20s} Spearman {spearmanr(scores, truth)[0]:+.2f}, its favourite "
                  f"{truth[int(np.argmax(scores))]:.2f}")
        candidates = doc.get("final_candidates") or []
        if len(candidates) >= 3:
            values = [table.value(arch_key("nb201", c["sample"]), column) for c in candidates]
            accuracies = [c["valid_acc"] for c in candidates]
            print(f"  supernet accuracy    Spearman {spearmanr(accuracies, values)[0]:+.2f} over the "
                  f"{len(candidates)} recorded candidates, its favourite {values[int(np.argmax(accuracies))]:.2f}")


if __name__ == "__main__":
    main()
