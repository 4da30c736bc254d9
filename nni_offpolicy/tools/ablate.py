"""The ablation harness: one grid of searches over variants x seeds, then a table (CSV + markdown) and a plot.

Every run uses the same preset, space, data, epochs and overrides; only the way the architecture parameters learn
(and the seed) changes:

- ``offpolicy-uniform`` / ``offpolicy-egreedy`` / ``on-policy``: the REINFORCE controller with behaviour policy
  uniform, epsilon-greedy (``epsilon``) or pi itself;
- ``random``: no learning (RandomNAS): random per-edge shrinking, a uniformly random genotype of the final
  stage's ops, seeded by the run's seed; its uniform samples give the best-sampled architecture;
- ``darts``: first-order DARTS on the same supernet and schedule (``learners.darts_alpha_step``), inputs derived
  by edge strength;
- ``offpolicy-naswot``: ``offpolicy-uniform`` whose reward also multiplies in the NASWOT zero-cost score of each
  sampled cell (``zero_cost.py``), (score / target) ^ 4.

Layout of ``output``::

    <variant>/seed<k>/       one search (genotype.json, metrics.jsonl, checkpoint.pt, tensorboard/)
    <variant>/seed<k>/retrain/   with retrain_epochs: the derived cell retrained (result.json)
    published-pdarts/seed<k>/retrain/   the published P-DARTS cell, same retrain schedule (DARTS family only)
    runs.csv, summary.md, ablation.png

With ``table`` (``TABLE[:COLUMN]``, NB201 only) every run's derived and best-sampled cells are looked up in a
benchmark table (``data/tables.py``): runs.csv, summary.md and ablation.png gain their values, beside the table's
median and optimum. The table is read and checked when the grid is planned, before any search runs.

With ``surrogate`` (``MODEL.onnx[:ENCODING.json]``, DARTS family only) every run's derived, best-sampled and
policy cell is scored by a NAS-Bench-301 surrogate (``data/surrogate.py``): runs.csv, summary.md and ablation.png
gain their predicted accuracies, the derived cell's percentile among 1,000 random cells scored by the same model,
its parameter-free normal edges and its parameters at 20 cells of 36 channels. The model is opened and checked
when the grid is planned. Re-running a finished grid with it only adds the columns (every search is skipped).

A run whose genotype.json exists is skipped (a killed grid resumes; a run killed mid-way resumes from its
checkpoint), as is a retrain whose result.json exists, after checking that they were made with these settings.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from search_spaces.families import get_family
from search_spaces.genotypes import sample_to_nb201
from search_spaces.ops import is_parameter_free
from search_spaces.presets import space_preset

from nni_offpolicy.files import checkpoint as ckpt
from nni_offpolicy.files.atomic import atomic_write, atomic_write_text, check_writable_folder
from nni_offpolicy.errors import UserError
from nni_offpolicy.files.locking import output_lock
from nni_offpolicy.parsing import parse_choices, parse_int
from nni_offpolicy.profiling import EvalCostModel
from nni_offpolicy.retrain import CHECKPOINT as RETRAIN_CHECKPOINT
from nni_offpolicy.retrain import RESULT, RetrainSettings, coerce_overrides, retrain_differences, run_retrain
from nni_offpolicy.files.run_folder import GENOTYPE_FILE, FolderKind, check_run_folder, claim_run_folder
from nni_offpolicy.search.loop import CHECKPOINT, run_search
from nni_offpolicy.settings import NASWOT_RECIPE
from nni_offpolicy.settings import NASWOT_TAPER as TAPERED_NASWOT
from nni_offpolicy.settings import SearchSettings, load_settings, plain_recipe, resume_differences
from nni_offpolicy.data.tables import open_table


# What every variant starts from: the plain method's reward and pick (the dataclass defaults: no zero-cost term,
# the policy's own cell). A preset may carry a recipe (the NB201 presets: the NASWOT recipe); without this the controls
# (random, darts, offpolicy-uniform) would silently inherit it and stop being the baselines the table names.
PLAIN = plain_recipe()

# the -pick variants' reward and pick (NASWOT exponent 4, best of the sampled cells); only the controller differs
NASWOT_PICK = {"behaviour": "uniform", "zero_cost": "naswot", "zero_cost_exponent": 4.0, "final_pick": "best-sampled"}
# the taper variants': the same, with the exponent 1 in the last stage
NASWOT_TAPER = {**NASWOT_PICK, **TAPERED_NASWOT}
# the space variants': the taper answered by the zero-cost pick over the whole last space (the NB201 presets' recipe)
NASWOT_SPACE = {**NASWOT_PICK, **NASWOT_RECIPE}

VARIANTS: dict[str, dict[str, Any]] = {
    "offpolicy-uniform": {"controller": "reinforce", "behaviour": "uniform"},
    "offpolicy-egreedy": {"controller": "reinforce", "behaviour": "egreedy"},  # + epsilon
    "on-policy": {"controller": "reinforce", "behaviour": "on-policy"},
    "random": {"controller": "random", "behaviour": "uniform"},
    "darts": {"controller": "darts"},
    # off-policy uniform with the NASWOT zero-cost score as a reward term (zero_cost.py); the exponent and the
    # other zero_cost_* settings are defaults a user's --set may change
    "offpolicy-naswot": {"controller": "reinforce", "behaviour": "uniform", "zero_cost": "naswot",
                         "zero_cost_exponent": 4.0},
    # offpolicy-naswot whose answer is the best of the policy's cell and the last stage's top sampled cells,
    # scored again on eval_images (search.final_sample), and the same pick after random search (RSPS' recipe
    # with the same reward: what the controller adds over sampling alone)
    "offpolicy-naswot-pick": {"controller": "reinforce", **NASWOT_PICK},
    "random-naswot-pick": {"controller": "random", **NASWOT_PICK},
    # offpolicy-naswot-pick whose zero-cost weight tapers to 1 in the last stage: NASWOT tells trainable cells
    # from parameter-free ones while the space is wide, but among the convolution-heavy cells the shrink leaves
    # it misranked the 9 candidates it had already filtered (README); there the supernet's accuracy leads.
    # The random controller with the same reward and pick is its control.
    "offpolicy-naswot-taper": {"controller": "reinforce", **NASWOT_TAPER},
    "random-naswot-taper": {"controller": "random", **NASWOT_TAPER},
    # offpolicy-naswot-taper whose answer is the NASWOT-best cell of the whole last-stage space (final_pick=
    # zero-cost): there the supernet ranks the cells at chance; and its control without the controller
    "offpolicy-naswot-space": {"controller": "reinforce", **NASWOT_SPACE},
    "random-naswot-space": {"controller": "random", **NASWOT_SPACE},
    # off-policy uniform whose size term is TuNAS' absolute one, - 0.2 |params / size_target - 1|, in place of
    # the MnasNet ratio: a cell below the user's size target costs as much as one above, so the parameter-free
    # cells a young supernet favours stop being the cheap winners (the DARTS-space collapse); and the same with the
    # NASWOT taper's reward and pick
    "offpolicy-size-abs": {"controller": "reinforce", "behaviour": "uniform", "size_exponent": 0.0,
                           "size_abs_penalty": 0.2},
    "offpolicy-size-abs-naswot": {"controller": "reinforce", **NASWOT_TAPER, "size_exponent": 0.0,
                                  "size_abs_penalty": 0.2},
}

RESERVED = {"controller": "--variants", "behaviour": "--variants", "epsilon": "--epsilon", "seed": "--seeds"}
RETRAIN_RESERVED = {"genotype": "the harness", "index": "the harness", "seed": "--seeds",
                    "epochs": "--retrain-epochs"}
REFERENCE_GENOTYPE = "pdarts"  # the published P-DARTS CIFAR-10 cell
REFERENCE_DIR = "published-pdarts"

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

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------- the plan
@dataclass
class Run:
    variant: str
    seed: int
    settings: SearchSettings
    dir: Path

    @property
    def name(self) -> str:
        return f"{self.variant} seed {self.seed}"


@dataclass
class Plan:
    preset: str
    variants: list[str]
    seeds: list[int]
    output: Path
    runs: list[Run]
    overrides: dict[str, Any]
    epsilon: float
    retrain_epochs: int | None = None
    retrain_overrides: dict[str, Any] = field(default_factory=dict)
    table: Any = None  # tables.Table the runs' cells are looked up in (None: no lookup)
    table_column: str | None = None
    surrogate: Any = None  # data.surrogate.Surrogate the runs' DARTS cells are scored by (None: not scored)
    budget_optima: dict = field(default_factory=dict)  # (budget, eval size) -> budget_optimum's answer
    budget_eval_size: dict = field(default_factory=dict)  # the runs' evaluation size, from their genotype.json

    @property
    def family(self) -> str:
        return space_preset(self.runs[0].settings.space).family


def parse_variants(text: str | Sequence[str]) -> list[str]:
    return parse_choices(text, "--variants", list(VARIANTS), noun="variant")


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    items = [s for s in items if s != ""]
    if not items:
        raise UserError("--seeds: give at least one seed, e.g. 0,1,2")
    seeds = []
    for item in items:
        seed = parse_int("--seeds", item)
        if seed < 0:
            raise UserError(f"--seeds: seeds must be >= 0, got {seed}")
        seeds.append(seed)
    return list(dict.fromkeys(seeds))


def plan_ablation(preset: str = "demo", variants: str | Sequence[str] = tuple(VARIANTS),
                  seeds: str | Sequence[int] = (0, 1, 2), epsilon: float = 0.3,
                  overrides: Mapping[str, Any] | None = None, output: str | Path | None = None,
                  retrain_epochs: int | None = None, retrain_overrides: Mapping[str, Any] | None = None,
                  space: str | None = None, table: str | None = None, surrogate: str | None = None) -> Plan:
    """Check everything (variants, seeds, every run's settings, what an earlier grid left in ``output``) before
    anything is trained or written; raise ``UserError`` with one line on bad input."""
    variants = parse_variants(variants)
    seeds = parse_seeds(seeds)
    if not 0.0 <= epsilon <= 1.0:
        raise UserError(f"--epsilon must be in [0, 1], got {epsilon}")
    overrides = {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    for key, flag in RESERVED.items():
        if key in overrides:
            raise UserError(f"--set {key}: the harness sets it per run; use {flag}")
    if space is not None:
        overrides["space"] = space
    overrides.setdefault("progress", False)
    if retrain_epochs is not None and retrain_epochs < 1:
        raise UserError(f"--retrain-epochs must be >= 1, got {retrain_epochs}")
    if retrain_overrides and retrain_epochs is None:
        raise UserError("--retrain-set needs --retrain-epochs N")
    retrain_overrides = coerce_overrides(retrain_overrides or {}, "--retrain-set", RETRAIN_RESERVED)
    output = Path(output or f"runs/ablate-{preset}")
    runs = []
    stages = load_settings(preset, overrides).stages  # what a variant's stage-list function is given
    for variant in variants:
        fixed = {k: v for k, v in VARIANTS[variant].items() if k in RESERVED}  # what makes the variant
        defaults = {k: v(stages) if callable(v) else v  # --set may change these
                    for k, v in {**PLAIN, **VARIANTS[variant]}.items() if k not in RESERVED}
        if variant == "offpolicy-egreedy":
            fixed["epsilon"] = epsilon
        for seed in seeds:
            settings = load_settings(preset, {**defaults, **overrides, **fixed, "seed": seed})
            runs.append(Run(variant, seed, settings, output / variant / f"seed{seed}"))
    plan = Plan(preset, variants, seeds, output, runs, dict(overrides), epsilon, retrain_epochs,
                retrain_overrides)
    if table is not None:
        plan.table, plan.table_column = _open_table(plan, table)
    if surrogate is not None:
        plan.surrogate = _open_surrogate(plan, surrogate)
    for run in runs:
        _check_existing(run)
    if plan.table is not None:
        _check_budgets(plan)
    if retrain_epochs is not None:
        retrain_settings(plan, runs[0].settings, {"eval_size": {"input_size": 32}}, seeds[0], REFERENCE_GENOTYPE)
        _check_retrain_data(plan)
        for run in runs:  # a finished search tells the retrain settings; unfinished ones are checked when run
            if (run.dir / GENOTYPE_FILE).exists():
                doc = json.loads((run.dir / GENOTYPE_FILE).read_text())
                _check_retrain(run.dir / "retrain", retrain_settings(plan, run.settings, doc, run.seed,
                                                                     str(run.dir / GENOTYPE_FILE)))
                for seed in seeds:
                    _check_retrain(output / REFERENCE_DIR / f"seed{seed}" / "retrain",
                                   retrain_settings(plan, run.settings, doc, seed, REFERENCE_GENOTYPE))
    return plan


def _open_table(plan: Plan, spec: str) -> tuple[Any, str]:
    """The benchmark table and its one column, checked before anything runs."""
    if not get_family(plan.family).tables:
        raise UserError(f"--table: benchmark tables are NAS-Bench-201, but this grid searches the "
                        f"{plan.runs[0].settings.space} space (DARTS family); use --space nb201 or a nb201 preset")
    table, column = open_table(spec)
    return table, table.single_column(column)


def _open_surrogate(plan: Plan, spec: str) -> Any:
    """The NB301 surrogate, opened, checked and its random reference scored, before anything runs."""
    from nni_offpolicy.data.surrogate import NODES, open_surrogate

    s = plan.runs[0].settings
    if get_family(plan.family).tables:
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


def _check_budgets(plan: Plan) -> None:
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


def _check_retrain_data(plan: Plan) -> None:
    """Every dataset the retrains will load (the search's, or --retrain-set's) is there with a train and a test
    split: checked on its files and names before the first search, not after the last."""
    from nni_offpolicy.data.images import check_dataset

    seen = set()
    for run in plan.runs:
        r = retrain_settings(plan, run.settings, {"eval_size": {"input_size": 32}}, run.seed, REFERENCE_GENOTYPE)
        if (r.dataset, r.data_dir, r.download) not in seen:
            seen.add((r.dataset, r.data_dir, r.download))
            try:
                check_dataset(r.dataset, ("train", "test"), data_dir=r.data_dir, download=r.download)
            except UserError as exc:
                raise UserError(f"--retrain-epochs: the retrain's dataset cannot be loaded: {exc}") from None


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


def _check_existing(run: Run) -> None:
    """A finished or checkpointed run in the grid's folder must have been made with this run's settings."""
    done, partial = run.dir / GENOTYPE_FILE, run.dir / CHECKPOINT
    if done.exists():
        try:
            saved = json.loads(done.read_text())["settings"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{done}: not a search result; delete it or choose another --output") from None
    elif partial.exists():
        try:
            saved = ckpt.load(partial)["settings"]
        except Exception:
            raise UserError(f"{partial}: unreadable checkpoint; delete it or choose another --output") from None
    else:
        return
    changed = resume_differences(saved, run.settings)
    if changed:
        raise UserError(f"{run.dir} was run with other settings ({', '.join(changed)}); use the same --preset/--set "
                        f"to resume this grid, or another --output")


# ---------------------------------------------------------------------------------------------------- retrain
def retrain_settings(plan: Plan, search: SearchSettings, doc: Mapping[str, Any], seed: int, genotype: str):
    """The short retrain schedule shared by every derived cell and the published reference: the network at the
    search's evaluation size (the size params/FLOPs are reported at), cutout at most half the image side
    (DARTS' 16 px on 32 px CIFAR; 4 px on 8 px digits), then --retrain-set."""
    base = dict(dataset=search.dataset, data_dir=search.data_dir, download=search.download,
                layers=search.eval_layers, channels=search.eval_channels, device=search.device,
                cutout=min(16, int(doc["eval_size"]["input_size"]) // 2))
    return RetrainSettings(genotype=genotype, epochs=int(plan.retrain_epochs or 1), seed=seed,
                           **{**base, **plan.retrain_overrides}).validate()


def _check_retrain(out: Path, settings) -> None:
    result = out / RESULT
    if not result.exists():
        return
    changed = sorted(retrain_differences(json.loads(result.read_text()).get("settings", {}), settings))
    if changed:
        raise UserError(f"{out} was retrained with other settings ({', '.join(changed)}); use the same "
                        f"--retrain-epochs/--retrain-set, or another --output")


def _retrain(out: Path, settings, log: Log, label: str) -> dict[str, Any]:
    if (out / RESULT).exists():
        _check_retrain(out, settings)
        log(f"  retrain {label}: done already ({out / RESULT}), skipped")
        return json.loads((out / RESULT).read_text())
    result = run_retrain(settings, out, resume=(out / RETRAIN_CHECKPOINT).exists(), progress=False)
    log(f"  retrain {label}: test acc {result['test_acc']:.2f} %, {result['params_m']:.3f} M params, "
        f"{result['wall_time_s']:.1f} s")
    return result


# ---------------------------------------------------------------------------------------------------- running
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


def run_ablation(plan: Plan, log: Log | None = None, jobs: int = 1) -> dict[str, Any]:
    """Run (or skip) every search of the plan, ``jobs`` at a time, then the retrains, then write runs.csv,
    summary.md, ablation.png. Returns ``{"rows": [...], "reference": [...], "files": [...]}``. ``plan.output`` is
    checked writable and locked for the whole grid, so two ablations never write the same folders."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    check_writable_folder(plan.output)
    check_run_folder(plan.output, ABLATE_FOLDER)  # before the lock file: a refused folder is left as it was
    with output_lock(plan.output, "ablate"):
        check_run_folder(plan.output, ABLATE_FOLDER)
        claim_run_folder(plan.output, ABLATE_FOLDER, clear=False)
        return _run_ablation(plan, log, jobs)


# what a grid writes at the top of its folder (files/run_folder.py): a grid writes only into an empty folder or a
# grid's own, whose finished runs it skips; every search checks its own <variant>/seed<k>/ the same way
ABLATE_FOLDER = FolderKind("ablate", ("runs.csv", "summary.md", "ablation.png"), runs=(*VARIANTS, REFERENCE_DIR))


def _search_one(settings: SearchSettings, out: Path, resume: bool) -> dict[str, Any]:
    """One run of the grid (module level, so a spawned worker process can be handed it)."""
    return run_search(settings, out, resume=resume)


def _run_searches(plan: Plan, log: Log, jobs: int) -> None:
    """Every search the grid still lacks. With ``jobs`` > 1 each runs in its own spawned process (a fresh
    interpreter: no forked torch thread pools), ``jobs`` at a time, each taking its own ``threads``. The grid
    stops as a whole (``processes.run_in_workers``): Ctrl-C starts no queued search and ends the running ones
    (each resumable from its last checkpoint), and the workers die with a killed grid. A search's result does not
    depend on what ran beside it (tests/test_ablate.py compares the two ways)."""
    total = len(plan.runs)
    todo = []
    for k, run in enumerate(plan.runs, start=1):
        done = run.dir / GENOTYPE_FILE
        if done.exists():
            log(f"[{k}/{total}] {run.name}: done already ({done}), skipped")
        else:
            todo.append((k, run, (run.dir / CHECKPOINT).exists()))

    def report(k: int, run: Run, resume: bool, doc: Mapping[str, Any]) -> None:
        last = last_trained_stage(doc)
        log(f"[{k}/{total}] {run.name}{' (resumed)' if resume else ''}: derived valid acc "
            f"{doc['derived_valid_acc']:.1f} %, {doc['params_m']:.3f} M params, top-op share "
            f"{last['top_op_share']:.2f}, argmax frozen share {last['argmax_frozen_share']:.2f}, "
            f"{doc['wall_time_s']:.1f} s -> {run.dir}")

    if jobs == 1 or len(todo) < 2:
        started = time.time()
        for k, run, resume in todo:
            log(f"[{k}/{total}] {run.name}: {'resuming' if resume else 'starting'} ({time.time() - started:.0f} s "
                f"into the grid)")
            report(k, run, resume, _search_one(run.settings, run.dir, resume))
        return
    from nni_offpolicy.processes import run_in_workers

    log(f"running {len(todo)} searches, {min(jobs, len(todo))} at a time")
    runs = {k: (k, run, resume) for k, run, resume in todo}
    run_in_workers([(k, _search_one, (run.settings, run.dir, resume)) for k, run, resume in todo], jobs,
                   lambda k, doc: report(*runs[k], doc))


def _run_ablation(plan: Plan, log: Log | None = None, jobs: int = 1) -> dict[str, Any]:
    log = log or (lambda line: print(line, flush=True))
    rows: list[dict[str, Any]] = []
    started = time.time()
    _run_searches(plan, log, jobs)
    for run in plan.runs:
        done = run.dir / GENOTYPE_FILE
        doc = json.loads(done.read_text())
        rows.append(run_row(run.variant, run.seed, doc))
        if plan.table is not None:
            rows[-1].update(table_values(plan, doc, log))
        if plan.surrogate is not None:
            rows[-1].update(surrogate_values(plan, doc, log, run.name))
        if plan.retrain_epochs is not None:
            settings = retrain_settings(plan, run.settings, doc, run.seed, str(done))
            result = _retrain(run.dir / "retrain", settings, log, run.name)
            rows[-1]["retrain_test_acc"] = result["test_acc"]
            rows[-1]["retrain_params_m"] = result["params_m"]
    reference: list[dict[str, Any]] = []
    if plan.retrain_epochs is not None:
        if REFERENCE_GENOTYPE in get_family(plan.family).published:
            any_doc = json.loads((plan.runs[0].dir / GENOTYPE_FILE).read_text())
            for seed in plan.seeds:
                settings = retrain_settings(plan, plan.runs[0].settings, any_doc, seed, genotype=REFERENCE_GENOTYPE)
                result = _retrain(plan.output / REFERENCE_DIR / f"seed{seed}" / "retrain", settings, log,
                                  f"published P-DARTS seed {seed}")
                reference.append({"genotype": REFERENCE_GENOTYPE, "seed": seed, "retrain_test_acc": result["test_acc"],
                                  "retrain_params_m": result["params_m"]})
        else:
            log("  (no published P-DARTS reference in the NAS-Bench-201 space: its cell is a DARTS genotype)")
    files = write_outputs(plan, rows, reference)
    log(f"ablation: {len(rows)} runs in {time.time() - started:.0f} s; wrote {', '.join(str(f) for f in files)}")
    return {"rows": rows, "reference": reference, "files": files}


# ---------------------------------------------------------------------------------------------------- outputs
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
