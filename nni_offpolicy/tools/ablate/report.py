"""The grid's report: runs.csv (a row a run), summary.md (the settings, a per-variant mean ± std table, the runs)
and ablation.png (a panel a measure), from the rows the grid gathered. Apart so that how results are shown
changes without touching how they are run or judged.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nni_offpolicy.data.tables import open_table
from nni_offpolicy.files.atomic import atomic_write, atomic_write_text
from nni_offpolicy.tools.ablate.judging import budget_optimum
from nni_offpolicy.tools.ablate.plan import Plan
from nni_offpolicy.tools.ablate.variants import REFERENCE_GENOTYPE

COLUMNS = ["variant", "seed", "genotype", "best_sampled", "params_m", "flops_m", "derived_valid_acc",
           "best_sampled_valid_acc", "argmax_frozen_share", "top_op_share", "param_free_share", "wall_time_s"]
RETRAIN_COLUMNS = ["retrain_test_acc", "retrain_params_m"]
TABLE_COLUMNS = ["derived_table", "derived_table_rank", "best_sampled_table", "policy_table"]
BUDGET_COLUMNS = ["budget_optimum_table", "budget_gap"]  # with a size_budget: the table's best cell within it
SURROGATE_COLUMNS = ["derived_surrogate", "derived_surrogate_pct", "best_sampled_surrogate", "policy_surrogate",
                     "normal_param_free", "derived_params_m"]  # with a surrogate (DARTS family)
NUMERIC = {"params_m", "flops_m", "derived_valid_acc", "best_sampled_valid_acc", "argmax_frozen_share",
           "top_op_share", "param_free_share", "wall_time_s", "retrain_test_acc", "retrain_params_m", "derived_table",
           "derived_table_rank", "best_sampled_table", "policy_table", "budget_optimum_table", "budget_gap",
           *SURROGATE_COLUMNS}
# What the per-variant table averages, with its heading.
SUMMARY_METRICS = [("derived_table", "derived cell in table"), ("best_sampled_table", "best-sampled cell in table"),
                   ("policy_table", "policy's cell in table"), ("budget_gap", "gap to in-budget optimum"),
                   ("derived_surrogate", "derived cell, NB301 surrogate (%)"),
                   ("derived_surrogate_pct", "its percentile among random cells"),
                   ("best_sampled_surrogate", "best-sampled cell, surrogate (%)"),
                   ("policy_surrogate", "policy's cell, surrogate (%)"),
                   ("normal_param_free", "param-free normal edges (of 8)"),
                   ("derived_params_m", "params (M) at 20 cells x 36"),
                   ("derived_valid_acc", "derived valid acc (%)"),
                   ("best_sampled_valid_acc", "best-sampled valid acc (%)"),
                   ("params_m", "params (M)"), ("flops_m", "FLOPs (M)"),
                   ("argmax_frozen_share", "argmax frozen share"), ("top_op_share", "top-op share"),
                   ("param_free_share", "parameter-free op share"), ("wall_time_s", "wall time (s)"), ("retrain_test_acc", "retrain test acc (%)")]


def columns(plan: Plan) -> list[str]:
    budget = plan.table is not None and plan.runs[0].settings.size_budget is not None
    return (COLUMNS + (TABLE_COLUMNS if plan.table is not None else []) + (BUDGET_COLUMNS if budget else [])
            + (SURROGATE_COLUMNS if plan.surrogate is not None else [])
            + (RETRAIN_COLUMNS if plan.retrain_epochs is not None else []))


def _cell(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaN when any value is NaN."""
    values = [float(v) for v in values]
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: Sequence[Mapping[str, Any]], variants: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        entry: dict[str, Any] = {"variant": variant, "runs": len(mine)}
        for key, _ in SUMMARY_METRICS:
            if key in mine[0]:
                entry[key] = mean_std([r[key] for r in mine])
        out.append(entry)
    return out


def _code(text: str) -> str:
    """A code span inside a markdown table cell: NB201 arch strings are full of pipes, which must be escaped."""
    return "`" + str(text).replace("|", "\\|") + "`"


def _pm(pair: tuple[float, float], digits: int) -> str:
    mean, std = pair
    return "nan" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _digits(key: str) -> int:
    if key.endswith("_pct") or key == "normal_param_free":
        return 1
    return 2 if key.endswith("acc") or key.endswith(("_table", "_surrogate")) or key == "wall_time_s" else 3


def surrogate_note(plan: Plan) -> str:
    """summary.md's line on the surrogate: the model, and what random and published cells score by it."""
    chance = plan.surrogate.reference_summary()
    pdarts, darts_v2 = plan.surrogate.predict([REFERENCE_GENOTYPE, "darts_v2"])
    return (f"Cells scored by the NB301 surrogate `{plan.surrogate.model}` (predicted CIFAR-10 validation accuracy "
            f"in NAS-Bench-301's protocol, %, epoch {plan.surrogate.epoch:g}): {chance['cells']} uniformly random "
            f"cells (seed {chance['seed']}) give median {chance['median']:.2f}, top 10 % ≥ {chance['top10']:.2f}, "
            f"top 1 % ≥ {chance['top1']:.2f}, max {chance['max']:.2f}; the published P-DARTS cell {pdarts:.2f}, "
            f"DARTS V2 {darts_v2:.2f}. Percentile: the share of those random cells the derived cell's value is at "
            f"least as good as. Params: the derived cell's network at 20 cells of 36 channels on CIFAR-10.")


def summary_markdown(plan: Plan, rows: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]]) -> str:
    s = plan.runs[0].settings
    lines = [f"# Ablation: preset {plan.preset}, space {s.space}, dataset {s.dataset}", "",
             f"Variants {', '.join(plan.variants)}; seeds {', '.join(map(str, plan.seeds))}; "
             f"layers {s.layers}, ops kept {s.ops_kept}, epochs {s.epochs} (warm-up {s.warmup_epochs}), "
             f"weight mode {s.weight_mode}; egreedy epsilon {plan.epsilon}."]
    shown = {k: v for k, v in plan.overrides.items() if k != "progress"}
    if shown:
        lines.append("Overrides for every run: " + ", ".join(f"`{k}={v}`" for k, v in shown.items()) + ".")
    if plan.retrain_epochs is not None:
        extra = ", ".join(f"`{k}={v}`" for k, v in plan.retrain_overrides.items())
        lines.append(f"Retrain: {plan.retrain_epochs} epoch(s) at the evaluation size (eval_layers {s.eval_layers}, "
                     f"eval_channels {s.eval_channels})" + (f", {extra}" if extra else "")
                     + "; test accuracy of the final epoch.")
    if s.reward_source == "table":
        lines.append(f"Reward source: the table `{s.reward_table}` (no supernet trained): the valid accuracies "
                     f"below are that table's values of the cells, in %.")
    if plan.table is not None:
        c = plan.table.column_summary(plan.table_column)
        lines.append(f"Cells looked up in {plan.table.path}, column `{plan.table_column}` ({c['better']} is "
                     f"better, {c['cells']} cells): table median {c['median']:.2f}, optimum {c['optimum']:.2f} "
                     f"({_code(c['optimum_arch'])}).")
        if s.size_budget is not None and rows:
            value, arch, cells = budget_optimum(plan, s.size_budget, plan.budget_eval_size)
            lines.append(f"Hard budget {s.size_budget} M params at evaluation size: {cells} cells of the table "
                         f"are within it; the best of them {value:.2f} ({_code(arch)}); gap = that minus the "
                         f"derived cell's value.")
    if plan.surrogate is not None:
        lines.append(surrogate_note(plan))
    lines += ["", "## Per variant (mean ± sample std over seeds)", ""]
    summary = summarise(rows, plan.variants)
    keys = [(k, title) for k, title in SUMMARY_METRICS if summary and k in summary[0]]
    lines.append("| variant | runs | " + " | ".join(title for _, title in keys) + " |")
    lines.append("|---|---:|" + "---:|" * len(keys))
    for entry in summary:
        lines.append(f"| {entry['variant']} | {entry['runs']} | "
                     + " | ".join(_pm(entry[k], _digits(k)) for k, _ in keys) + " |")
    if reference:
        acc = mean_std([r["retrain_test_acc"] for r in reference])
        params = mean_std([r["retrain_params_m"] for r in reference])
        lines += ["", f"Published P-DARTS cell, same retrain schedule: test acc {_pm(acc, 2)} % over "
                      f"{len(reference)} seed(s), {params[0]:.3f} M params."]
    lines += ["", "## Runs", ""]
    cols = columns(plan)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---:" if c in NUMERIC or c == "seed" else "---" for c in cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_code(row[c]) if c in ("genotype", "best_sampled") else _cell(row[c])
                                       for c in cols) + " |")
    lines += ["", "derived valid acc: the derived cell through the last trained stage's supernet weights (valid "
              "split; a last stage with 0 epochs is scored by the zero-cost pick, untrained). argmax frozen share: "
              "share of that stage's op decisions whose argmax never changed after warm-up "
              "(random: a fresh uniform pick per update, the chance level). top-op share: share of that "
              "stage's edges taken by the most frequent argmax op (random: by its random derivation's op). "
              "Both near 1 = the Matthew effect. parameter-free op share: share of the derived cell's ops with no "
              "weights (none, skip, pools); near 1 = the weight-sharing collapse.", ""]
    return "\n".join(lines)


def write_csv(path: Path, cols: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(cols), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row[c], 6) if isinstance(row[c], float) else row[c] for c in cols})
    atomic_write_text(buffer.getvalue(), path)


def write_outputs(plan: Plan, rows: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]]) -> list[Path]:
    out = plan.output
    files = [out / "runs.csv", out / "summary.md", out / "ablation.png"]
    write_csv(files[0], columns(plan), rows)
    atomic_write_text(summary_markdown(plan, rows, reference), files[1])
    plot_ablation(plan, rows, reference, files[2])
    if reference:
        files.append(out / "reference.csv")
        write_csv(files[-1], ["genotype", "seed", "retrain_test_acc", "retrain_params_m"], reference)
    return files


def plot_ablation(plan: Plan, rows: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]],
                  path: Path) -> Path:
    """One panel per measure: per variant a bar at the mean, a std whisker and a dot per seed."""
    panels = [("derived_table", f"derived cell: {plan.table_column}")] if plan.table is not None else []
    if plan.surrogate is not None:
        panels.append(("derived_surrogate", "derived cell: NB301 surrogate (%)"))
    s = plan.runs[0].settings
    table_reward, same = s.reward_source == "table", False
    if table_reward:
        reward_table, reward_column = open_table(s.reward_table)
        same = reward_table is plan.table and reward_table.single_column(reward_column) == plan.table_column
    if not (table_reward and same):  # else the same values as the first panel
        panels.append(("derived_valid_acc", "derived cell: table value (%), the reward" if table_reward
                       else "derived cell: supernet valid acc (%)"))
    panels += [("top_op_share", "top-op share (Matthew effect)"),
              ("argmax_frozen_share", "argmax frozen after warm-up"),
              ("param_free_share", "parameter-free ops in derived cell")]
    if plan.retrain_epochs is not None:
        panels.append(("retrain_test_acc", f"retrain test acc (%), {plan.retrain_epochs} epoch(s)"))
    else:
        panels.append(("params_m", "params (M) at evaluation size"))
    variants = [v for v in plan.variants if any(r["variant"] == v for r in rows)]
    fig = Figure(figsize=(3.2 * len(panels), 3.6), dpi=120)
    FigureCanvasAgg(fig)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728", "#9467bd", "#8c564b"]
    rng = np.random.default_rng(0)
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for x, variant in enumerate(variants):
            values = np.array([r[key] for r in rows if r["variant"] == variant], dtype=float)
            finite = values[np.isfinite(values)]
            color = colors[x % len(colors)]
            if finite.size:
                std = finite.std(ddof=1) if finite.size > 1 else 0.0
                ax.bar(x, finite.mean(), width=0.6, color=color, alpha=0.35, edgecolor=color)
                ax.errorbar(x, finite.mean(), yerr=std, color=color, capsize=4, lw=1.2)
                ax.scatter(x + rng.uniform(-0.15, 0.15, finite.size), finite, s=16, color=color, zorder=3,
                           edgecolor="black", linewidth=0.4)
        if key == "retrain_test_acc" and reference:
            ref = np.array([r["retrain_test_acc"] for r in reference], dtype=float)
            ax.axhline(ref.mean(), color="black", ls="--", lw=1, label="published P-DARTS")
            if ref.size > 1:
                ax.axhspan(ref.mean() - ref.std(ddof=1), ref.mean() + ref.std(ddof=1), color="black", alpha=0.08)
            ax.legend(fontsize=7, loc="lower right")
        if key == "derived_table":
            summary = plan.table.column_summary(plan.table_column)
            ax.axhline(summary["optimum"], color="black", ls="-", lw=1, label="table optimum")
            ax.axhline(summary["median"], color="black", ls="--", lw=1, label="table median")
            ax.legend(fontsize=7, loc="lower right")
        if key == "derived_surrogate":
            chance = plan.surrogate.reference_summary()
            pdarts = plan.surrogate.predict([REFERENCE_GENOTYPE])[0]
            ax.axhline(pdarts, color="black", ls="-", lw=1, label="published P-DARTS")
            ax.axhline(chance["top10"], color="black", ls=":", lw=1, label="random: top 10 %")
            ax.axhline(chance["median"], color="black", ls="--", lw=1, label="random: median")
            ax.legend(fontsize=7, loc="lower right")
        if key.endswith("share"):
            ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"ablation: {s.space} on {s.dataset}, seeds {','.join(map(str, plan.seeds))} "
                 f"(bar = mean, whisker = std, dots = seeds)", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    return path
