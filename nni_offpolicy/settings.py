"""Search settings: one typed dataclass, filled from a preset, a YAML file and overrides, validated once (the rules
live in ``settings_checks``).

Per-stage knobs are lists with one entry per stage; a scalar given for one of them is broadcast to every stage, so a
list whose stages agree is written once and follows whatever number of stages a user sets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from nni_offpolicy.errors import UserError
from nni_offpolicy.parsing import coerce, field_types
from nni_offpolicy.settings_checks import (CHANNELS_LAST, COMPILE_MODES, PRECISIONS, STAGE_LISTS,  # noqa: F401
                                           WEIGHT_MODES, check_settings, last_stage_trained)

if TYPE_CHECKING:
    from search_spaces.families import Family

# The spaces (search_spaces: NNI and torch) are imported where settings are validated, not here: the CLI reads
# the presets to build --help, which must not wait seconds for torch and NNI.

# How to compute, not what: the settings a resume may change (a search from its checkpoint, an ablation grid
# from its runs' genotype.json or checkpoint); every other setting must be the record's (resume_differences).
RUNTIME_SETTINGS = frozenset({"progress", "device", "devices", "precision", "channels_last", "compile", "threads"})


def flag(help: str, **default: Any) -> Any:
    """A setting with its own command-line flag (``search --NAME``), described here once: ``search``'s options are
    generated from these fields (``flag_settings``); every other setting goes through ``--set``."""
    return field(**default, metadata={"flag": True, "help": help})


def flag_settings() -> dict[str, str]:
    """Each setting that has a ``search`` flag, and its help, in field order."""
    return {f.name: f.metadata["help"] for f in fields(SearchSettings) if f.metadata.get("flag")}


@dataclass
class SearchSettings:
    # --- what to search, on what
    space: str = flag(default="pdarts",
                      help="search space: darts, pdarts, extended, nb201")
    dataset: str = flag(default="digits",
                        help="digits (embedded, default) | cifar10 | cifar100 | imagefolder:PATH (dir or .tar.gz)")
    data_dir: str | None = flag(default=None,
                                help="where torchvision CIFAR files are (or go with --download)")
    download: bool = False
    # every image resized to image_size x image_size (an image folder's as it is decoded: shorter side, centre
    # crop); None: the images' own size, which must then be one for all (data.datasets.load_dataset)
    image_size: int | None = None
    train_portion: float = 0.5
    split_seed: int = 0
    # --- progressive stages (P-DARTS): one entry per stage
    layers: list[int] = flag(default_factory=lambda: [5, 11, 17],
                             help="cells per stage, e.g. 5,11,17")
    ops_kept: list[int] = flag(default_factory=lambda: [5, 3, 1],
                               help="ops kept per edge after each stage, e.g. 5,3,1")
    epochs: list[int] = flag(default_factory=lambda: [25],
                             help="epochs per stage, e.g. 25,25,25 (the last may be 0 with final_pick=zero-cost: "
                                  "scored, not trained)")
    warmup_epochs: list[int] = flag(default_factory=lambda: [10],
                                    help="epochs per stage without controller updates")
    skip_dropout: list[float] = field(default_factory=lambda: [0.0, 0.4, 0.7])
    channels: int = 16
    nodes: int = 4
    batch_size: int = flag(default=96,
                           help="batch size")
    max_skip_connect: int = 2
    # --- weight training
    weight_mode: str = flag(default="mixed",
                            help="mixed (DARTS weighted sum, detached softmax) | path (one sampled path per step)")
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    max_steps_per_epoch: int | None = None
    # --- controller (off-policy REINFORCE)
    controller: str = "reinforce"  # reinforce | darts (first-order gradient on alpha) | random (RandomNAS)
    behaviour: str = flag(default="uniform",
                          help="behaviour policy: uniform | egreedy | multinomial | on-policy")
    epsilon: float = flag(default=0.0,
                          help="epsilon of egreedy, or the uniform mixture weight of multinomial")
    temperature: float = flag(default=1.0,
                              help="temperature of the multinomial behaviour policy")
    controller_lr: float = flag(default=5e-3,
                                help="Adam learning rate of the architecture parameters")
    importance: str = "per-decision"
    truncation: float = 5.0
    baseline_decay: float = 0.9
    entropy_weight: float = 0.0
    replay_size: int = 0
    replay_samples: int = 0
    rl_interval_steps: int = 10
    samples_per_update: int = 10
    # validation images per reward batch (every sample of one update is scored on the same batch); None: batch_size.
    # Its own setting because one 96-image batch gives an accuracy with a ~5-point standard error.
    reward_batch_size: int | None = None
    # images of the validation split that stage-end and final evaluations use (the first ones, class-mixed);
    # None: the whole split. On a CPU, walking 25k images after every stage costs more than the stage.
    eval_images: int | None = None
    # --- reward: accuracy x (metric / target) ^ exponent, per stage; exponent 0 switches a term off
    size_target: list[float] = flag(default_factory=lambda: [6.4, 5.4, 4.4],
                                    help="parameter target per stage in M at evaluation size, e.g. 6.4,5.4,4.4")
    size_exponent: list[float] = flag(default_factory=lambda: [0.0],
                                      help="exponent w of (params/target)^w per stage, e.g. -0.45,-0.25,-0.2 (0 = "
                                           "off)")
    # TuNAS' absolute size term (Bender et al., CVPR 2020): reward - penalty * |params / size_target - 1|, per
    # stage; it costs a cell below its target as much as one above, where (P/T)^w with w < 0 pays a weight-sharing
    # search for the parameter-free cells it already favours (they need no training). 0 switches it off.
    size_abs_penalty: list[float] = field(default_factory=lambda: [0.0])
    flops_target: list[float] = flag(default_factory=lambda: [600.0],  # M MACs at eval size
                                     help="FLOPs (MACs) target per stage in M")
    flops_exponent: list[float] = flag(default_factory=lambda: [0.0],
                                       help="exponent of the FLOPs term per stage (0 = off)")
    metric: str | None = None  # "module:function" taking (family, architecture) -> float
    metric_target: list[float] = field(default_factory=lambda: [1.0])
    metric_exponent: list[float] = field(default_factory=lambda: [0.0])
    # zero-cost term: (score of the cell's untrained network / target) ^ exponent, per stage (see zero_cost.py);
    # one entry by default, so it broadcasts to however many stages a search has
    zero_cost: str | None = None  # None (off) | a score of zero_cost_names | ens:a+b[+c...]
    zero_cost_target: list[float] = field(default_factory=lambda: [10.0])
    zero_cost_exponent: list[float] = field(default_factory=lambda: [0.0])
    zero_cost_layers: int | None = None  # cells (per stack, nb201) of the network scored; None: stage 1's layers
    zero_cost_channels: int = 8
    zero_cost_images: int | None = None  # images of the first reward batch scored; None: min(64, reward batch)
    # the score final_pick=zero-cost ranks the last space by, on the evaluation-size network; None: zero_cost's.
    # Apart from the reward's because the two ask different things: the reward scores thousands of cells on a
    # small network and must be cheap; the pick scores one space's few dozen near-equal cells once (on NB201's
    # last spaces NASWOT still beat the ensembles that order a whole space's top better: docs/results.md)
    pick_zero_cost: str | None = None
    reward_source: str = "supernet"  # table: the accuracy term is reward_table's value; no supernet is trained
    reward_table: str | None = None  # "TABLE.csv:COLUMN" (NB201 benchmark table; see data/tables.py)
    # hard parameter budget (M params at eval size): a sampled cell above it gets reward 0 whatever its accuracy,
    # and the final pick keeps to it (a constraint, not a trade-off like size_exponent). None: no budget.
    size_budget: float | None = None
    # the first stage (1-based) whose rewards the budget zeroes; the final pick always keeps to it. A budget
    # constrains the whole cell, not each edge: applied from stage 1, it drops every costly op from every edge at
    # the first shrink, so a loose budget ends with cells as small as a tight one's.
    size_budget_from_stage: int = 1
    # how the final cell is chosen: "policy" = the last stage's derivation by pi (P-DARTS); "best-sampled" = the
    # best of the last stage's final_candidates highest-reward sampled cells and the policy's cell, each scored
    # again on the eval_images (RSPS' best-of-N pick, on the controller's samples instead of random ones);
    # "zero-cost" = the last stage's cell with the best zero-cost score alone, over every cell of its space where
    # it has at most search.space_cells.SPACE_LIMIT of them (NB201), else over the best-sampled candidates
    final_pick: str = "policy"
    final_candidates: int = 8
    eval_layers: int = 20
    eval_channels: int = 36
    recent_window: int = 200
    # --- run
    seed: int = flag(default=0,
                     help="random seed")
    device: str = flag(default="auto",
                       help="auto | cpu | cuda[:N]")
    devices: int = flag(default=1,
                        help="data-parallel replicas for one search (GPUs; on cpu, processes); batch_size is split "
                             "across them")
    threads: int = 0  # CPU threads for torch; 0 leaves torch's default (tiny demo nets run fastest on 1)
    # --- how to compute (same schedule, batches and samples whatever they are; see accel.py)
    precision: str = "auto"
    channels_last: str = "auto"
    compile: str = "off"
    progress: bool = True

    @property
    def stages(self) -> int:
        return len(self.layers)

    @property
    def reward_batch(self) -> int:
        """Validation images per reward (and monitoring) batch."""
        return self.reward_batch_size or self.batch_size

    @property
    def family(self) -> Family:
        """The space's family record (its preset holds it): the search hands this record down instead of a name
        every consumer would look up again."""
        from search_spaces.presets import space_preset  # NNI and torch: not at import (--help stays fast)

        return space_preset(self.space).family

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "SearchSettings":
        """Every inconsistency in one clear line, before any data is loaded or any training starts
        (``settings_checks``, where the rules live)."""
        check_settings(self)
        return self

StageRule = Callable[[int], list[float]]

def last_stage_apart(early: float, last: float) -> StageRule:
    """A stage list as a rule of the stage count: ``early`` in every stage but the last, ``last`` there. A preset
    (or an ablate variant) states what it means ("the last stage differs") rather than one list per stage
    count, so a user who changes ``layers`` to two or four stages still gets it, not a length error."""
    def rule(stages: int) -> list[float]:
        return [early] * (stages - 1) + [last]
    return rule


# The taper (ablate's offpolicy-naswot-taper): the NASWOT zero-cost score to the 4th power in the reward while the
# space is wide (it keeps the early shrinks off the parameter-free ops a weight-sharing supernet favours), to the
# 1st in the last stage, and the best of the last stage's sampled cells, scored again on eval_images, as answer.
NASWOT_TAPER: dict[str, Any] = dict(zero_cost="naswot", zero_cost_exponent=last_stage_apart(4.0, 1.0),
                                    final_pick="best-sampled")
# What the NB201 presets run (ablate's offpolicy-naswot-space): the taper's shrinks, answered by the NASWOT-best
# cell of the whole last space on its evaluation-size network (final_pick=zero-cost). Inside that space the
# supernet's accuracy ranks cells at chance, while NASWOT still orders them (README, the fresh-seed grids).
NASWOT_RECIPE: dict[str, Any] = {**NASWOT_TAPER, "final_pick": "zero-cost"}


# What the DARTS presets run (ablate's offpolicy-size-abs-naswot): TuNAS' absolute size term around P-DARTS'
# published cell's 3.4 M in place of the lab log's ratio term, which paid the search for every cell below its
# target and so for the parameter-free ops a young supernet already favours (pdarts-proxy derived normal cells of
# 7-8 pools and skips of 8, at the 1st-2nd percentile of random cells), with the NASWOT taper's reward and pick.
# Measured on pdarts-proxy over 6 seeds (3 fresh): 1.3 points above the lab log's recipe, every cell within 3.6 M,
# level with random search, not above it (docs/results.md, the DARTS space).
DARTS_RECIPE: dict[str, Any] = {**NASWOT_TAPER, "size_exponent": [0.0], "size_abs_penalty": [0.2],
                                "size_target": [3.4]}
# The lab log's size terms, what a DARTS preset's plain method is: ablate's controls start from it, so their
# offpolicy-uniform stays the recipe the lab log ran (and the demo's, its ratio term before the absolute one).
LAB_LOG_SIZE: dict[str, Any] = {"size_exponent": [-0.45, -0.25, -0.2], "size_abs_penalty": [0.0]}
# (The ratio term's target only rescales a stage's rewards, so the presets' 3.4 M serves both terms.)
# The small presets' (demo, own-small) size term: TuNAS' absolute term 0.5 around their 0.3 M at evaluation size.
# With the ratio term (exponent -0.1), their plain method, the demo derived normal cells of 4-7 parameter-free
# edges of 8 on seeds 0-5 and own-small 5 on seeds 0-2 of the CIFAR-10 archive; with this one 1-3 and 1-2
# (docs/results.md, the DARTS space).
SMALL_SIZE_TERM: dict[str, Any] = {"size_target": [0.3], "size_exponent": [0.0], "size_abs_penalty": [0.5]}
SMALL_PLAIN_SIZE: dict[str, Any] = {"size_exponent": [-0.1], "size_abs_penalty": [0.0]}
PRESET_PLAIN: dict[str, dict[str, Any]] = {"pdarts": LAB_LOG_SIZE, "pdarts-proxy": LAB_LOG_SIZE,
                                           "demo": SMALL_PLAIN_SIZE, "own-small": SMALL_PLAIN_SIZE}


def plain_recipe(preset: str | None = None) -> dict[str, Any]:
    """What a preset's recipe replaces, as the plain method has it: the dataclass defaults for the NASWOT terms
    (no zero-cost term, the policy's own cell) and ``preset``'s plain size terms (``PRESET_PLAIN``): what the
    table source and ablate's controls start from. Fresh values each call, so no caller shares a list."""
    plain = SearchSettings()
    out = {name: getattr(plain, name) for name in NASWOT_RECIPE}
    out.update({name: list(value) for name, value in PRESET_PLAIN.get(preset or "", {}).items()})
    return out


SEARCH_PRESETS: dict[str, dict[str, Any]] = {
    # The README's main job: embedded digits, small stages, a couple of minutes on 2 CPU cores; the small presets'
    # absolute size term (SMALL_SIZE_TERM).
    "demo": dict(space="pdarts", dataset="digits", layers=[3, 4, 5], ops_kept=[4, 2, 1], epochs=[8],
                 warmup_epochs=[3], skip_dropout=[0.0, 0.2, 0.4], channels=8, batch_size=32,
                 weight_mode="path", behaviour="uniform", controller_lr=0.05, rl_interval_steps=4,
                 samples_per_update=8, **SMALL_SIZE_TERM,
                 eval_layers=8, eval_channels=16, train_portion=0.5, lr=0.05, threads=1),
    # Your own small image folder (about 100-2,000 images, --dataset imagefolder:PATH required): the demo's
    # search at 32x32 (every image resized, so mixed sizes load), batches of 16 so a hundred images still give
    # several steps an epoch, at most 20 steps an epoch and stage-end evaluations on 500 validation images so
    # 2,000 images stay a few minutes on a CPU. The demo's absolute size term (SMALL_SIZE_TERM).
    "own-small": dict(space="pdarts", dataset=None, image_size=32, layers=[3, 4, 5], ops_kept=[4, 2, 1],
                      epochs=[6], warmup_epochs=[2], skip_dropout=[0.0, 0.2, 0.4], channels=8,
                      batch_size=16, max_steps_per_epoch=20, eval_images=500, weight_mode="path",
                      behaviour="uniform", controller_lr=0.05, rl_interval_steps=4, samples_per_update=8,
                      **SMALL_SIZE_TERM, eval_layers=8, eval_channels=16, train_portion=0.5, lr=0.05, threads=1),
    # P-DARTS' CIFAR-10 protocol with the lab log's controller (off-policy uniform sampling, lr 5e-3, skip
    # dropout 0.3/0.6/0.8) and the DARTS recipe (DARTS_RECIPE: the absolute size term around 3.4 M, the NASWOT
    # taper) in place of the lab log's ratio term (targets 6.4/5.4/4.4 M, exponents -0.45/-0.25/-0.2), which
    # collapses to pooling cells; --set size_exponent=-0.45,-0.25,-0.2 --set size_target=6.4,5.4,4.4 --set
    # size_abs_penalty=0 --set zero_cost=none --set final_pick=policy runs the lab log's search (docs/method.md).
    "pdarts": dict(space="pdarts", dataset="cifar10", layers=[5, 11, 17], ops_kept=[5, 3, 1], epochs=[25],
                   warmup_epochs=[10], skip_dropout=[0.3, 0.6, 0.8], channels=16, batch_size=96,
                   weight_mode="mixed", behaviour="uniform", controller_lr=5e-3, rl_interval_steps=10,
                   samples_per_update=10, **DARTS_RECIPE),
    # The pdarts search shrunk to run whole on 2 CPU cores (1 thread) in minutes, so DARTS-space grids of several
    # variants x seeds run here: the same three stages, 8 -> 5 -> 3 -> 1 ops per edge, P-DARTS' skip dropout and
    # the pdarts preset's recipe, on the local CIFAR-10 archive, with 3/4/5 cells of 8 channels instead of
    # 5/11/17 of 16, epochs of 40 path-sampled steps (2 weights-only, 2 with the controller), rewards on 128-image
    # batches and evaluations on the first 512 validation images. Params/FLOPs are priced at the protocol's
    # 20 x 36, where the size target is the published P-DARTS cell's 3.4 M.
    "pdarts-proxy": dict(space="pdarts", dataset="cifar10-jpeg", layers=[3, 4, 5], ops_kept=[5, 3, 1],
                         epochs=[4], warmup_epochs=[2], skip_dropout=[0.3, 0.6, 0.8], channels=8,
                         batch_size=64, max_steps_per_epoch=40, weight_mode="path", behaviour="uniform",
                         controller_lr=5e-3, rl_interval_steps=5, samples_per_update=8, reward_batch_size=128,
                         eval_images=512, **DARTS_RECIPE, eval_layers=20, eval_channels=36, threads=1),
    # Progressive search in NAS-Bench-201 (cells per stack 1, 3, 5; 5 -> 3 -> 2 -> 1 ops per edge), with the
    # proxy's measured reward and pick (the plain reward collapses to none/skip/pool cells there). The last stage
    # (epochs 0) is not trained: the zero-cost pick scores its 64 cells whole, so its training could not change
    # the answer, and with 5 cells per stack it would be the longest stage. Another pick (--set final_pick=...,
    # ablate's controls) trains it as long as the stage before (load_settings).
    "nb201": dict(space="nb201", dataset="cifar10", layers=[1, 3, 5], ops_kept=[3, 2, 1], epochs=[10, 10, 0],
                  warmup_epochs=[4], skip_dropout=[0.0], channels=16, batch_size=96,
                  weight_mode="path", behaviour="uniform", controller_lr=5e-3, rl_interval_steps=5,
                  samples_per_update=10, size_target=[1.0], size_exponent=[0.0],
                  **NASWOT_RECIPE, eval_layers=5, eval_channels=16),
    # The nb201 search shrunk to fit 2 CPU cores in minutes, so ablation grids of several variants x 3 seeds run
    # here: 1,1,2 cells per stack, 8 channels, epochs of 60 steps on the local CIFAR-10 archive; rewards on
    # 256-image batches; stage-end and final evaluations on the first 2,000 validation images. Its reward and pick
    # are the recipe its ablation grids measured best (README), the offpolicy-naswot-space variant: NASWOT^4 while
    # the space is wide, ^1 in the last stage, the NASWOT-best cell of the last space as the answer, that last
    # stage untrained as in nb201. (ablate's controls do not inherit it: every variant starts from the plain
    # reward and pick, and so trains the last stage 6 epochs.)
    "nb201-proxy": dict(space="nb201", dataset="cifar10-jpeg", layers=[1, 1, 2], ops_kept=[3, 2, 1],
                        epochs=[6, 6, 0], warmup_epochs=[2], skip_dropout=[0.0], channels=8,
                        batch_size=64, max_steps_per_epoch=60, weight_mode="path", behaviour="uniform",
                        controller_lr=5e-3, rl_interval_steps=10, samples_per_update=8, reward_batch_size=256,
                        eval_images=2000, size_target=[1.0], size_exponent=[0.0],
                        **NASWOT_RECIPE,
                        eval_layers=5, eval_channels=16, threads=1),
}


def _coerce(name: str, value: Any) -> Any:
    """Turn CLI/YAML/NNI values into the field's type (``parsing.coerce``); scalars broadcast over stage lists."""
    if name in ("channels_last", "compile") and isinstance(value, bool):  # YAML reads on/off as booleans
        return ("on" if name == "channels_last" else "ops") if value else "off"
    return coerce(name, value, field_types(SearchSettings)[name])


def resume_differences(saved: Mapping[str, Any], settings: SearchSettings) -> list[str]:
    """Settings of ``settings`` that differ from ``saved`` (a checkpoint's or genotype.json's record) other than
    ``RUNTIME_SETTINGS``: what a search resume and an ablation grid's resume both refuse. A setting the record
    lacks was added after it was written: the run behaved as that setting's default, so it is compared with the
    default (stage lists broadcast to the record's stages)."""
    defaults = SearchSettings()
    stages = len(saved.get("layers", settings.layers))
    full = dict(saved)
    for name, value in defaults.to_dict().items():
        if name not in full:
            full[name] = value * stages if name in STAGE_LISTS and len(value) == 1 else value
    return sorted(k for k, v in settings.to_dict().items() if k not in RUNTIME_SETTINGS and full.get(k) != v)


def apply_overrides(settings: SearchSettings, overrides: Mapping[str, Any], source: str) -> SearchSettings:
    known = field_types(SearchSettings)
    for name, value in overrides.items():
        key = name.replace("-", "_")
        if key not in known:
            raise UserError(f"{source}: unknown setting {name!r}; allowed: {', '.join(sorted(known))}")
        setattr(settings, key, _coerce(key, value))
    return settings


def _broadcast_stage_lists(settings: SearchSettings) -> None:
    n = settings.stages
    for name in STAGE_LISTS:
        value = getattr(settings, name)
        if len(value) == 1 and n > 1:
            setattr(settings, name, value * n)


def load_settings(preset: str = "demo", overrides: Mapping[str, Any] | None = None,
                  config_file: str | Path | None = None) -> SearchSettings:
    """Preset, then the YAML/JSON config file, then overrides (CLI flags or NNI parameters); then validate.
    A config file that names a ``preset`` replaces ``preset``; its own settings are reported as the file's."""
    data: dict[str, Any] = {}
    source = "preset"
    if config_file is not None:
        data = read_config(config_file)
        if "preset" in data:
            preset, source = data.pop("preset"), f"{config_file}: preset"
    if not isinstance(preset, str) or preset not in SEARCH_PRESETS:
        what = f"unknown preset {preset!r}" if source == "preset" else f"{source} {preset!r} is not one preset name"
        raise UserError(f"{what}; allowed: {', '.join(SEARCH_PRESETS)}")
    values = SEARCH_PRESETS[preset]
    given = {name.replace("-", "_") for name in [*data, *(overrides or {})]}
    if "dataset" in values and values["dataset"] is None and "dataset" not in given:
        raise UserError(f"preset {preset} searches your own images: give them with --dataset imagefolder:PATH "
                        f"(a folder of CLASS/IMAGE files, or a .tar.gz of one)")
    rules = {name: rule for name, rule in values.items() if callable(rule)}
    settings = apply_overrides(SearchSettings(), {k: v for k, v in values.items() if k not in rules
                                                  and not (k == "dataset" and v is None)}, f"preset {preset}")
    if data:
        apply_overrides(settings, data, str(config_file))
    if overrides:
        apply_overrides(settings, overrides, "overrides")
    # the preset's stage rules, once the stage count (the preset's, or the user's layers) is known
    apply_overrides(settings, {name: rule(settings.stages) for name, rule in rules.items() if name not in given},
                    f"preset {preset}")
    if settings.reward_source == "table":
        # the table source scores no images and trains no supernet: a preset's NASWOT recipe does not apply to it
        # (the plain controller is what the table benchmarks); a zero-cost term the user names is refused below
        for name, value in plain_recipe().items():
            if name in values and name not in given:
                setattr(settings, name, value)
    if "epochs" not in given and settings.final_pick != "zero-cost":
        # a preset leaves its last stage untrained for its zero-cost pick, which scores that space whole; a pick
        # that needs the stage trained (policy, best-sampled, ablate's controls) trains it as long as the one before
        settings.epochs = last_stage_trained(settings.epochs)
    _broadcast_stage_lists(settings)
    return settings.validate()


def read_config(config_file: str | Path) -> dict[str, Any]:
    """A YAML (``.yml``/``.yaml``) or JSON file holding one mapping of setting: value; every way it can be wrong
    (missing, a folder, unreadable, not text, not parseable, not a mapping) is one line naming the file."""
    from nni_offpolicy.files.reading import read_document  # bounded: size, nesting, aliases, non-regular files

    path = Path(config_file)
    data = read_document(path, "config file")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of setting: value")
    for key in data:
        if not isinstance(key, str):
            raise UserError(f"{path}: setting names are text, got {key!r} ({type(key).__name__}); write it as "
                            f"a setting name")
    return dict(data)
