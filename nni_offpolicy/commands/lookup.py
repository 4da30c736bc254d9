"""``nni-offpolicy lookup FILE... --table TABLE[:COLUMN]``: where searched NB201 cells stand in a benchmark table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nni_offpolicy.errors import UserError
from nni_offpolicy.files.run_folder import GENOTYPE_FILE

DARTS_HINT = ("benchmark tables are NAS-Bench-201: give a search of the nb201 space, its genotype.json, an exported "
              "top.json of nb201 trials, or an arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")


def _nb201(arch: Any, source: str) -> str:
    """The arch string of an entry; one clear error for a DARTS-family genotype."""
    if isinstance(arch, str) and arch.lstrip().startswith("|"):
        return arch
    if isinstance(arch, str) and arch.lstrip().startswith("{"):  # a genotype reported as json.dumps(...)
        try:
            return _nb201(json.loads(arch), source)
        except json.JSONDecodeError:
            pass
    if isinstance(arch, (dict, str)):
        raise UserError(f"{source} holds a DARTS-family genotype; {DARTS_HINT}")
    raise UserError(f"{source}: expected an NB201 arch string, got {type(arch).__name__}")


def cells_of(spec: str) -> list[tuple[str, str, str]]:
    """``(source, which, arch)`` per cell a FILE argument names: a search folder or its genotype.json (derived
    and best-sampled cell), an exported top.json (every architecture), or a pasted arch string."""
    if spec.lstrip().startswith("|"):
        return [("arch string", "arch", spec)]
    path = Path(spec)
    if path.is_dir():
        path = path / GENOTYPE_FILE
        if not path.exists():
            raise UserError(f"{spec} is a folder without a genotype.json (not a finished search)")
    if not path.exists():
        if spec.lstrip().startswith("Genotype(") or "/" not in spec and not path.suffix:
            raise UserError(f"{spec!r} is not an NB201 arch string or a file; {DARTS_HINT}")
        raise UserError(f"file not found: {spec}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("architectures"), list):
        if not doc["architectures"]:
            raise UserError(f"{path}: holds no architectures")
        return [(str(path), f"#{entry.get('rank', k + 1)}" if isinstance(entry, dict) else f"#{k + 1}",
                 _nb201(entry.get("genotype") if isinstance(entry, dict) else entry, f"{path} entry {k + 1}"))
                for k, entry in enumerate(doc["architectures"])]
    if isinstance(doc, dict) and "genotype" in doc:
        if not _has_tables(doc.get("family")):
            raise UserError(f"{path} holds a DARTS-family genotype (a search of the {doc.get('space')} space); "
                            f"{DARTS_HINT}")
        cells = [(str(path), "derived", _nb201(doc.get("arch") or doc["genotype"], str(path)))]
        best = doc.get("best_sampled")
        if isinstance(best, dict) and "genotype" in best:
            cells.append((str(path), "best sampled", _nb201(best["genotype"], f"{path} best_sampled")))
        return cells
    if isinstance(doc, str):
        return [(str(path), "arch", _nb201(doc, str(path)))]
    if isinstance(doc, dict) and "normal" in doc:
        raise UserError(f"{path} holds a DARTS-family genotype; {DARTS_HINT}")
    raise UserError(f"{path}: not a search's genotype.json, an exported top.json or an arch string")


def lookup(specs: list[str], table_spec: str) -> dict[str, Any]:
    """Everything ``lookup`` prints, as one JSON-able document; every input is checked before any output."""
    from nni_offpolicy.data.tables import canonical_arch, open_table

    table, column = open_table(table_spec)
    columns = [column] if column else list(table.columns)
    results = []
    for spec in specs:
        for source, which, arch in cells_of(spec):
            key = canonical_arch(arch)
            row = table.row(key)
            results.append({"source": source, "which": which, "arch": key,
                            "values": {c: table.lookup(key, c).to_dict() for c in columns
                                       if table.values[c][row] == table.values[c][row]}})  # NaN: no value
    return {"table": str(table.path), "cells": len(table),
            "columns": {c: table.column_summary(c) for c in columns}, "results": results}


def format_human(doc: dict[str, Any]) -> str:
    lines = [f"table {doc['table']}: {doc['cells']} cells"]
    for c, s in doc["columns"].items():
        lines.append(f"  {c} ({s['better']} is better): optimum {s['optimum']:.4g} ({s['optimum_arch']}), "
                     f"median {s['median']:.4g}")
    lines.append("")
    header = ["source", "cell", "arch", "column", "value", "rank", "percentile"]
    body = []
    for r in doc["results"]:
        for c, v in r["values"].items():
            body.append([r["source"], r["which"], r["arch"], c, f"{v['value']:.4g}", f"{v['rank']} / {v['cells']}",
                         f"{v['percentile']:.2f}"])
        if not r["values"]:
            body.append([r["source"], r["which"], r["arch"], "-", "no value", "-", "-"])
    widths = [max(len(row[k]) for row in [header] + body) for k in range(len(header))]
    right = {4, 5, 6}
    for row in [header] + body:
        lines.append("  ".join(cell.rjust(w) if k in right else cell.ljust(w)
                               for k, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lookup", help="look searched NB201 cells up in a benchmark table (value, rank, percentile)",
        description="For each FILE (a search folder, its genotype.json, an exported top.json or a pasted NB201 "
                    "arch string) print each cell (a search's derived and best-sampled cell, every architecture "
                    "of a top.json), its value in each numeric column of the table (or the named one), its rank "
                    "r / N (1 = best, ties shared) and percentile (share of the table's cells it is at least as "
                    "good as), and the table's optimum and median. A table is a CSV or JSON with an arch column "
                    "and numeric columns; columns named like a cost (loss, error, latency, time, params, flops) "
                    "rank lower-is-better.")
    p.add_argument("files", nargs="+", metavar="FILE", help="search folder, genotype.json, top.json or arch string")
    p.add_argument("--table", required=True, metavar="TABLE[:COLUMN]",
                   help="benchmark table (.csv or .json), optionally :COLUMN to report one numeric column")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = lookup(args.files, args.table)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else format_human(doc) + "\n")
    return 0


def _has_tables(family: Any) -> bool:
    """Whether benchmark tables hold this family's cells (an unnamed family: let the arch string decide)."""
    from search_spaces.families import FAMILIES

    known = isinstance(family, str) and family in FAMILIES
    return not known or FAMILIES[family].tables
