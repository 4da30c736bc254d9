#!/usr/bin/env python
"""Does a short standalone training rank good NAS-Bench-201 cells? A development study behind the final pick.

    python scripts/short_training_study.py --table ../shared/data/nb201-imagenet16-120.csv --steps 300 --cells 16

Draws ``--cells`` cells at random from those whose table value is at least ``--min-value`` (the band a search's
last-stage candidates fall in), trains each from scratch for ``--steps`` SGD steps on the search's training half
of ``--dataset`` (the eval network at ``--layers`` cells per stack, ``--channels`` channels), scores it on 2,000
images of the validation half and prints Spearman and Kendall correlations with the table. The table only
measures here: the package never reads it unless a user names it.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr

from search_spaces.families import get_family

from nni_offpolicy.data.batches import BatchLoader
from nni_offpolicy.data.datasets import load_dataset
from nni_offpolicy.data.split import search_split
from nni_offpolicy.data.tables import open_table


def logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    return out[0] if isinstance(out, tuple) else out  # (logits, auxiliary) where the network has a head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="TABLE.csv[:COLUMN] (an NB201 benchmark table)")
    parser.add_argument("--dataset", default="cifar10-jpeg")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--min-value", type=float, default=42.0)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table, column = open_table(args.table)
    column = table.single_column(column)
    values = {arch: float(v) for arch, v in zip(table.archs, table.values[column]) if np.isfinite(v)}
    band = sorted(arch for arch, value in values.items() if value >= args.min_value)
    cells = random.Random(args.seed).sample(band, args.cells)
    family = get_family("nb201")
    data = load_dataset(args.dataset, "train")
    train, valid = search_split(data, 0.5, 0)
    valid_batches = [b for _, b in zip(range(8), BatchLoader(valid, 250, "cpu", train=False).epoch(0))]
    pairs = []
    for arch in cells:
        torch.manual_seed(args.seed)
        net = family.build_eval_network(family.normalise(arch), layers=args.layers, channels=args.channels,
                                        num_classes=data.num_classes, in_channels=data.in_channels,
                                        input_size=data.input_size)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
        started = time.time()
        net.train()
        for step, (x, y) in enumerate(BatchLoader(train, 64, "cpu", train=True, seed=args.seed).epoch(0)):
            if step >= args.steps:
                break
            loss = F.cross_entropy(logits(net, x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            hits = sum(int((logits(net, x).argmax(1) == y).sum()) for x, y in valid_batches)
        accuracy = 100.0 * hits / sum(len(y) for _, y in valid_batches)
        pairs.append((values[arch], accuracy))
        print(f"{arch}  table {values[arch]:.2f}  short training {accuracy:.2f}  ({time.time() - started:.0f} s)",
              flush=True)
    a = np.array(pairs)
    print(f"{len(pairs)} cells with table >= {args.min_value}: Spearman {spearmanr(a[:, 0], a[:, 1])[0]:.3f}, "
          f"Kendall {kendalltau(a[:, 0], a[:, 1])[0]:.3f}; picked by short training {a[a[:, 1].argmax(), 0]:.2f}, "
          f"band mean {a[:, 0].mean():.2f}, best {a[:, 0].max():.2f}")


if __name__ == "__main__":
    main()
