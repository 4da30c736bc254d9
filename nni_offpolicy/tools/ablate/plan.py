"""The grid as data: ``Run`` (one search: its variant, seed, settings and folder) and ``Plan`` (all of them, with
what they are judged by). Apart so that the modules that judge, retrain and report a grid read its records
without importing the code that plans and runs it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nni_offpolicy.settings import SearchSettings

if TYPE_CHECKING:
    from search_spaces.families import Family

Log = Callable[[str], None]


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
    def family(self) -> Family:
        return self.runs[0].settings.family
