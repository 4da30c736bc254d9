"""P-DARTS' progressive pieces over our spaces' labels: decisions per stage, per-edge shrinking, derivation.

This module is where the space's label scheme (``normal/op_2_0``, ``normal/input_3``, ``cell/op_1_0``) meets the
controller's decisions; neither of them knows the other.
"""
from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from search_spaces.families import EdgeOpLists, Family, as_family
from search_spaces.genotypes import Architecture

from nni_offpolicy.search.controller import Decision, OffPolicyController

if TYPE_CHECKING:
    from nni_offpolicy.settings import SearchSettings

Probabilities = Mapping[str, Mapping[str, float]]  # label -> option -> probability (inputs as "i+j")
INPUT_RULES = ("pair", "edge_strength")


def build_decisions(family: Family | str, edge_ops: EdgeOpLists) -> list[Decision]:
    """One op decision per edge; where the family's nodes pick inputs, one input-pair decision per node."""
    picks_inputs = as_family(family).picks_inputs
    decisions = []
    for kind, edges in edge_ops.items():
        for key, ops in edges.items():
            decisions.append(Decision(f"{kind}/op_{key}", tuple(ops), "op"))
        if picks_inputs:
            nodes = sorted({int(key.split("_")[0]) for key in edges})
            for j in nodes:
                decisions.append(Decision(f"{kind}/input_{j}", tuple(combinations(range(j), 2)), "input"))
    return decisions


def stage_controller(s: "SearchSettings", family: Family, edge_ops: dict, stage: int) -> OffPolicyController:
    """A stage's fresh controller over its op lists (whatever scores the samples: supernet or table)."""
    return OffPolicyController(
        build_decisions(family, edge_ops), behaviour=s.behaviour, epsilon=s.epsilon,
        temperature=s.temperature, lr=s.controller_lr, truncation=s.truncation, importance=s.importance,
        baseline_decay=s.baseline_decay, entropy_weight=s.entropy_weight, replay_size=s.replay_size,
        replay_samples=s.replay_samples, seed=s.seed * 1009 + stage)


def random_scores(probs: Probabilities, generator: torch.Generator) -> dict[str, dict[str, float]]:
    """The same labels and options with i.i.d. uniform scores in place of probabilities: ranking by them is a
    uniformly random choice (RandomNAS), with no bias toward the first options of a list."""
    sizes = [len(options) for options in probs.values()]
    values = torch.rand(sum(sizes), generator=generator, dtype=torch.float64).tolist()
    out, at = {}, 0
    for (label, options), n in zip(probs.items(), sizes):
        out[label] = dict(zip(options, values[at: at + n]))
        at += n
    return out


def shrink(edge_ops: EdgeOpLists, probs: Probabilities, keep: int,
           generator: torch.Generator | None = None, fits: Callable[[EdgeOpLists], bool] | None = None,
           op_price: Mapping[str, float] | None = None) -> tuple[EdgeOpLists, list[dict[str, str]]]:
    """Each edge keeps its own top-``keep`` ops by pi, in their original order (P-DARTS' search-space
    approximation; ties go to the earlier op). With ``generator``: a uniformly random ``keep`` of each edge's ops
    instead (the random baseline), drawn from that generator.

    With ``fits`` (a hard budget's test, ``search.budget``) and ``op_price``: while the kept space fails it, one
    edge swaps its least probable kept op for its cheapest dropped op that is cheaper than everything it kept,
    on the edge where that loses the least probability (ties: the earlier edge). Returns the space and the swaps
    made (``edge``, ``dropped``, ``added``); a space that still fails once no cheaper op is left is returned as
    it is (the search reports an answer above the budget)."""
    if generator is not None:
        probs = random_scores(probs, generator)
    result: EdgeOpLists = {}
    for kind, edges in edge_ops.items():
        result[kind] = {}
        for key, ops in edges.items():
            p = probs[f"{kind}/op_{key}"]
            ranked = sorted(range(len(ops)), key=lambda k: (-p[ops[k]], k))[:keep]
            result[kind][key] = [ops[k] for k in sorted(ranked)]
    swaps: list[dict[str, str]] = []
    if fits is None:
        return result, swaps
    if op_price is None:
        raise ValueError("shrink: fits needs op_price")
    while not fits(result):
        options = []
        for kind, edges in edge_ops.items():
            for key, ops in edges.items():
                p, kept = probs[f"{kind}/op_{key}"], result[kind][key]
                floor = min(op_price[o] for o in kept)
                cheaper = [o for o in ops if o not in kept and op_price[o] < floor]
                if not cheaper:
                    continue
                added = min(cheaper, key=lambda o: (op_price[o], -p[o], ops.index(o)))
                dropped = min(kept, key=lambda o: (p[o], -ops.index(o)))
                options.append((p[dropped] - p[added], kind, key, dropped, added))
        if not options:
            break
        _, kind, key, dropped, added = min(options, key=lambda o: o[0])  # min() keeps the earliest of ties
        ops = edge_ops[kind][key]
        result[kind][key] = [o for o in ops if o in result[kind][key] and o != dropped or o == added]
        swaps.append({"edge": f"{kind}/op_{key}", "dropped": dropped, "added": added})
    return result, swaps


def _best_op(ops: list[str], p: Mapping[str, float], banned: set[str]) -> str | None:
    allowed = [o for o in ops if o != "none" and o not in banned]
    return max(allowed, key=lambda o: (p[o], -ops.index(o))) if allowed else None


def derive(family: Family | str, edge_ops: EdgeOpLists, probs: Probabilities, max_skip_connect: int = 2,
           generator: torch.Generator | None = None, inputs: str = "pair") -> dict[str, Any]:
    """The final architecture as an NNI sample dict.

    Where the family's nodes pick inputs (DARTS, P-DARTS rules): per edge the best non-``none`` op; per node the
    most probable input pair whose edges both have such an op; then while the normal cell has more than
    ``max_skip_connect`` skip-connects, ban skip on the chosen skip edge where pi(skip) is lowest and derive
    again. Otherwise (NB201, every edge kept): per edge argmax op.

    ``inputs="edge_strength"`` (DARTS, whose input pairs have no learned probabilities): per node the 2 incoming
    edges with the highest best-non-``none`` op probability. ``generator``: the same rules over i.i.d. uniform
    scores instead of ``probs``, i.e. a uniformly random architecture of these op lists (the random baseline).
    """
    if inputs not in INPUT_RULES:
        raise ValueError(f"unknown input rule {inputs!r}; allowed: {', '.join(INPUT_RULES)}")
    if generator is not None:
        probs = random_scores(probs, generator)
    if not as_family(family).picks_inputs:
        return {f"{kind}/op_{key}": max(ops, key=lambda o: (probs[f"{kind}/op_{key}"][o], -ops.index(o)))
                for kind, edges in edge_ops.items() for key, ops in edges.items()}
    banned: dict[str, set[str]] = {}
    while True:
        sample: dict[str, Any] = {}
        for kind, edges in edge_ops.items():
            best = {key: _best_op(ops, probs[f"{kind}/op_{key}"], banned.get(f"{kind}/op_{key}", set()))
                    for key, ops in edges.items()}
            for key, ops in edges.items():
                sample[f"{kind}/op_{key}"] = best[key] or ops[0]
            for j in sorted({int(k.split("_")[0]) for k in edges}):
                if inputs == "edge_strength":
                    strength = {i: probs[f"{kind}/op_{j}_{i}"][best[f"{j}_{i}"]] if best[f"{j}_{i}"] else -1.0
                                for i in range(j)}
                    sample[f"{kind}/input_{j}"] = sorted(sorted(range(j), key=lambda i: (-strength[i], i))[:2])
                    continue
                pair_probs = probs[f"{kind}/input_{j}"]
                pairs = [tuple(int(t) for t in name.split("+")) for name in pair_probs]
                usable = [pr for pr in pairs if best[f"{j}_{pr[0]}"] and best[f"{j}_{pr[1]}"]] or pairs
                chosen = max(usable, key=lambda pr: (pair_probs[f"{pr[0]}+{pr[1]}"], -pairs.index(pr)))
                sample[f"{kind}/input_{j}"] = list(chosen)
        skips = [(probs[f"normal/op_{j}_{i}"]["skip_connect"], f"normal/op_{j}_{i}")
                 for j in sorted({int(k.split("_")[0]) for k in edge_ops["normal"]})
                 for i in sample[f"normal/input_{j}"] if sample[f"normal/op_{j}_{i}"] == "skip_connect"]
        if len(skips) <= max_skip_connect:
            return sample
        weakest = min(skips)[1]
        banned.setdefault(weakest, set()).add("skip_connect")


def derivable(family: Family | str, sample: Mapping[str, Any], max_skip_connect: int = 2) -> bool:
    """Whether ``derive``'s rules could have produced this (sampled) cell: where nodes pick inputs, no chosen
    edge is ``none`` and the normal cell has at most ``max_skip_connect`` skip-connects (P-DARTS). A final pick
    among sampled cells keeps to them, so that its answer is the kind of cell the derivation gives."""
    if not as_family(family).picks_inputs:
        return True
    chosen = [sample[f"{kind}/op_{j}_{i}"] for kind in ("normal", "reduce")
              for j in sorted({int(k.split("/input_")[1]) for k in sample if k.startswith(f"{kind}/input_")})
              for i in sample[f"{kind}/input_{j}"]]
    normal_skips = sum(1 for k, v in sample.items() if k.startswith("normal/input_")
                       for i in v if sample[f"normal/op_{k.split('_')[-1]}_{i}"] == "skip_connect")
    return "none" not in chosen and normal_skips <= max_skip_connect


def sample_to_arch(family: Family | str, sample: Mapping[str, Any], nodes: int = 4) -> Architecture:
    """What the reward's metrics and the eval network take: a Genotype, or the NB201 sample itself."""
    return as_family(family).from_sample(sample, nodes)


def arch_key(family: Family | str, sample: Mapping[str, Any], nodes: int = 4) -> str:
    """The one-line text of the sample's architecture (equal for equal cells)."""
    return as_family(family).arch_key(sample, nodes)
