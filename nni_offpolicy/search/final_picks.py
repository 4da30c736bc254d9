"""How a search picks its answer at the end: one class per pick (``settings.final_pick``), behind one small interface.

The search loop asks its pick for the answer (``FinalPick.answer``) instead of branching on the settings string,
and records what comes back: the answer's sample, its accuracy on the ``eval_images`` where the pick measured it
(None: the loop measures it), and the candidates' records (genotype.json's ``final_candidates``). A pick reads
what it needs of the search through ``PickSource`` (the settings, the family, the tracker of sampled cells, the
reward model's prices and scores, the evaluation through the shared weights, the derivation) and the last
stage's run and space, and imports nothing of the loop.

A new pick is one ``FinalPick`` subclass and one entry in ``FINAL_PICKS`` (``search.registry``).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tqdm import tqdm

from nni_offpolicy.console import bars_wanted
from nni_offpolicy.search.progressive import arch_key, build_decisions, derivable, sample_to_arch
from nni_offpolicy.search.registry import FINAL_PICKS, fill
from nni_offpolicy.search.space_cells import space_samples, within

if TYPE_CHECKING:
    from search_spaces.families import Family

    from nni_offpolicy.search.rewards import RewardModel
    from nni_offpolicy.settings import SearchSettings


class PickSource(Protocol):
    """What a pick reads of the search (``search.loop.ProgressiveSearch`` and the table source's subclass)."""

    settings: "SearchSettings"
    family: "Family"  # the record (SearchSettings.family), not its name
    tracker: Any  # search.tracker.Tracker: ranked_cells(), the last stage's sampled cells by mean reward
    rewards: "RewardModel"
    progress: bool

    def evaluate(self, run: Any, sample: dict | None, batches: int | None = None) -> float: ...

    def greedy_sample(self, run: Any) -> dict[str, Any]: ...


class Answer(NamedTuple):
    """What a pick returns: the answer, its accuracy in % if the pick measured it, the candidates' records."""

    sample: dict[str, Any]
    valid_acc: float | None
    candidates: list[dict[str, Any]]


class FinalPick:
    """The base of every pick: the candidates (the policy's cell first, then the ``final_candidates``
    highest-mean-reward cells the last stage sampled that the derivation could give) and a candidate's record.
    A subclass sets ``name`` and overrides ``answer``."""

    name = ""

    def __init__(self, search: PickSource):
        self.search = search
        self.settings = search.settings

    def answer(self, run: Any, space: dict) -> Answer:
        """The search's answer; ``run`` is the last trained stage, ``space`` the last stage's per-edge op lists
        (an untrained last stage's, else ``run``'s own)."""
        raise NotImplementedError

    def candidates(self, policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The policy's cell and the sampled candidates by key, the policy's first. Sampled cells the derivation
        could not give (a DARTS cell with a ``none`` input or too many skip-connects) are not candidates."""
        s, family = self.settings, self.search.family
        candidates = {arch_key(family, policy, s.nodes): policy}
        ranked = self.search.tracker.ranked_cells()
        sampled = [c for c in ranked if derivable(family, c["sample"], s.max_skip_connect)]
        for cell in sampled[: s.final_candidates]:
            candidates.setdefault(arch_key(family, cell["sample"], s.nodes), cell["sample"])
        return candidates

    def scored(self, run: Any, key: str, sample: dict, source: str) -> dict[str, Any]:
        """A final candidate's record: its accuracy on the ``eval_images``, price, zero-cost score, reward."""
        search, s = self.search, self.settings
        accuracy = search.evaluate(run, sample)
        metrics = search.rewards.metrics(sample_to_arch(search.family, sample, s.nodes), key)
        out = {"sample": sample, "valid_acc": accuracy, "params_m": metrics["params_m"],
               "reward": search.rewards.reward(accuracy / 100.0, metrics, s.stages - 1), "from": source}
        if "zero_cost" in metrics:
            out["zero_cost"] = metrics["zero_cost"]
        return out


class PolicyPick(FinalPick):
    """``final_pick=policy``: the last stage's derivation, as the learner derives it; measured by the loop."""

    name = "policy"

    def answer(self, run: Any, space: dict) -> Answer:
        return Answer(self.search.greedy_sample(run), None, [])


class BestSampledPick(FinalPick):
    """``final_pick=best-sampled``: the policy's cell and the sampled candidates are each scored again, on the
    ``eval_images`` rather than one reward batch, with the same reward (accuracy x metric terms, the hard budget),
    and the best wins (the policy's cell on a tie): a noisy reward batch picked the candidates, a larger one
    decides between them."""

    name = "best-sampled"

    def answer(self, run: Any, space: dict) -> Answer:
        scored: list[dict[str, Any]] = []
        for key, sample in self.candidates(self.search.greedy_sample(run)).items():
            scored.append(self.scored(run, key, sample, "policy" if not scored else "sampled"))
        best = max(range(len(scored)), key=lambda i: (scored[i]["reward"], -i))
        return Answer(scored[best]["sample"], scored[best]["valid_acc"], scored)


class ZeroCostPick(FinalPick):
    """``final_pick=zero-cost``: the cell with the best zero-cost score on its evaluation-size network
    (``eval_layers`` x ``eval_channels``, the network it becomes; the reward's scorer is smaller because it
    scores thousands of cells), within the hard budget where one is set (every cell over it: the cheapest), over
    every cell of the last stage's space when it is small enough to score whole (``space_cells``), else over the
    candidates (the policy's cell first). Why: in the last stage of an NB201 search the cells left are all of one
    kind, and there the supernet's accuracy ranks them at chance while NASWOT still orders them (README, the
    final-pick rows). The competing cells are scored together (``ZeroCostScorer.score_set``): a single score
    ranks by its value, an ensemble (``zero_cost=ens:...``) by each cell's mean rank among them. The record lists
    the policy's cell and the ``final_candidates`` best-scored cells, each with ``eval_zero_cost`` (that value)
    and its accuracy through the supernet for comparison; the pick is the first of those after the policy's,
    unless the policy's own cell scored best."""

    name = "zero-cost"

    def answer(self, run: Any, space: dict) -> Answer:
        search, s, family = self.search, self.settings, self.search.family
        candidates = self.candidates(search.greedy_sample(run))
        policy_key = next(iter(candidates))
        pool = {key: sample for key, sample in candidates.items() if within(sample, space)}
        for sample in space_samples(build_decisions(family, space)) or []:
            if derivable(family, sample, s.max_skip_connect):
                pool.setdefault(arch_key(family, sample, s.nodes), sample)
        if not pool:  # a DARTS space too large to enumerate, none of whose candidates lie in the kept ops
            pool = dict(candidates)
        # the policy's cell is recorded even when the space does not hold it (a random learner's own draws)
        cells = {policy_key: candidates[policy_key], **pool}
        archs = {key: sample_to_arch(family, sample, s.nodes) for key, sample in cells.items()}
        order = list(pool)  # the policy's cell first where it competes: it wins a tie
        params = {key: search.rewards.price(archs[key])[0] / 1e6 for key in order}
        fits = [k for k in order if s.size_budget is None or params[k] <= s.size_budget]
        scorer = search.rewards.eval_zero_cost
        # scored together: a single score's raw values, an ensemble's mean rank among the competing cells
        scores = scorer.score_set({key: archs[key] for key in fits}, progress=lambda keys: tqdm(
            keys, desc="final pick: zero-cost scores at evaluation size", leave=False,
            disable=not bars_wanted(search.progress), file=sys.stderr, dynamic_ncols=True))
        ranked = sorted(fits, key=lambda k: -scores[k]) if fits else sorted(order, key=params.__getitem__)

        def record(key: str, source: str) -> dict[str, Any]:
            out = self.scored(run, key, cells[key], source)
            # the policy's cell may lie above a budget, and so be scored only here: its value as if it competed
            # (components are cached, so only its own are new)
            out["eval_zero_cost"] = scores[key] if key in scores else scorer.score_set(
                {**{k: archs[k] for k in fits}, key: archs[key]})[key]
            return out

        records = [record(policy_key, "policy, best zero-cost" if ranked[0] == policy_key else "policy")]
        records += [record(key, "space") for key in ranked[: s.final_candidates] if key != policy_key]
        best = records[0] if ranked[0] == policy_key else records[1]
        return Answer(best["sample"], best["valid_acc"], records)


fill(FINAL_PICKS, [PolicyPick, BestSampledPick, ZeroCostPick])  # FINAL_PICKS: name -> class, in search.registry


def make_final_pick(search: PickSource) -> FinalPick:
    """The pick ``settings.final_pick`` names (``SearchSettings.validate`` has refused unknown names)."""
    return FINAL_PICKS[search.settings.final_pick](search)
