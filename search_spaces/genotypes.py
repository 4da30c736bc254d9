"""Genotypes: the architecture format every DARTS-family codebase reads, and NAS-Bench-201 arch strings.

``Genotype`` is field-for-field the DARTS namedtuple, so ``str(genotype)`` pastes into DARTS/P-DARTS/PC-DARTS
``genotypes.py`` files and their genotypes paste into ours (``parse_genotype``).
"""
from __future__ import annotations

import ast
import json
import re
from collections import namedtuple
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

# No torch or NNI here (the op registry, ops.OPS, is imported where an op name is checked): the CLI reads the
# built-in names and genotype files to build --help and to price a genotype.json without waiting for them.

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


class GenotypeError(ValueError):
    """A malformed genotype; the message names the field."""


def _ops() -> Mapping[str, Any]:
    """The op registry (``ops.OPS``), imported on first use."""
    from .ops import OPS

    return OPS


PUBLISHED: dict[str, Genotype] = {
    # Liu et al., DARTS (ICLR 2019), first order.
    "darts_v1": Genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=[2, 3, 4, 5]),
    # DARTS second order: 97.24 % at 3.3 M parameters.
    "darts_v2": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=[2, 3, 4, 5]),
    # Chen et al., P-DARTS (ICCV 2019), CIFAR-10: 97.50 % at 3.4 M.
    "pdarts": Genotype(
        normal=[("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
                ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
        reduce_concat=[2, 3, 4, 5]),
    # Xu et al., PC-DARTS (ICLR 2020), CIFAR-10: 97.43 % at 3.6 M.
    "pc_darts": Genotype(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
        reduce_concat=[2, 3, 4, 5]),
}


def published_genotype(name: str) -> Genotype:
    if name not in PUBLISHED:
        raise GenotypeError(f"unknown genotype name {name!r}; built-in: {', '.join(sorted(PUBLISHED))}")
    return PUBLISHED[name]


def genotype_nodes(genotype: Genotype) -> int:
    return len(genotype.normal) // 2


def validate_genotype(genotype: Genotype, allowed_ops: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
                      distinct_inputs: bool = False) -> Genotype:
    """Check shape, indices and op names; ``allowed_ops[kind][j_i]`` restricts ops per edge when given."""
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        if not isinstance(pairs, (list, tuple)) or not pairs or len(pairs) % 2:
            raise GenotypeError(f"{kind}: expected 2 (op, input) pairs per node, got {pairs!r}")
        nodes = len(pairs) // 2
        if kind == "reduce" and nodes != len(genotype.normal) // 2:
            raise GenotypeError(f"reduce: {nodes} nodes but normal has {len(genotype.normal) // 2}")
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise GenotypeError(f"{kind}[{k}]: expected [op, input_index], got {pair!r}")
            op, index = pair
            node = 2 + k // 2
            if not isinstance(op, str) or op not in _ops():
                raise GenotypeError(f"{kind}[{k}]: unknown op {op!r}; allowed: {', '.join(sorted(_ops()))}")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < node:
                raise GenotypeError(f"{kind}[{k}]: input index {index!r} out of range for node {node} "
                                    f"(allowed 0..{node - 1})")
            if allowed_ops is not None:
                allowed = allowed_ops[kind][f"{node}_{index}"]
                if op not in allowed:
                    raise GenotypeError(f"{kind}[{k}]: op {op!r} not allowed on edge {node}_{index}; "
                                        f"allowed: {', '.join(allowed)}")
        if distinct_inputs:
            for n in range(nodes):
                if pairs[2 * n][1] == pairs[2 * n + 1][1]:
                    raise GenotypeError(f"{kind}[{2 * n}:{2 * n + 2}]: node {n + 2} takes input "
                                        f"{pairs[2 * n][1]} twice; this space needs two different inputs")
        concat = getattr(genotype, f"{kind}_concat")
        if not concat or any(not isinstance(c, int) or not 0 <= c < nodes + 2 for c in concat):
            raise GenotypeError(f"{kind}_concat: expected node indices in 0..{nodes + 1}, got {concat!r}")
    return genotype


def _normalise(data: Mapping[str, Any]) -> Genotype:
    missing = [f for f in Genotype._fields if f not in data]
    if missing:
        raise GenotypeError(f"genotype is missing field(s) {missing}; expected {list(Genotype._fields)}")
    fields = {}
    for kind in ("normal", "reduce"):
        pairs = data[kind]
        if not isinstance(pairs, (list, tuple)):
            raise GenotypeError(f"{kind}: expected a list of [op, input] pairs, got {pairs!r}")
        fields[kind] = [tuple(p) if isinstance(p, (list, tuple)) else p for p in pairs]
        concat = data[f"{kind}_concat"]
        fields[f"{kind}_concat"] = list(concat) if isinstance(concat, (list, tuple, range)) else concat
    return validate_genotype(Genotype(**fields))


def genotype_to_dict(genotype: Genotype) -> dict[str, Any]:
    return {
        "normal": [[op, int(i)] for op, i in genotype.normal],
        "normal_concat": [int(c) for c in genotype.normal_concat],
        "reduce": [[op, int(i)] for op, i in genotype.reduce],
        "reduce_concat": [int(c) for c in genotype.reduce_concat],
    }


def genotype_from_dict(data: Mapping[str, Any]) -> Genotype:
    return _normalise(data)


def parse_genotype(text: str) -> Genotype:
    """Parse ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` as printed by DARTS-family code."""
    match = re.fullmatch(r"\s*Genotype\((.*)\)\s*", text, re.S)
    if not match:
        raise GenotypeError("not a Genotype(...) expression")
    body = re.sub(r"range\(\s*(\d+)\s*,\s*(\d+)\s*\)", lambda m: str(list(range(int(m[1]), int(m[2])))), match[1])
    try:
        call = ast.parse(f"f({body})", mode="eval").body
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}  # type: ignore[attr-defined]
    except (SyntaxError, ValueError) as exc:
        raise GenotypeError(f"cannot parse Genotype expression: {exc}") from None
    return _normalise(kwargs)


def load_genotype(spec: str, index: int | None = None) -> Genotype:
    """A built-in name, a ``Genotype(...)`` string, or a JSON file.

    The file may hold a genotype, a search's ``genotype.json`` (key ``genotype``), or an exported top-K list
    (``index`` picks one entry, default 0).
    """
    if spec in PUBLISHED:
        return PUBLISHED[spec]
    if spec.lstrip().startswith("Genotype("):
        return parse_genotype(spec)
    path = Path(spec)
    if not is_existing_file_name(path):
        if path.suffix or "/" in spec:
            raise GenotypeError(f"genotype file not found: {spec}")
        raise GenotypeError(f"unknown genotype name {spec!r}; built-in: {', '.join(sorted(PUBLISHED))} "
                            f"(or give a JSON file)")
    return genotype_from_document(_read_json(path), index, spec)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenotypeError(f"{path}: not valid JSON ({exc})") from None


def _pick_entry(data: Any, index: int | None, source: str) -> Any:
    """One architecture's entry of a document: ``index`` into a top-K list, or the document itself."""
    entries = data.get("architectures") if isinstance(data, dict) and "architectures" in data else data
    if isinstance(entries, list):
        i = 0 if index is None else index
        if not -len(entries) <= i < len(entries):
            raise GenotypeError(f"{source}: index {i} is past the end ({len(entries)} architecture(s))")
        return entries[i]
    if index not in (None, 0):
        raise GenotypeError(f"{source}: holds one architecture, so --index {index} is past the end")
    return data


def genotype_from_document(data: Any, index: int | None, source: str) -> Genotype:
    data = _pick_entry(data, index, source)
    if isinstance(data, dict) and "genotype" in data:
        data = data["genotype"]
    if isinstance(data, str):
        return parse_genotype(data) if data.startswith("Genotype(") else genotype_from_document(
            json.loads(data), None, source)
    if not isinstance(data, dict):
        raise GenotypeError(f"{source}: expected a genotype object, got {type(data).__name__}")
    return _normalise(data)


# ---------------------------------------------------------------- NNI sample dicts

def sample_to_genotype(sample: Mapping[str, Any], nodes: int = 4) -> Genotype:
    """NNI's exported dict (``normal/op_2_0``, ``normal/input_2``, ...) -> Genotype."""
    fields: dict[str, Any] = {}
    for kind in ("normal", "reduce"):
        pairs = []
        for j in range(2, nodes + 2):
            key = f"{kind}/input_{j}"
            if key not in sample:
                raise GenotypeError(f"sample is missing {key!r}")
            inputs = [int(i) for i in sample[key]]  # the order of a node's pair is kept, as DARTS prints it
            for i in inputs:
                pairs.append((sample[f"{kind}/op_{j}_{i}"], i))
        fields[kind] = pairs
        fields[f"{kind}_concat"] = list(range(2, nodes + 2))
    return validate_genotype(Genotype(**fields))


def genotype_to_sample(genotype: Genotype, edge_ops: Mapping[str, Mapping[str, Sequence[str]]] | None = None
                       ) -> dict[str, Any]:
    """Genotype -> NNI sample; unchosen edges take their first candidate (``edge_ops[kind][j_i][0]``)."""
    validate_genotype(genotype, allowed_ops=edge_ops, distinct_inputs=True)
    nodes = genotype_nodes(genotype)
    sample: dict[str, Any] = {}
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        for j in range(2, nodes + 2):
            for i in range(j):
                sample[f"{kind}/op_{j}_{i}"] = edge_ops[kind][f"{j}_{i}"][0] if edge_ops else "none"
            chosen = pairs[2 * (j - 2): 2 * (j - 2) + 2]
            sample[f"{kind}/input_{j}"] = [i for _, i in chosen]
            for op, i in chosen:
                sample[f"{kind}/op_{j}_{i}"] = op
    return sample


# ---------------------------------------------------------------- NAS-Bench-201

NB201_EDGES = [(j, i) for j in range(1, 4) for i in range(j)]


def sample_to_nb201(sample: Mapping[str, Any]) -> str:
    """``{'cell/op_1_0': ...}`` -> ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    nodes = []
    for j in range(1, 4):
        nodes.append("|" + "|".join(f"{sample[f'cell/op_{j}_{i}']}~{i}" for i in range(j)) + "|")
    return "+".join(nodes)


def nb201_to_sample(arch: str) -> dict[str, str]:
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise GenotypeError(f"NAS-Bench-201 arch string needs 3 nodes separated by '+', got {arch!r}")
    sample = {}
    for j, node in enumerate(nodes, start=1):
        edges = [e for e in node.strip("|").split("|") if e]
        if len(edges) != j:
            raise GenotypeError(f"node {j} of {arch!r} needs {j} edge(s), got {len(edges)}")
        for i, edge in enumerate(edges):
            op, _, src = edge.partition("~")
            if src != str(i):
                raise GenotypeError(f"node {j} edge {i} of {arch!r}: expected '~{i}', got {edge!r}")
            if op not in _ops():
                raise GenotypeError(f"node {j} edge {i}: unknown op {op!r}; allowed: {', '.join(sorted(_ops()))}")
            sample[f"cell/op_{j}_{i}"] = op
    return sample


# ---------------------------------------------------------------- either family

Architecture = Union[Genotype, dict]
"""A DARTS-family ``Genotype`` or a NAS-Bench-201 sample ``{'cell/op_j_i': op}``."""


def load_architecture(spec: str, index: int | None = None) -> tuple[str, Architecture]:
    """``("darts", Genotype)`` or ``("nb201", sample)`` from a built-in name, a ``Genotype(...)`` string, a
    NAS-Bench-201 arch string (``|op~0|+...``), or a JSON file (a genotype, a search's genotype.json, or an
    exported top-K list; ``index`` picks an entry). In files, a ``genotype`` that is an arch string is NB201."""
    if spec.lstrip().startswith("|"):
        if index not in (None, 0):
            raise GenotypeError(f"an arch string holds one architecture, so --index {index} is past the end")
        return "nb201", nb201_to_sample(spec)
    if spec.lstrip().startswith("Genotype("):  # pasted text, not a file: asking the file system first fails
        if index not in (None, 0):              # with "File name too long" for a whole genotype
            raise GenotypeError(f"a Genotype(...) string holds one architecture, so --index {index} is past the end")
        return "darts", parse_genotype(spec)
    path = Path(spec)
    if is_existing_file_name(path) and spec not in PUBLISHED:
        entry = _pick_entry(_read_json(path), index, spec)
        arch = entry.get("genotype") if isinstance(entry, dict) else entry
        if isinstance(arch, str) and arch.lstrip().startswith("|"):
            return "nb201", nb201_to_sample(arch)
        return "darts", genotype_from_document(entry, None, spec)
    return "darts", load_genotype(spec, index)


def is_existing_file_name(path: Path) -> bool:
    """``path.exists()``, False where the text cannot even be a file name (too long, a NUL byte)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
