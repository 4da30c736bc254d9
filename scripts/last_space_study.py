#!/usr/bin/env python
"""How well does NASWOT rank the cells of a finished NB201 search's last space? A development study behind
``final_pick=zero-cost``.

    python scripts/last_space_study.py --table ../shared/data/nb201-imagenet16-120.csv runs/grid/*/seed*

For each search folder: every cell of its last stage's space (``stages[-1].edge_ops``; with a ``size_budget``, the
cells within it) is scored with the search's own NASWOT (its probe images: the first ``zero_cost_images`` of the
first reward batch, each cell's weights drawn from a seed of the cell itself), once on the reward's small network
and once on the evaluation-size network the zero-cost pick uses. It prints the space's table mean and best, each
score's Spearman correlation with the table over the space and the table value of each score's favourite (what
the pick answers), and the same for the supernet's accuracies of the candidates the search recorded. With
``--scores`` the space is also ranked by each named score or ensemble of the registry at evaluation size, scored
together as ``pick_zero_cost`` would rank it (labels of the probe batch included). With
``--supernet`` every cell is also scored through the last trained stage's supernet, from the folder's
checkpoint.pt, on the search's ``eval_images`` (slower: a minute or more per search on a CPU). The table only
measures here: the package never reads it unless a user names it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import torch

from nni_offpolicy.data.batches import BatchLoader
from nni_offpolicy.data.datasets import load_dataset
from nni_offpolicy.data.split import search_split
from nni_offpolicy.data.tables import open_table
from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.profiling import EvalCostModel
from nni_offpolicy.search.loop import ProgressiveSearch
from nni_offpolicy.search.progressive import arch_key, sample_to_arch
from nni_offpolicy.search.replicas import Replicas
from nni_offpolicy.search.rewards import zero_cost_probe_size
from nni_offpolicy.search.zero_cost import ZeroCostScorer
from nni_offpolicy.settings import SearchSettings


def probe_images(settings: SearchSettings):
    """The batch a search's zero-cost scorer looked at (``RewardModel``'s probe images)."""
    data = load_dataset(settings.dataset, data_dir=settings.data_dir)
    _, valid = search_split(data, settings.train_portion, settings.split_seed)
    first, labels = next(BatchLoader(valid, settings.reward_batch, "cpu", train=False, drop_last=False).epoch(0))
    size = zero_cost_probe_size(settings)
    return first[:size], labels[:size], data.num_classes


def supernet_accuracies(run: Path, settings: SearchSettings, samples: list[dict]) -> list[float]:
    """Each sample's accuracy on the ``eval_images`` through the supernet of the folder's checkpoint (the last
    trained stage's weights, saved after its last epoch; its space holds every cell of the last one)."""
    state = ckpt.load(run / "checkpoint.pt")
    data = load_dataset(settings.dataset, data_dir=settings.data_dir)
    train, valid = search_split(data, settings.train_portion, settings.split_seed)
    with tempfile.TemporaryDirectory() as scratch:  # the search object writes nothing before run(); never to run
        search = ProgressiveSearch(settings, Path(scratch), train, valid, Replicas(torch.device("cpu")),
                                   progress=False)
        search.checkpoint.stage_state = state["stage_state"]
        stage = search.checkpoint.open_stage(lambda: search.new_stage(state["stage"], state["edge_ops"]))
        return [search.evaluate(stage, sample) for sample in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="TABLE.csv[:COLUMN] (an NB201 benchmark table)")
    parser.add_argument("--supernet", action="store_true", help="also rank the cells by the last trained "
                        "stage's supernet (from checkpoint.pt)")
    parser.add_argument("--scores", default="",
                        help="also rank the cells by these zero-cost scores or ensembles at evaluation size, as "
                             "pick_zero_cost would (comma-separated, e.g. synflow,zico,ens:naswot+synflow+zico)")
    parser.add_argument("--stage", type=int, default=0,
                        help="study this stage's space (1-based) instead of the last one: e.g. 2 for the "
                             "3-ops-per-edge space a 3,2,1 shrink trains in its second stage")
    parser.add_argument("--reward-size-only", action="store_true",
                        help="score NASWOT on the reward's small network only (a wide space in minutes)")
    parser.add_argument("runs", nargs="+", help="NB201 search folders (holding genotype.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table, column = open_table(args.table)
    column = table.single_column(column)
    images: dict[tuple, tuple] = {}
    for run in args.runs:
        doc = json.loads((Path(run) / "genotype.json").read_text())
        s = SearchSettings(**doc["settings"])
        key = (s.dataset, s.data_dir, s.train_portion, s.split_seed, s.reward_batch, s.zero_cost_images)
        if key not in images:
            images[key] = probe_images(s)
        probe, labels, classes = images[key]
        space = doc["stages"][args.stage - 1 if args.stage else -1]["edge_ops"]["cell"]
        edges = list(space)
        samples = [{f"cell/op_{e}": op for e, op in zip(edges, ops)}
                   for ops in itertools.product(*(space[e] for e in edges))]
        if s.size_budget is not None:  # only the cells the pick lets compete
            model = EvalCostModel("nb201", layers=s.eval_layers, channels=s.eval_channels, num_classes=classes,
                                  in_channels=probe.shape[1], input_size=probe.shape[2])
            samples = [x for x in samples if model.cost(sample_to_arch("nb201", x, 4))[0] / 1e6 <= s.size_budget]
        archs = [arch_key("nb201", sample) for sample in samples]
        truth = np.array([table.value(a, column) for a in archs])
        scorers = {"reward-size NASWOT": ZeroCostScorer("nb201", probe, s.zero_cost_layers or s.layers[0],
                                                        s.zero_cost_channels, classes)}
        if not args.reward_size_only:
            scorers["eval-size NASWOT"] = ZeroCostScorer("nb201", probe, s.eval_layers, s.eval_channels, classes)
        print(f"{run}: {len(samples)} cells, table mean {truth.mean():.2f}, best {truth.max():.2f}; "
              f"the search answered {table.value(doc['arch'], column):.2f}")
        for name, scorer in scorers.items():
            scores = np.array([scorer(sample, a) for sample, a in zip(samples, archs)])
            print(f"  {name:20s} Spearman {spearmanr(scores, truth)[0]:+.2f}, its favourite "
                  f"{truth[int(np.argmax(scores))]:.2f}")
        for score in filter(None, args.scores.split(",")):  # scored together, as the zero-cost pick does
            scorer = ZeroCostScorer("nb201", probe, s.eval_layers, s.eval_channels, classes, score=score,
                                    labels=labels)
            values = scorer.score_set({a: sample_to_arch("nb201", x, 4) for x, a in zip(samples, archs)})
            scores = np.array([values[a] for a in archs])
            print(f"  {'eval-size ' + score:20s} Spearman {spearmanr(scores, truth)[0]:+.2f}, its favourite "
                  f"{truth[int(np.argmax(scores))]:.2f}")
        if args.supernet:
            accuracies = np.array(supernet_accuracies(Path(run), s, samples))
            print(f"  {'supernet (all cells)':20s} Spearman {spearmanr(accuracies, truth)[0]:+.2f}, its favourite "
                  f"{truth[int(np.argmax(accuracies))]:.2f}")
        candidates = doc.get("final_candidates") or []
        if len(candidates) >= 3:
            values = [table.value(arch_key("nb201", c["sample"]), column) for c in candidates]
            accuracies = [c["valid_acc"] for c in candidates]
            print(f"  supernet accuracy    Spearman {spearmanr(accuracies, values)[0]:+.2f} over the "
                  f"{len(candidates)} recorded candidates, its favourite {values[int(np.argmax(accuracies))]:.2f}")


if __name__ == "__main__":
    main()
