"""What a finished run of the grid is worth: its row (read from its genotype.json), its cells' values in a
benchmark table or by the NB301 surrogate, and the table's in-budget optimum it is measured against; the table
and the surrogate are opened and checked here when the grid is planned. Apart from the grid because a finished
run is judged the same whether it ran now or in an earlier, killed grid.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from search_spaces.families import get_family
from search_spaces.genotypes import sample_to_nb201
from search_spaces.ops import is_parameter_free

from nni_offpolicy.data.tables import open_table
from nni_offpolicy.errors import UserError
from nni_offpolicy.profiling import EvalCostModel
from nni_offpolicy.settings import SearchSettings
from nni_offpolicy.tools.ablate.plan import Log, Plan


def open_grid_table(plan: Plan, spec: str) -> tuple[Any, str]:
    """The benchmark table and its one column, checked before anything runs."""
    if not plan.family.tables:
        raise UserError(f"--table: benchmark tables are NAS-Bench-201, but this grid searches the "
                        f"{plan.runs[0].settings.space} space (DARTS family); use --space nb201 or a nb201 preset")
    table, column = open_table(spec)
    return table, table.single_column(column)


def open_grid_surrogate(plan: Plan, spec: str) -> Any:
    """The NB301 surrogate, opened, checked and its random reference scored, before anything runs."""
    from nni_offpolicy.data.surrogate import NODES, open_surrogate

    s = plan.runs[0].settings
    if plan.family.tables:
        raise UserError(f"--surrogate: the NB301 surrogate judges DARTS cells, but this grid searches the {s.space} "
                        f"space (NAS-Bench-201); use --table for NB201 grids")
    if s.nodes != NODES:
        raise UserError(f"--surrogate: NB301 cells have {NODES} intermediate nodes, this grid's have {s.nodes}; "
                        f"use --set nodes={NODES}")
    judge = open_surrogate(spec)
    judge.random_reference()
    return judge


def surrogate_values(plan: Plan, doc: Mapping[str, Any], log: Log, label: str = "the run") -> dict[str, Any]:
    """The derived, best-sampled and policy cells' predicted accuracies, the derived cell's percentile, its
    parameter-free normal edges and parameters (NaN, and a line, for a cell the model cannot encode: the runs
    have already taken their time, so the table is still written)."""
    from search_spaces.genotypes import sample_to_genotype

    from nni_offpolicy.data.surrogate import as_genotype, eval_params_m, normal_param_free

    best = doc.get("best_sampled")
    candidates = doc.get("final_candidates")  # a final pick with candidates: candidate 0 is the policy's own cell
    cells = {"derived": doc["genotype"], "best_sampled": best["genotype"] if best else None}
    if candidates:
        cells["policy"] = sample_to_genotype(candidates[0]["sample"], int(doc["settings"]["nodes"]))
    out: dict[str, Any] = {}
    for name, arch in cells.items():
        out[f"{name}_surrogate"] = math.nan
        if arch is not None:
            try:
                source = f"{label}, {name.replace('_', '-')} cell"
                out[f"{name}_surrogate"] = plan.surrogate.predict([arch], [source])[0]
            except UserError as exc:
                log(f"  surrogate: {exc}")
    if not candidates:  # the policy's cell is the derived one
        out["policy_surrogate"] = out["derived_surrogate"]
    out["derived_surrogate_pct"] = plan.surrogate.percentile(out["derived_surrogate"])
    derived = as_genotype(doc["genotype"], f"{label}, derived cell")
    out["normal_param_free"] = normal_param_free(derived)
    out["derived_params_m"] = eval_params_m([derived])[0]
    return out


def table_values(plan: Plan, doc: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """The derived and best-sampled cells' values (NaN, and a line, for a cell the table lacks: the runs have
    already taken their time, so the table is still written)."""
    out: dict[str, Any] = {}
    best = doc.get("best_sampled")
    candidates = doc.get("final_candidates")  # final_pick=best-sampled: candidate 0 is the policy's own cell
    cells = [("derived", doc.get("arch") or doc["genotype"]), ("best_sampled", best["genotype"] if best else None)]
    if candidates:
        cells.append(("policy", sample_to_nb201(candidates[0]["sample"])))
    for name, arch in cells:
        if arch is None:
            out[f"{name}_table"] = math.nan
            continue
        try:
            found = plan.table.lookup(arch, plan.table_column)
        except UserError as exc:
            log(f"  table: {exc}")
            out[f"{name}_table"] = math.nan
            if name == "derived":
                out["derived_table_rank"] = math.nan
            continue
        out[f"{name}_table"] = found.value
        if name == "derived":
            out["derived_table_rank"] = found.rank
    if not candidates:  # the policy's cell is the derived one
        out["policy_table"] = out["derived_table"]
    budget = doc.get("settings", {}).get("size_budget")
    if budget is not None:
        plan.budget_eval_size = doc["eval_size"]
        optimum = budget_optimum(plan, float(budget), doc["eval_size"])
        out["budget_optimum_table"] = optimum[0]
        out["budget_gap"] = optimum[0] - out["derived_table"]
    return out


def planned_eval_size(settings: SearchSettings) -> dict[str, int]:
    """The evaluation size a run's genotype.json will record (``eval_size``), from its settings and the dataset's
    shape (read without loading CIFAR; the other datasets are loaded, as the search loads them)."""
    from nni_offpolicy.search.table_reward import data_shape

    shape = data_shape(settings)
    return {"layers": settings.eval_layers, "channels": settings.eval_channels, "input_size": shape.input_size,
            "in_channels": shape.in_channels, "num_classes": shape.num_classes}


def check_budgets(plan: Plan) -> None:
    """With --table and a size_budget: the table's best cell within the budget at the runs' evaluation size,
    found before the first search (``budget_optimum`` refuses a budget no cell meets) and kept for the rows."""
    seen = set()
    for run in plan.runs:
        s = run.settings
        what = (s.size_budget, s.dataset, s.data_dir, s.download, s.image_size, s.eval_layers, s.eval_channels)
        if s.size_budget is not None and what not in seen:
            seen.add(what)
            plan.budget_eval_size = planned_eval_size(s)
            budget_optimum(plan, float(s.size_budget), plan.budget_eval_size)


def budget_optimum(plan: Plan, budget_m: float, eval_size: Mapping[str, int]) -> tuple[float, str, int]:
    """The table's best cell among those whose parameters at the runs' evaluation size are within ``budget_m``
    (M), the cell and how many cells qualify: what a hard-budget search is measured against. Every cell is
    priced by the same cost model the search's reward used (summed per-edge costs, about a second in all)."""
    key = (budget_m, tuple(sorted(eval_size.items())))
    if key not in plan.budget_optima:
        model = EvalCostModel(plan.family, layers=eval_size["layers"], channels=eval_size["channels"],
                              num_classes=eval_size["num_classes"], in_channels=eval_size["in_channels"],
                              input_size=eval_size["input_size"])
        params_m = np.array([model.cost(arch)[0] / 1e6 for arch in plan.table.archs])
        within = params_m <= budget_m + 1e-12
        if not within.any():
            raise UserError(f"--table: no cell of {plan.table.path} is within size_budget={budget_m:g} M params at "
                            f"the runs' evaluation size ({eval_size['layers']} cells, {eval_size['channels']} "
                            f"channels, {eval_size['input_size']} px); its smallest has {params_m.min():.4g} M: "
                            f"raise size_budget or leave it out")
        value, arch = plan.table.optimum(plan.table_column, among=within)
        plan.budget_optima[key] = (value, arch, int(within.sum()))
    return plan.budget_optima[key]


def arch_text(family: str, genotype: Any) -> str:
    """One line for a table: the Genotype(...) string, or the NB201 arch string."""
    spec = get_family(family)
    return spec.to_text(spec.from_json(genotype))


def last_trained_stage(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record of the last stage that trained: an untrained last stage (epochs 0, scored by the zero-cost
    pick) has no policy of its own, so the Matthew-effect measures are the stage's before it."""
    return next(st for st in reversed(doc["stages"]) if st.get("trained", True))


def run_row(variant: str, seed: int, doc: Mapping[str, Any]) -> dict[str, Any]:
    best = doc.get("best_sampled")
    last = last_trained_stage(doc)
    return {
        "variant": variant, "seed": seed,
        "genotype": doc.get("arch") or doc.get("genotype_str") or arch_text(doc["family"], doc["genotype"]),
        "best_sampled": arch_text(doc["family"], best["genotype"]) if best else "n/a",
        "params_m": doc["params_m"], "flops_m": doc["flops_m"], "derived_valid_acc": doc["derived_valid_acc"],
        "best_sampled_valid_acc": best["valid_acc"] if best else math.nan,
        "argmax_frozen_share": last["argmax_frozen_share"], "top_op_share": last["top_op_share"],
        "param_free_share": parameter_free_share(doc), "wall_time_s": doc["wall_time_s"],
    }


def derived_ops(doc: Mapping[str, Any]) -> list[str]:
    """The ops of a search's derived cell: the NB201 sample's six, or a Genotype's chosen edges (normal and
    reduce), not the op decisions of edges the DARTS cell did not keep."""
    spec = get_family(doc["family"])
    return spec.ops_of(spec.normalise(doc["genotype"] if "genotype" in doc else doc["sample"]))


def parameter_free_share(doc: Mapping[str, Any]) -> float:
    """Share of the derived cell's ops with no weights (none, skip, pools): near 1 is the weight-sharing collapse
    the lab log and NAS-Bench-201 describe, which a valid-accuracy column alone does not show."""
    ops = derived_ops(doc)
    return sum(map(is_parameter_free, ops)) / len(ops)
