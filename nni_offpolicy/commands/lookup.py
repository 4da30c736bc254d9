"""``nni-offpolicy lookup FILE... --table TABLE[:COLUMN]``: where searched NB201 cells stand in a benchmark table;
``lookup FILE... --surrogate MODEL.onnx``: what a NAS-Bench-301 surrogate predicts for searched DARTS cells, and
where that stands among random cells and the published ones scored by the same model (``data/surrogate.py``)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from nni_offpolicy.errors import UserError
from nni_offpolicy.files.run_folder import GENOTYPE_FILE

DARTS_HINT = ("benchmark tables are NAS-Bench-201: give a search of the nb201 space, its genotype.json, an exported "
              "top.json of nb201 trials, or an arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2| (judge DARTS cells "
              "with --surrogate MODEL.onnx)")


def _nb201(arch: Any, source: str) -> str:
    """The arch string of an entry; one clear error for a DARTS-family genotype."""
    if isinstance(arch, str) and arch.lstrip().startswith("|"):
        return arch
    if isinstance(arch, str) and arch.lstrip().startswith("{"):  # a genotype reported as json.dumps(...)
        from nni_offpolicy.files.reading import parse_json

        try:
            parsed = parse_json(arch, source)  # bounded nesting
        except UserError:
            parsed = None
        if parsed is not None:
            return _nb201(parsed, source)
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
    doc = _read_doc(path)
    if isinstance(doc, dict) and isinstance(doc.get("architectures"), list):
        return _top_entries(path, doc["architectures"], _nb201)
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


def _top_entries(path: Path, entries: list[Any], cell: Callable[[Any, str], Any]) -> list[tuple[str, str, Any]]:
    """``(source, "#rank", cell)`` of each architecture of an exported top.json; ``cell`` reads one entry's
    genotype as the lookup needs it (an NB201 arch string, a DARTS Genotype) or says why it cannot."""
    if not entries:
        raise UserError(f"{path}: holds no architectures")
    return [(str(path), f"#{entry.get('rank', k + 1)}" if isinstance(entry, dict) else f"#{k + 1}",
             cell(entry.get("genotype") if isinstance(entry, dict) else entry, f"{path} entry {k + 1}"))
            for k, entry in enumerate(entries)]


def _read_doc(path: Path) -> Any:
    from nni_offpolicy.files.reading import read_json

    return read_json(path, "file")  # bounded: size, nesting, not a FIFO or a device; one line otherwise


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
                                       if math.isfinite(table.values[c][row])}})  # NaN or inf: no value
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


# ------------------------------------------------------------------------------------------------ --surrogate
NB201_FOR_SURROGATE = "the NB301 surrogate judges DARTS cells (look NB201 cells up with --table)"
MAX_REFERENCE_CELLS = 1_000_000


def _darts(arch: Any, source: str) -> Any:
    """The Genotype of an entry; one clear error for an NB201 cell or a malformed genotype."""
    from nni_offpolicy.data.surrogate import as_genotype

    if isinstance(arch, str) and arch.lstrip().startswith("{"):  # a genotype reported as json.dumps(...)
        from nni_offpolicy.files.reading import parse_json

        try:
            arch = parse_json(arch, source)
        except UserError:
            pass
    return as_genotype(arch, source)


def search_cells(doc: dict[str, Any], source: str) -> list[tuple[str, Any]]:
    """``(which, Genotype)`` of a DARTS search's genotype.json: the derived cell, the best-sampled one and, when
    the final pick recorded candidates, the policy's own cell (candidate 0)."""
    from search_spaces.genotypes import sample_to_genotype

    cells = [("derived", _darts(doc["genotype"], source))]
    best = doc.get("best_sampled")
    if isinstance(best, dict) and "genotype" in best:
        cells.append(("best sampled", _darts(best["genotype"], f"{source} best_sampled")))
    candidates = doc.get("final_candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict) \
            and isinstance(candidates[0].get("sample"), dict):
        sample = candidates[0]["sample"]
        nodes = sum(1 for key in sample if str(key).startswith("normal/input_"))
        try:
            cells.append(("policy", _darts(sample_to_genotype(sample, nodes), f"{source} final_candidates[0]")))
        except (KeyError, ValueError) as exc:
            raise UserError(f"{source}: final_candidates[0] is not a DARTS cell ({exc})") from None
    return cells


def darts_cells_of(spec: str) -> list[tuple[str, str, Any]]:
    """``(source, which, Genotype)`` per cell a FILE argument names for ``--surrogate``: a DARTS search folder or
    its genotype.json (derived, best-sampled and, if recorded, the policy's cell), an exported top.json (every
    architecture), a pasted ``Genotype(...)`` string or a built-in genotype name."""
    from search_spaces.families import FAMILIES
    from search_spaces.genotypes import PUBLISHED, is_existing_file_name

    text = spec.strip()
    if text.startswith("|"):
        raise UserError(f"{spec!r} is a NAS-Bench-201 arch string; {NB201_FOR_SURROGATE}")
    if text.startswith("Genotype("):
        return [("Genotype string", "genotype", _darts(text, "the Genotype(...) string"))]
    if spec in PUBLISHED:
        return [(spec, "published", PUBLISHED[spec])]
    path = Path(spec)
    if path.is_dir():
        path = path / GENOTYPE_FILE
        if not path.exists():
            raise UserError(f"{spec} is a folder without a genotype.json (not a finished search)")
    if not is_existing_file_name(path):
        if "/" not in spec and not path.suffix:
            raise UserError(f"unknown genotype name {spec!r}; built-in: {', '.join(PUBLISHED)} (or give a search "
                            f"folder, its genotype.json, an exported top.json or a Genotype(...) string)")
        raise UserError(f"file not found: {spec}")
    doc = _read_doc(path)
    if isinstance(doc, dict) and isinstance(doc.get("architectures"), list):
        return _top_entries(path, doc["architectures"], _darts)
    if isinstance(doc, dict) and "genotype" in doc:
        family = doc.get("family")
        if isinstance(family, str) and family in FAMILIES and FAMILIES[family].tables:
            raise UserError(f"{path} holds a NAS-Bench-201 cell (a search of the {doc.get('space')} space); "
                            f"{NB201_FOR_SURROGATE}")
        return [(str(path), which, g) for which, g in search_cells(doc, str(path))]
    if isinstance(doc, (dict, str)):
        return [(str(path), "genotype", _darts(doc, str(path)))]
    raise UserError(f"{path}: not a search's genotype.json, an exported top.json or a genotype")


def surrogate_lookup(specs: list[str], surrogate_spec: str, cells: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything ``lookup --surrogate`` prints, as one JSON-able document: each cell's predicted accuracy, its
    percentile among ``cells`` random cells (``seed``) scored by the same model, its parameter-free normal edges
    and its parameters at 20 cells of 36 channels; the same for the published cells; the random reference's
    summary. Every input (the cells, the model, its encoding) is checked before any output."""
    from search_spaces.genotypes import PUBLISHED

    from nni_offpolicy.data.surrogate import eval_params_m, normal_param_free, open_surrogate

    if isinstance(cells, bool) or not 1 <= cells <= MAX_REFERENCE_CELLS:
        raise UserError(f"--surrogate-random must be in 1..{MAX_REFERENCE_CELLS}, got {cells}")
    if isinstance(seed, bool) or not 0 <= seed < 2 ** 32:
        raise UserError(f"--surrogate-seed must be in [0, 2^32-1], got {seed}")
    found = [cell for spec in specs for cell in darts_cells_of(spec)]
    judge = open_surrogate(surrogate_spec)
    # a search's best-sampled or policy cell may keep a `none` edge (the derivation never does): it is recorded
    # without a value, the way ablate records it, rather than costing the user the search's derived cell
    unscored = {k: _unencodable(judge, g, f"{s} ({w})") for k, (s, w, g) in enumerate(found)
                if w in SECONDARY_CELLS}
    unscored = {k: why for k, why in unscored.items() if why is not None}
    scored = [cell for k, cell in enumerate(found) if k not in unscored]
    everything = scored + [(name, "published", g) for name, g in PUBLISHED.items()]
    values = judge.predict([g for *_, g in everything], [f"{s} ({w})" for s, w, _ in everything])
    reference = judge.reference_summary(cells, seed)
    params = eval_params_m([g for *_, g in everything])
    entries = [{"source": s, "which": w, "genotype": str(g), "accuracy": v,
                "percentile": judge.percentile(v, cells, seed), "normal_param_free": normal_param_free(g),
                "params_m": p} for (s, w, g), v, p in zip(everything, values, params)]
    results = iter(entries[:len(scored)])
    return {"surrogate": judge.describe(), "reference": reference,
            "results": [{"source": s, "which": w, "genotype": str(g), "accuracy": None, "unscored": unscored[k]}
                        if k in unscored else next(results) for k, (s, w, g) in enumerate(found)],
            "published": entries[len(scored):]}


SECONDARY_CELLS = ("best sampled", "policy")  # a search's cells besides its answer


def _unencodable(judge: Any, genotype: Any, source: str) -> str | None:
    """Why the model cannot take ``genotype`` (one line), or None."""
    try:
        judge.encode([genotype], [source])
    except UserError as exc:
        return str(exc)
    return None


def _columns(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if k in right else cell.ljust(w)
                      for k, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def format_surrogate_human(doc: dict[str, Any]) -> str:
    s, r = doc["surrogate"], doc["reference"]
    lines = [f"surrogate {s['model']} (encoding {s['encoding']}), epoch {s['epoch']:g}: predicted validation "
             f"accuracy (%) in NAS-Bench-301's protocol (CIFAR-10)",
             f"random reference, {r['cells']} uniformly random cells (seed {r['seed']}): mean {r['mean']:.2f}, median "
             f"{r['median']:.2f}, top 10 % >= {r['top10']:.2f}, top 1 % >= {r['top1']:.2f}, max {r['max']:.2f}", ""]
    header = ["source", "cell", "accuracy", "percentile", "param-free normal edges", "params (M, 20x36)"]

    def rows(entries: list[dict[str, Any]]) -> list[list[str]]:
        return [[e["source"], e["which"], "no value", "-", "-", "-"] if e["accuracy"] is None else
                [e["source"], e["which"], f"{e['accuracy']:.2f}", f"{e['percentile']:.1f}",
                 f"{e['normal_param_free']} / 8", f"{e['params_m']:.3f}"] for e in entries]

    table = _columns([header] + rows(doc["results"]) + [[""] * len(header)] + rows(doc["published"]),
                     {2, 3, 4, 5})
    lines += table[:1 + len(doc["results"])]
    lines += [f"  no value: {e['unscored']}" for e in doc["results"] if e["accuracy"] is None]
    lines += ["", "published cells, same model:"] + table[2 + len(doc["results"]):]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lookup", help="look searched NB201 cells up in a benchmark table (value, rank, percentile), or judge "
                       "DARTS cells with a NAS-Bench-301 surrogate",
        description="For each FILE (a search folder, its genotype.json, an exported top.json or a pasted NB201 "
                    "arch string) print each cell (a search's derived and best-sampled cell, every architecture "
                    "of a top.json), its value in each numeric column of the table (or the named one), its rank "
                    "r / N (1 = best, ties shared) and percentile (share of the table's cells it is at least as "
                    "good as), and the table's optimum and median. A table is a CSV or JSON with an arch column "
                    "and numeric columns; columns named like a cost (loss, error, latency, time, params, flops) "
                    "rank lower-is-better. With --surrogate instead, FILEs are DARTS cells (a search folder, its "
                    "genotype.json, a top.json, a Genotype(...) string or a built-in name such as pdarts): each "
                    "cell's predicted accuracy, its percentile among random cells scored by the same model, its "
                    "parameter-free normal edges and parameters, beside the published cells'.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="search folder, genotype.json, top.json, arch string (--table) or Genotype(...) string or "
                        "genotype name (--surrogate)")
    judge = p.add_mutually_exclusive_group(required=True)
    judge.add_argument("--table", metavar="TABLE[:COLUMN]",
                       help="benchmark table (.csv or .json), optionally :COLUMN to report one numeric column")
    judge.add_argument("--surrogate", metavar="MODEL.onnx[:ENCODING.json]",
                       help="a NAS-Bench-301 surrogate (ONNX; its encoding JSON beside it or named after ':'); needs "
                            "pip install -e '.[bench]'")
    p.add_argument("--surrogate-random", type=int, default=None, metavar="N",
                   help="random cells the surrogate's percentiles are taken among (default 1000)")
    p.add_argument("--surrogate-seed", type=int, default=None, metavar="S",
                   help="seed of those random cells (default 0)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.surrogate is None:
        if args.surrogate_random is not None or args.surrogate_seed is not None:
            raise UserError("--surrogate-random and --surrogate-seed go with --surrogate")
        doc = lookup(args.files, args.table)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else format_human(doc) + "\n")
        return 0
    from nni_offpolicy.data.surrogate import REFERENCE_CELLS, REFERENCE_SEED

    doc = surrogate_lookup(args.files, args.surrogate,
                           REFERENCE_CELLS if args.surrogate_random is None else args.surrogate_random,
                           REFERENCE_SEED if args.surrogate_seed is None else args.surrogate_seed)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else format_surrogate_human(doc) + "\n")
    return 0


def _has_tables(family: Any) -> bool:
    """Whether benchmark tables hold this family's cells (an unnamed family: let the arch string decide)."""
    from search_spaces.families import FAMILIES

    known = isinstance(family, str) and family in FAMILIES
    return not known or FAMILIES[family].tables
