"""Benchmark tables: look a NAS-Bench-201 cell up in a table of trained-from-scratch results.

NAS researchers judge an NB201 search by its cell's place in the benchmark, so a search's output is only
comparable once it is looked up. A table is a CSV, or JSON (a list of row objects, or ``{arch: {column: value}}``),
with one arch column (named ``arch``, or the one column whose values all parse as NB201 arch strings) and numeric
columns (NATS-Bench / NAS-Bench-201 exports look like that). Arch strings are canonicalised through the space's
own round trip (``nb201_to_sample`` -> ``sample_to_nb201``), so a pasted string with stray spaces still matches.

Ranks: 1 = best, ties share the best rank of their group (1, 2, 2, 4). Higher is better unless the column's name
says it is a cost (loss, error, latency, time, params, FLOPs): ``better_direction``. Percentile: the share of the
table's cells the value is at least as good as (the optimum is 100).

Parsed tables are cached per (path, mtime, size) within a process: the table reward source looks a cell up for
every sample of every controller step.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from search_spaces.genotypes import GenotypeError, nb201_to_sample, require_benchmark_ops, sample_to_nb201

from nni_offpolicy.errors import UserError
from nni_offpolicy.files.reading import TABLE_LIMIT, check_regular_file, parse_json, read_text

ARCH_COLUMN = "arch"
_LOWER_IS_BETTER = re.compile(r"(loss|error|err$|latency|time|params|flops|macs|cost)", re.I)


def canonical_arch(text: str) -> str:
    """The NB201 arch string as the space prints it (whitespace a paste picked up dropped); ``GenotypeError`` if
    it is not one."""
    return sample_to_nb201(require_benchmark_ops(nb201_to_sample(re.sub(r"\s+", "", str(text)))))


def _is_arch(text: Any) -> bool:
    try:
        canonical_arch(text)
        return True
    except (GenotypeError, ValueError, KeyError):
        return False


def better_direction(column: str) -> str:
    """``"lower"`` for columns named like a cost, else ``"higher"``."""
    return "lower" if _LOWER_IS_BETTER.search(column) else "higher"


@dataclass(frozen=True)
class CellValue:
    column: str
    value: float
    rank: int  # 1 = best; ties share it
    cells: int  # how many cells of the table have a value in this column
    percentile: float  # % of those cells this value is at least as good as

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rank": self.rank, "cells": self.cells, "percentile": self.percentile}


@dataclass
class Table:
    path: Path
    arch_column: str
    columns: list[str]  # numeric columns, in file order
    values: dict[str, np.ndarray]  # column -> float [cells], NaN where a row has no value
    index: dict[str, int]  # canonical arch -> row
    archs: list[str]  # canonical arch per row
    non_numeric: dict[str, tuple[int, Any]] = field(default_factory=dict)  # column -> (row, first bad value)
    _sorted: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.archs)

    def check_column(self, column: str) -> str:
        if column in self.non_numeric:  # say which row, wherever the column was named
            row, value = self.non_numeric[column]
            raise UserError(f"{self.path}: column {column!r} is not numeric (row {row} has {value!r}); numeric "
                            f"columns: {', '.join(self.columns)}")
        if column not in self.columns:
            raise UserError(f"{self.path}: no numeric column {column!r}; numeric columns: {', '.join(self.columns)}")
        return column

    def single_column(self, column: str | None) -> str:
        """The named column, or the only numeric one (several: the user must choose)."""
        if column is not None:
            return self.check_column(column)
        if len(self.columns) != 1:
            raise UserError(f"{self.path} has {len(self.columns)} numeric columns; name one as "
                            f"{self.path}:COLUMN ({', '.join(self.columns)})")
        return self.columns[0]

    def _good(self, column: str) -> np.ndarray:
        """Finite values of a column sorted best first, as 'goodness' (negated where lower is better)."""
        if column not in self._sorted:
            v = self.values[column]
            v = v[np.isfinite(v)]
            goodness = v if better_direction(column) == "higher" else -v
            self._sorted[column] = np.sort(goodness)  # ascending goodness
        return self._sorted[column]

    def row(self, arch: str) -> int:
        key = canonical_arch(arch)
        if key not in self.index:
            raise UserError(f"cell {key} is not in {self.path} ({len(self)} cells)")
        return self.index[key]

    def value(self, arch: str, column: str) -> float:
        v = float(self.values[self.check_column(column)][self.row(arch)])
        if not math.isfinite(v):
            raise UserError(f"cell {canonical_arch(arch)} has no value in column {column!r} of {self.path}")
        return v

    def lookup(self, arch: str, column: str) -> CellValue:
        v = self.value(arch, column)
        good = self._good(column)
        g = v if better_direction(column) == "higher" else -v
        better = len(good) - int(np.searchsorted(good, g, side="right"))
        at_least_as_good_as = int(np.searchsorted(good, g, side="right"))
        return CellValue(column, v, better + 1, len(good), 100.0 * at_least_as_good_as / len(good))

    def optimum(self, column: str, among: np.ndarray | None = None) -> tuple[float, str]:
        """The best value and (the first, in file order) cell that has it; ``among``: a boolean mask over the
        rows the optimum is taken in (e.g. the cells within a parameter budget)."""
        v = self.values[self.check_column(column)]
        if among is not None:
            if not among.any():
                raise UserError(f"no cell of {self.path} meets the condition the optimum is taken under")
            v = np.where(among, v, np.nan)
        finite = np.where(np.isfinite(v), v, -np.inf if better_direction(column) == "higher" else np.inf)
        row = int(np.argmax(finite) if better_direction(column) == "higher" else np.argmin(finite))
        return float(v[row]), self.archs[row]

    def median(self, column: str) -> float:
        v = self.values[self.check_column(column)]
        return float(np.median(v[np.isfinite(v)]))

    def column_summary(self, column: str) -> dict[str, Any]:
        best, arch = self.optimum(column)
        return {"better": better_direction(column), "optimum": best, "optimum_arch": arch,
                "median": self.median(column), "cells": int(np.isfinite(self.values[column]).sum())}


# ------------------------------------------------------------------------------------------------ reading
def _read_rows(path: Path) -> list[dict[str, Any]]:
    text = read_text(path, "table", TABLE_LIMIT)  # a regular file of bounded size: not /dev/zero, not a FIFO
    if path.suffix.lower() == ".json":
        data = parse_json(text, f"table {path}")
        if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            return [{ARCH_COLUMN: arch, **{k: v for k, v in row.items() if k != ARCH_COLUMN}}
                    for arch, row in data.items()]
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            return data
        raise UserError(f"table {path}: expected a list of row objects or {{arch: {{column: value}}}}")
    try:
        reader = csv.DictReader(text.splitlines())
        rows = list(reader)
    except csv.Error as exc:
        raise UserError(f"table {path}: not a readable CSV ({exc})") from None
    if not reader.fieldnames:
        raise UserError(f"table {path} is empty: expected a header row with an arch column and numeric columns")
    if any(None in r for r in rows):
        raise UserError(f"table {path}: row {next(i for i, r in enumerate(rows, 2) if None in r)} has more fields "
                        f"than the header")
    return rows


def _number(value: Any) -> float | None:
    """A float, NaN for an empty cell, None if it is not a number."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _find_arch_column(path: Path, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    if ARCH_COLUMN in names:
        return ARCH_COLUMN
    candidates = [n for n in names if all(_is_arch(r.get(n)) for r in rows)]
    if len(candidates) != 1:
        found = f"several ({', '.join(candidates)})" if candidates else "none"
        raise UserError(f"table {path} has no arch column: name it {ARCH_COLUMN!r}, or give exactly one column of "
                        f"NB201 arch strings (|op~0|+|op~0|op~1|+...); columns {', '.join(names)}, arch-like: {found}")
    return candidates[0]


def parse_table(path: Path) -> Table:
    rows = _read_rows(path)
    if not rows:
        raise UserError(f"table {path} has no rows")
    names = list(dict.fromkeys(k for r in rows for k in r))
    arch_column = _find_arch_column(path, rows, names)
    archs, index = [], {}
    for i, r in enumerate(rows):
        try:
            key = canonical_arch(r.get(arch_column))
        except (GenotypeError, ValueError, KeyError) as exc:
            raise UserError(f"table {path}: row {i + 1}'s {arch_column} is not an NB201 arch string ({exc})") from None
        archs.append(key)
    values: dict[str, np.ndarray] = {}
    columns: list[str] = []
    non_numeric: dict[str, tuple[int, Any]] = {}
    for name in names:
        if name == arch_column:
            continue
        parsed = [_number(r.get(name)) for r in rows]
        bad = next((i for i, p in enumerate(parsed) if p is None), None)
        if bad is not None or all(math.isnan(p) for p in parsed):
            non_numeric[name] = (bad + 1, rows[bad].get(name)) if bad is not None else (1, "")
            continue
        values[name] = np.array(parsed, dtype=np.float64)
        columns.append(name)
    if not columns:
        first = next(iter(non_numeric.items()), None)  # say which row, as for a named column
        why = f": column {first[0]!r} is not numeric (row {first[1][0]} has {first[1][1]!r})" if first else ""
        raise UserError(f"table {path} has no numeric column{why}; columns: {', '.join(names)}")
    keep: list[int] = []
    for i, key in enumerate(archs):
        if key in index:
            j = index[key]
            same = all(np.array_equal(values[c][[i]], values[c][[j]], equal_nan=True) for c in columns)
            if not same:
                raise UserError(f"table {path}: cell {key} appears twice (rows {j + 1} and {i + 1}) with different "
                                f"values")
            continue
        index[key] = len(keep)
        keep.append(i)
    if len(keep) != len(archs):
        archs = [archs[i] for i in keep]
        values = {c: v[keep] for c, v in values.items()}
    return Table(path, arch_column, columns, values, index, archs, non_numeric)


_CACHE: dict[Path, tuple[tuple[float, int], Table]] = {}


def load_table(path: str | Path) -> Table:
    """The parsed table, from the cache while the file is unchanged."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UserError(f"table not found: {p}") from None
    except OSError as exc:
        raise UserError(f"table {p} is unreadable ({exc})") from None
    if p.is_dir():
        raise UserError(f"table {p} is a directory: give a .csv or .json file")
    check_regular_file(p, "table")  # a FIFO would block the read, /dev/zero never end it
    key, stamp = p.resolve(), (st.st_mtime, st.st_size)
    cached = _CACHE.get(key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, parse_table(p))
        _CACHE[key] = cached
    return cached[1]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``TABLE`` or ``TABLE:COLUMN`` (an existing file named with a colon is taken whole)."""
    if Path(spec).expanduser().exists() or ":" not in spec:
        return spec, None
    path, _, column = spec.rpartition(":")
    return path, column or None


def numeric_column(table: Table, column: str) -> str:
    """``column`` if it is a numeric column of the table; otherwise one line saying why not."""
    if column in table.non_numeric:
        row, value = table.non_numeric[column]
        raise UserError(f"{table.path}: column {column!r} is not numeric (row {row} has {value!r}); numeric "
                        f"columns: {', '.join(table.columns)}")
    if column == table.arch_column:
        raise UserError(f"{table.path}: column {column!r} is the arch column; numeric columns: "
                        f"{', '.join(table.columns)}")
    return table.check_column(column)


def open_table(spec: str) -> tuple[Table, str | None]:
    """``TABLE[:COLUMN]`` -> the table and the checked column (None when none was named)."""
    path, column = split_spec(spec)
    table = load_table(path)
    return table, (numeric_column(table, column) if column is not None else None)


def reward_scale(table: Table, column: str) -> float:
    """What a value is multiplied by to be a reward in [0, 1]: 1/100 for a percentage column (some value above 1,
    all within [0, 100]), 1 for a fraction (all within [0, 1]); anything else is no accuracy."""
    v = table.values[column]
    v = v[np.isfinite(v)]
    lo, hi = float(v.min()), float(v.max())
    if better_direction(column) == "lower":
        raise UserError(f"{table.path}: column {column!r} reads as a cost (lower is better); a reward column must be "
                        f"an accuracy (in %, or a fraction)")
    if 0.0 <= lo and hi <= 1.0:
        return 1.0
    if 0.0 <= lo and hi <= 100.0:
        return 0.01
    raise UserError(f"{table.path}: column {column!r} has values in [{lo:g}, {hi:g}]; a reward column must be an "
                    f"accuracy in % (0..100) or a fraction (0..1)")
