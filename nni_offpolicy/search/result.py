"""genotype.json's document: what a finished search derived, how well it scored, and how the search got there.

Built apart from the loop (``ProgressiveSearch.finish`` calls it) so that the document's assembly (the derived
cell in every form a later step reads, its price and reward, the best sampled cell, the stages' summaries) is
one place to read, and a reward source that reports differently (``table_reward``) adjusts the finished
document instead of the loop.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from search_spaces.families import architecture_to_json

from nni_offpolicy.search.progressive import arch_key, sample_to_arch

if TYPE_CHECKING:
    from nni_offpolicy.search.loop import ProgressiveSearch, StageRun


class ResultBuilder:
    """Assembles genotype.json's document from a search at its end (its last stage still built)."""

    def __init__(self, search: "ProgressiveSearch"):
        self.search = search

    def build(self, run: "StageRun") -> dict[str, Any]:
        """The document: derived cell, its accuracy/price/reward, the best sampled cell, stages, settings."""
        search, s, family = self.search, self.search.settings, self.search.family
        derived, acc, candidates = search.final_sample(run)
        if acc is None:
            acc = search.evaluate(run, derived)
        arch = sample_to_arch(family, derived, s.nodes)
        key = arch_key(family, derived, s.nodes)
        metrics = search.rewards.metrics(arch, key)
        params, flops = search.rewards.price(arch)
        doc: dict[str, Any] = {
            "family": family.name, "space": s.space,
            "genotype": architecture_to_json(family, arch), "sample": derived,
            "params": params, "params_m": params / 1e6, "flops": flops, "flops_m": flops / 1e6,
            "eval_size": {"layers": s.eval_layers, "channels": s.eval_channels, "input_size": search.input_size,
                          "in_channels": search.in_channels, "num_classes": search.num_classes},
            "derived_valid_acc": acc,
            "valid_images": sum(int(y.shape[0]) for _, y in search.valid_batches[:search.eval_batches]),
            "derived_reward": search.rewards.reward(acc / 100.0, metrics, s.stages - 1),
        }
        doc[family.text_field] = family.to_text(arch)  # "arch" (NB201 string) or "genotype_str" (Genotype(...))
        if s.size_budget is not None:
            # a hard budget the answer breaks (no sampled or derived cell of the last stage's space fits it)
            # must say so rather than pass for one within it
            doc["within_budget"] = params / 1e6 <= s.size_budget
        if candidates:
            doc["final_candidates"] = candidates
        best = self.best_sampled(run)
        if best is not None:
            doc["best_sampled"] = best
        doc["stages"] = search.stage_summaries
        doc["settings"] = s.to_dict()
        doc["wall_time_s"] = search.elapsed_before + time.time() - search.started
        return doc

    def best_sampled(self, run: "StageRun") -> dict[str, Any] | None:
        """The highest-reward cell the controller steps sampled in the last stage that sampled any (its accuracy
        measured again now, on the final supernet), or None when no controller step ran."""
        search, best = self.search, self.search.tracker.best
        if best is None:
            return None
        best_arch = sample_to_arch(search.family, best["sample"], search.settings.nodes)
        return {"genotype": architecture_to_json(search.family, best_arch),
                "sample": best["sample"], "reward": best["reward"], "stage": best["stage"] + 1,
                "params_m": best["params_m"], "flops_m": best["flops_m"],
                "valid_acc": search.evaluate(run, best["sample"])}
