"""Keeping a hard parameter budget reachable while the space shrinks.

A budget zeroes the rewards of cells above it only from ``size_budget_from_stage``, so that the early stages'
rewards rank ops by accuracy rather than by price (from stage 1 a loose budget drops every costly op from every
edge at the first shrink). But the shrink itself then ranks by accuracy alone, and it can keep only costly ops:
at 0.2 M from stage 3 the nb201-proxy's last stage held convolutions only, and no cell it could derive fitted.
``BudgetFit`` is the test the shrink uses to refuse such a space: the cheapest cell of the kept ops must be within
the budget. ``progressive.shrink`` repairs a space that fails it by swapping, edge by edge, a kept op for a
cheaper dropped one where that loses the least policy probability.
"""
from __future__ import annotations

from typing import Any, Mapping

from search_spaces.families import EdgeOpLists, Family

from nni_offpolicy.search.progressive import Probabilities, derive, sample_to_arch
from nni_offpolicy.search.rewards import RewardModel


class BudgetFit:
    """``fits(space)``: whether the cheapest cell of ``space`` (per edge its cheapest op, priced at evaluation
    size by the search's own cost model) is within ``budget`` M params; ``op_params``: the ordering by which
    "cheaper" is meant (an op's parameters on one edge; the same order at every edge of a cell)."""

    def __init__(self, rewards: RewardModel, family: Family, nodes: int, budget_m: float, ops: list[str],
                 probs: Probabilities, max_skip_connect: int):
        self.rewards, self.family, self.nodes, self.budget_m = rewards, family, nodes, budget_m
        self.max_skip_connect = max_skip_connect
        self.op_params = {op: float(rewards.cost.op_params(op)) for op in ops}
        # derive() picks the max score: the cheapest op per edge; input pairs (DARTS) all score alike
        self._scores = {label: ({o: -self.op_params[o] for o in options} if "/op_" in label
                                else {o: 0.0 for o in options}) for label, options in probs.items()}

    def cheapest_cell(self, space: EdgeOpLists) -> dict[str, Any]:
        return derive(self.family, space, self._scores, self.max_skip_connect)

    def cheapest_params_m(self, space: EdgeOpLists) -> float:
        arch = sample_to_arch(self.family, self.cheapest_cell(space), self.nodes)
        return self.rewards.price(arch)[0] / 1e6

    def __call__(self, space: EdgeOpLists) -> bool:
        return self.cheapest_params_m(space) <= self.budget_m


def all_ops(edge_ops: EdgeOpLists) -> list[str]:
    return sorted({op for edges in edge_ops.values() for ops in edges.values() for op in ops})


def budget_fit(rewards: RewardModel, family: Family, nodes: int, budget_m: float | None, edge_ops: EdgeOpLists,
               probs: Mapping[str, Mapping[str, float]], max_skip_connect: int) -> BudgetFit | None:
    """The shrink's budget test for a search with a hard budget; None without one."""
    if budget_m is None:
        return None
    return BudgetFit(rewards, family, nodes, budget_m, all_ops(edge_ops), probs, max_skip_connect)
