"""Genotypes: the architecture format every DARTS-family codebase reads, and NAS-Bench-201 arch strings.

``Genotype`` is field-for-field the DARTS namedtuple, so ``str(genotype)`` pastes into DARTS/P-DARTS/PC-DARTS
``genotypes.py`` files and their genotypes paste into ours (``parse_genotype``).
"""
from __future__ import annotations

import ast
import re
from collections import namedtuple
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

# No torch or NNI here (the op registry, ops.OPS, is imported where an op name is checked): the CLI reads the
# built-in names and genotype files to build --help and to price a genotype.json without waiting for them.

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


class GenotypeError(ValueError):
    """A malformed genotype; the message names the field."""


def _shown(value: Any) -> str:
    """``repr(value)`` as an error shows it: short, however long the text given (a 10 MB op name is not echoed)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        raise GenotypeError(f"unknown genotype name {_shown(name)}; built-in: {', '.join(sorted(PUBLISHED))}")
    return PUBLISHED[name]


def genotype_nodes(genotype: Genotype) -> int:
    return len(genotype.normal) // 2


def validate_genotype(genotype: Genotype, allowed_ops: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
                      distinct_inputs: bool = False) -> Genotype:
    """Check shape, indices and op names; ``allowed_ops[kind][j_i]`` restricts ops per edge when given."""
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        if not isinstance(pairs, (list, tuple)) or not pairs or len(pairs) % 2:
            raise GenotypeError(f"{kind}: expected 2 (op, input) pairs per node, got {_shown(pairs)}")
        nodes = len(pairs) // 2
        if kind == "reduce" and nodes != len(genotype.normal) // 2:
            raise GenotypeError(f"reduce: {nodes} nodes but normal has {len(genotype.normal) // 2}")
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise GenotypeError(f"{kind}[{k}]: expected [op, input_index], got {_shown(pair)}")
            op, index = pair
            node = 2 + k // 2
            if not isinstance(op, str) or op not in _ops():
                raise GenotypeError(f"{kind}[{k}]: unknown op {_shown(op)}; allowed: {', '.join(sorted(_ops()))}")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < node:
                raise GenotypeError(f"{kind}[{k}]: input index {_shown(index)} out of range for node {node} "
                                    f"(allowed 0..{node - 1})")
            if allowed_ops is not None:
                allowed = allowed_ops[kind][f"{node}_{index}"]
                if op not in allowed:
                    raise GenotypeError(f"{kind}[{k}]: op {_shown(op)} not allowed on edge {node}_{index}; "
                                        f"allowed: {', '.join(allowed)}")
        if distinct_inputs:
            for n in range(nodes):
                if pairs[2 * n][1] == pairs[2 * n + 1][1]:
                    raise GenotypeError(f"{kind}[{2 * n}:{2 * n + 2}]: node {n + 2} takes input "
                                        f"{pairs[2 * n][1]} twice; this space needs two different inputs")
        concat = getattr(genotype, f"{kind}_concat")
        if not concat or any(not isinstance(c, int) or not 0 <= c < nodes + 2 for c in concat):
            raise GenotypeError(f"{kind}_concat: expected node indices in 0..{nodes + 1}, got {_shown(concat)}")
    return genotype


def _normalise(data: Mapping[str, Any]) -> Genotype:
    missing = [f for f in Genotype._fields if f not in data]
    if missing:
        raise GenotypeError(f"genotype is missing field(s) {missing}; expected {list(Genotype._fields)}")
    fields = {}
    for kind in ("normal", "reduce"):
        pairs = data[kind]
        if not isinstance(pairs, (list, tuple)):
            raise GenotypeError(f"{kind}: expected a list of [op, input] pairs, got {_shown(pairs)}")
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
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise GenotypeError(f"cannot parse Genotype expression: {str(exc).splitlines()[0][:120]}") from None
    # only Genotype(field=literal, ...): "Genotype(x) or __import__('os')..." parses as another expression
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f") or call.args:
        raise GenotypeError("not a Genotype(...) expression: expected Genotype(normal=[...], normal_concat=..., "
                            "reduce=[...], reduce_concat=...) and nothing around it")
    kwargs = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise GenotypeError("Genotype(...): expected named fields, got **")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise GenotypeError(f"Genotype(...): field {_shown(kw.arg)} is not a literal (lists, tuples, numbers and "
                                f"strings only; nothing is called or evaluated)") from None
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
        raise GenotypeError(f"unknown genotype name {_shown(spec)}; built-in: {', '.join(sorted(PUBLISHED))} "
                            f"(or give a JSON file)")
    return genotype_from_document(_read_json(path), index, spec)


def _read_json(path: Path) -> Any:
    """A genotype file's document through the bounded reader (a regular file, limited in size and nesting; one
    line for anything else). A file holding the text of one architecture (``Genotype(...)`` or an arch string
    ``|op~0|+...``), as printed, is that text."""
    from nni_offpolicy.files.reading import parse_json, read_text

    text = read_text(path, "genotype file")
    if text.lstrip().startswith(("Genotype(", "|")):
        return text.strip()
    return parse_json(text, f"genotype file {path}")


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
        if data.lstrip().startswith("Genotype("):
            return parse_genotype(data)
        from nni_offpolicy.errors import UserError
        from nni_offpolicy.files.reading import parse_json

        try:
            inner = parse_json(data, source)  # a genotype reported as json.dumps(...)
        except UserError:
            shown = data if len(data) <= 60 else data[:57] + "..."
            raise GenotypeError(f"{source}: holds the text {shown!r}, which is neither a Genotype(...) string, an "
                                f"arch string |op~0|+... nor a genotype object") from None
        return genotype_from_document(inner, None, source)
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
                raise GenotypeError(f"sample is missing {_shown(key)}")
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
        raise GenotypeError(f"NAS-Bench-201 arch string needs 3 nodes separated by '+', got {_shown(arch)}")
    sample = {}
    for j, node in enumerate(nodes, start=1):
        edges = [e for e in node.strip("|").split("|") if e]
        if len(edges) != j:
            raise GenotypeError(f"node {j} of {_shown(arch)} needs {j} edge(s), got {len(edges)}")
        for i, edge in enumerate(edges):
            op, _, src = edge.partition("~")
            if src != str(i):
                raise GenotypeError(f"node {j} edge {i} of {_shown(arch)}: expected '~{i}', got {_shown(edge)}")
            if op not in _ops():
                raise GenotypeError(f"node {j} edge {i}: unknown op {_shown(op)}; allowed: {', '.join(sorted(_ops()))}")
            sample[f"cell/op_{j}_{i}"] = op
    return sample


def require_benchmark_ops(sample: Mapping[str, str], source: str = "arch string") -> dict[str, str]:
    """``sample`` if every op is one of NAS-Bench-201's five (what its tables and its evaluation network hold);
    an arch string may name any op of the registry (a user's own NB201-shaped space), but a benchmark cannot rank
    ``sep_conv_3x3``."""
    from .ops import NB201_OPS

    for key, op in sample.items():
        if op not in NB201_OPS:
            raise GenotypeError(f"{source}: {_shown(op)} ({key}) is not a NAS-Bench-201 op; allowed: "
                                f"{', '.join(NB201_OPS)}")
    return dict(sample)


# ---------------------------------------------------------------- either family

Architecture = Union[Genotype, dict]
"""A DARTS-family ``Genotype`` or a NAS-Bench-201 sample ``{'cell/op_j_i': op}``."""


def is_existing_file_name(path: Path) -> bool:
    """``path.exists()``, False where the text cannot even be a file name (too long, a NUL byte)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
