"""The ablation's variants: the table of them (a name -> the settings that make it), the user's choice of variants
and seeds, and how a variant becomes a run's settings.

Apart from the grid so that what a variant *is* reads in one place, below everything that runs or reports one.
"""
from __future__ import annotations

from typing import Any, Sequence

from nni_offpolicy.errors import UserError
from nni_offpolicy.parsing import parse_choices, parse_int
from nni_offpolicy.settings import NASWOT_RECIPE
from nni_offpolicy.settings import NASWOT_TAPER as TAPERED_NASWOT
from nni_offpolicy.settings import plain_recipe


# What every variant starts from (variant_overrides): the plain method's reward and pick (no zero-cost term, the
# policy's own cell) and the grid's preset's plain size terms (the DARTS presets: the lab log's ratio term). A
# preset may carry a recipe (NB201: the NASWOT recipe; DARTS: the absolute size term and the NASWOT taper);
# without this the controls (random, darts, offpolicy-uniform) would silently inherit it and stop being the
# baselines the table names.

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
    # offpolicy-naswot-space whose pick ranks the last space by the rank ensemble of NASWOT, synflow and ZiCo at
    # evaluation size (pick_zero_cost): the same search, a pick that orders the top of NB201 better (the
    # zero-cost study: Spearman 0.52 inside random cells' top 10 % against NASWOT's 0.37)
    "offpolicy-ens-space": {"controller": "reinforce", **NASWOT_SPACE, "pick_zero_cost": "ens:naswot+synflow+zico"},
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
REFERENCE_GENOTYPE = "pdarts"  # the published P-DARTS CIFAR-10 cell
REFERENCE_DIR = "published-pdarts"


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


def variant_overrides(variant: str, stages: int, epsilon: float,
                      preset: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """How a variant becomes a run's settings: ``(defaults, fixed)``, laid under and over the grid's --set
    overrides. ``stages`` is the grid's number of stages, what a variant's stage-list function is given;
    ``preset`` the grid's, whose plain size terms the variants start from (``settings.PRESET_PLAIN``)."""
    fixed = {k: v for k, v in VARIANTS[variant].items() if k in RESERVED}  # what makes the variant
    defaults = {k: v(stages) if callable(v) else v  # --set may change these
                for k, v in {**plain_recipe(preset), **VARIANTS[variant]}.items() if k not in RESERVED}
    if variant == "offpolicy-egreedy":
        fixed["epsilon"] = epsilon
    return defaults, fixed
