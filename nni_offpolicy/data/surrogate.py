"""A NAS-Bench-301 surrogate judge: encode DARTS cells and score them with an NB301-style ONNX model.

Why: NB201 cells are judged by a table lookup (``tables.py``), but the DARTS space has ~10^18 cells and no table;
a searched DARTS cell was only comparable after a GPU retrain. A NAS-Bench-301 surrogate (Siems et al. 2020; the
ONNX export of YAHPO Gym's ``nb301`` scenario) predicts the CIFAR-10 validation accuracy a normal+reduction
cell pair reaches in NB301's protocol, so a CPU grid can say whether its cells are good.

It measures, never steers: nothing in the product opens a surrogate unless a user names one (``lookup
--surrogate``, ``ablate --surrogate``); no search reads it.

The model's signature (checked when it is opened): inputs ``x_cat`` int32 ``[batch, 34]`` (one integer level per
categorical input) and ``x_cont`` float32 ``[batch, 1]`` (the training epoch, raw); first output float
``[batch, >= 1]`` whose column 0 is the validation accuracy in [0, 1]. The 34 inputs, in this order::

    edge_normal_0 .. edge_normal_13, edge_reduce_0 .. edge_reduce_13     (the op on each edge, or #na#)
    inputs_node_normal_3, _4, _5, inputs_node_reduce_3, _4, _5           ("i_j", i < j: the node's two inputs)

each prefixed ``NetworkSelectorDatasetInfo_COLON_darts_COLON_``. Nodes are the genotype's (0, 1: the cell's
inputs; 2..5 intermediate); edges are numbered node by node in input order (node 2: 0-1, node 3: 2-4, node 4:
5-8, node 5: 9-13), so ``('sep_conv_3x3', 1)`` of node 4 sets ``edge_normal_6``. The encoding file (JSON:
``{input name: {level: integer}}``, ``#na#`` for an unused input) maps levels to the integers the model was
trained with; the column *order* is the one above, not the file's key order.

Where the encoding is found (``open_surrogate``): ``MODEL.onnx:ENCODING.json`` names it; otherwise the first that
exists beside the model of ``<stem>.json`` (``model_v2.json``), ``encoding<stem minus "model">.json``
(``model_v2.onnx`` -> ``encoding_v2.json``, the published layout) and ``encoding.json``.

onnxruntime is an optional dependency (``pip install -e '.[bench]'``), imported only when a model is opened.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from search_spaces.genotypes import (PUBLISHED, Genotype, GenotypeError, genotype_from_document, parse_genotype,
                                     validate_genotype)

from nni_offpolicy.errors import UserError

logger = logging.getLogger(__name__)

PREFIX = "NetworkSelectorDatasetInfo_COLON_darts_COLON_"
KINDS = ("normal", "reduce")
NODES = 4  # NB301's cells: 4 intermediate nodes, all concatenated
EDGES = 14
NA = "#na#"
# the NB301 space's ops (DARTS' without none), in its ConfigSpace's order: what a random reference cell draws from
NB301_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
             "dil_conv_5x5")
INPUT_NAMES = ([f"edge_{kind}_{e}" for kind in KINDS for e in range(EDGES)]
               + [f"inputs_node_{kind}_{node}" for kind in KINDS for node in range(3, NODES + 2)])
"""The model's 34 categorical inputs in column order (without ``PREFIX``)."""
FINAL_EPOCH = 98  # NB301's last epoch: the final accuracy
REFERENCE_CELLS = 1000  # default size of the random reference a value's percentile is taken in
REFERENCE_SEED = 0
MAX_ENCODING_BYTES = 1 << 20  # the published encoding is 7 kB; anything this big is not one
PARAMETER_FREE_OPS = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3")
BENCH_HINT = "pip install -e '.[bench]'"


def first_edge(node: int) -> int:
    """The number of node ``node``'s first incoming edge (node 2 -> 0, 3 -> 2, 4 -> 5, 5 -> 9)."""
    return node * (node - 1) // 2 - 1


# ------------------------------------------------------------------------------------------------ genotypes
def as_genotype(arch: Any, source: str = "cell") -> Genotype:
    """A ``Genotype`` from a Genotype, a genotype dict, a ``Genotype(...)`` string or a built-in name; one line for
    anything else (a NAS-Bench-201 cell above all: the surrogate judges DARTS cells only)."""
    if isinstance(arch, str) and arch.lstrip().startswith("|") or isinstance(arch, dict) and any(
            str(k).startswith("cell/") for k in arch):
        raise UserError(f"{source} is a NAS-Bench-201 cell; the NB301 surrogate judges DARTS cells "
                        f"(look NB201 cells up with --table)")
    try:
        if isinstance(arch, Genotype):
            return validate_genotype(arch)
        if isinstance(arch, str) and arch in PUBLISHED:
            return PUBLISHED[arch]
        if isinstance(arch, str) and arch.lstrip().startswith("Genotype("):
            return parse_genotype(arch)
        if isinstance(arch, dict):
            return genotype_from_document(arch, None, source)
    except GenotypeError as exc:
        raise UserError(f"{source}: {exc}") from None
    raise UserError(f"{source}: expected a DARTS genotype, got {type(arch).__name__} {str(arch)[:60]!r}")


def normal_param_free(genotype: Genotype) -> int:
    """How many of the normal cell's 8 kept edges carry a parameter-free op (none, skip, pools). Why here: the
    surrogate, like NB301 itself, rates parameter-heavy cells highly, so its value is read beside this count."""
    return sum(op in PARAMETER_FREE_OPS for op, _ in as_genotype(genotype).normal)


def eval_params_m(genotypes: Sequence[Genotype]) -> list[float]:
    """Parameters (M, auxiliary head excluded) of each cell's DARTS evaluation network, 20 cells of 36 channels on
    CIFAR-10: the size papers (and NB301's bias) are read at. Summed per-edge costs (``EvalCostModel``): about
    3 s for the first cell (torch and one full profile), milliseconds for the next."""
    model = _cost_model()
    return [model.cost(as_genotype(g))[0] / 1e6 for g in genotypes]


@functools.lru_cache(maxsize=1)
def _cost_model() -> Any:
    """One cost model per process: its per-edge table is what makes the second cell cheap (an ablate grid asks
    once per run)."""
    from nni_offpolicy.profiling import EvalCostModel

    return EvalCostModel("darts")


def random_genotypes(n: int, seed: int) -> list[Genotype]:
    """``n`` uniformly random NB301 cells: each intermediate node picks 2 distinct inputs uniformly and an op per
    chosen edge uniformly from ``NB301_OPS``; normal and reduce independent; from ``numpy.random.default_rng
    (seed)``, so a reference is the same everywhere."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"the random reference needs at least 1 cell, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise UserError(f"the random reference's seed must be in [0, 2^32-1], got {seed!r}")
    rng = np.random.default_rng(int(seed))
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for kind in KINDS:
        columns = []
        for node in range(2, NODES + 2):
            inputs = np.argsort(rng.random((n, node)), axis=1)[:, :2]  # a uniform ordered pair of distinct inputs
            ops = rng.integers(0, len(NB301_OPS), size=(n, 2))
            columns.append((inputs, ops))
        pairs[kind] = columns
    concat = list(range(2, NODES + 2))
    cells = []
    for c in range(n):
        fields = {kind: [(NB301_OPS[ops[c, k]], int(inputs[c, k])) for inputs, ops in pairs[kind] for k in (0, 1)]
                  for kind in KINDS}
        cells.append(Genotype(normal=fields["normal"], normal_concat=concat, reduce=fields["reduce"],
                              reduce_concat=concat))
    return cells


# ------------------------------------------------------------------------------------------------ encoding
def read_encoding(path: Path) -> dict[str, dict[str, int]]:
    """The encoding file, checked: every one of the 34 inputs present, each a ``{level: integer}`` with ``#na#``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"surrogate encoding not found: {path}") from None
    except OSError as exc:
        raise UserError(f"surrogate encoding {path} is unreadable ({exc})") from None
    if path.is_dir():
        raise UserError(f"surrogate encoding {path} is a directory: give the encoding's .json file")
    if size > MAX_ENCODING_BYTES:
        raise UserError(f"surrogate encoding {path} is {size} bytes: an encoding is a few kB of JSON "
                        f"(limit {MAX_ENCODING_BYTES})")
    from nni_offpolicy.files.reading import read_json

    data = read_json(path, "surrogate encoding", MAX_ENCODING_BYTES)  # not a FIFO or a device; bounded nesting
    if not isinstance(data, dict):
        raise UserError(f"surrogate encoding {path}: expected {{input name: {{level: integer}}}}, got "
                        f"{type(data).__name__}")
    out = {}
    for name in INPUT_NAMES:
        levels = data.get(PREFIX + name)
        if levels is None:
            raise UserError(f"surrogate encoding {path} lacks input {PREFIX + name!r} (an NB301 encoding has 34: "
                            f"edge_normal_0..13, edge_reduce_0..13, inputs_node_normal/reduce_3..5)")
        if not isinstance(levels, dict) or NA not in levels or not all(
                isinstance(v, int) and not isinstance(v, bool) and -2 ** 31 <= v < 2 ** 31 for v in levels.values()):
            raise UserError(f"surrogate encoding {path}: input {name!r} must map each level ({NA} included) to an "
                            f"int32, got {str(levels)[:80]}")
        out[name] = levels
    return out


def encode(genotype: Genotype, encoding: dict[str, dict[str, int]], source: str = "cell") -> np.ndarray:
    """The int32 row of 34 levels the model reads for one cell pair; one line naming the node and edge for a cell
    it cannot encode (``none`` on a kept edge, both ops of a node on one input, an op the encoding lacks)."""
    genotype = as_genotype(genotype, source)
    row = np.zeros(len(INPUT_NAMES), dtype=np.int32)
    column = {name: k for k, name in enumerate(INPUT_NAMES)}
    values = {name: NA for name in INPUT_NAMES}
    for kind in KINDS:
        pairs = getattr(genotype, kind)
        if len(pairs) != 2 * NODES:
            raise UserError(f"{source}: the {kind} cell has {len(pairs) // 2} intermediate nodes; NB301 cells "
                            f"have {NODES}")
        concat = [int(c) for c in getattr(genotype, f"{kind}_concat")]
        if sorted(concat) != list(range(2, NODES + 2)):
            raise UserError(f"{source}: {kind}_concat {concat}; NB301 cells concatenate nodes 2-{NODES + 1}")
        for n in range(NODES):
            node = n + 2
            (op_a, a), (op_b, b) = pairs[2 * n], pairs[2 * n + 1]
            if a == b:
                raise UserError(f"{source}: {kind} node {node} takes both ops from input {a} (edge_{kind}_"
                                f"{first_edge(node) + a}); NB301 cells take two different inputs")
            for op, i in ((op_a, a), (op_b, b)):
                edge = f"edge_{kind}_{first_edge(node) + i}"
                if op == "none":
                    raise UserError(f"{source}: {kind} node {node} keeps 'none' on its edge from node {i} ({edge}); "
                                    f"NB301 cells have no none")
                if op not in encoding[edge] or op == NA:
                    raise UserError(f"{source}: {kind} node {node}'s op {op!r} on its edge from node {i} ({edge}) "
                                    f"is not in the surrogate's encoding (its ops: "
                                    f"{', '.join(k for k in encoding[edge] if k != NA)})")
                values[edge] = op
            if node > 2:
                name, level = f"inputs_node_{kind}_{node}", f"{min(a, b)}_{max(a, b)}"
                if level not in encoding[name]:
                    raise UserError(f"{source}: {kind} node {node}'s inputs {level!r} are not in the surrogate's "
                                    f"encoding of {name}")
                values[name] = level
    for name, level in values.items():
        row[column[name]] = encoding[name][level]
    return row


# ------------------------------------------------------------------------------------------------ the model
def split_spec(spec: str) -> tuple[Path, Path | None]:
    """``MODEL.onnx`` or ``MODEL.onnx:ENCODING.json`` (a model file whose own name holds a colon is taken whole)."""
    path = Path(spec).expanduser()
    if ":" in spec and not path.exists():
        model, _, encoding = spec.rpartition(":")
        if model and encoding:
            return Path(model).expanduser(), Path(encoding).expanduser()
    return path, None


def encoding_candidates(model: Path) -> list[Path]:
    """Where an encoding beside ``model`` is looked for, in order (module docstring)."""
    stem, folder = model.stem, model.parent
    names = [f"{stem}.json"]
    if stem.startswith("model"):
        names.append(f"encoding{stem[len('model'):]}.json")
    names.append("encoding.json")
    return [folder / n for n in dict.fromkeys(names)]


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"the NB301 surrogate needs onnxruntime, which is not installed: {BENCH_HINT}") from None
    return onnxruntime


def _dims_ok(shape: Any, width: int | None) -> bool:
    """A ``[batch, width]`` shape (batch symbolic or fixed; ``width`` None: any symbolic or >= 1)."""
    if not isinstance(shape, (list, tuple)) or len(shape) != 2:
        return False
    last = shape[1]
    if width is None:
        return not isinstance(last, int) or last >= 1
    return last == width


class Surrogate:
    """An opened, checked NB301-style model and its encoding. ``predict`` scores cells (accuracy in %, at
    ``epoch``); ``random_reference`` scores uniformly random cells once per ``(n, seed)`` so a value can be placed
    (``percentile``, ``reference_summary``) against what the space gives by chance, by the same model."""

    def __init__(self, model: Path, encoding: Path, session: Any, levels: dict[str, dict[str, int]],
                 epoch: float = FINAL_EPOCH):
        self.model = model
        self.encoding = encoding
        self.epoch = float(epoch)
        self._session = session
        self._levels = levels
        batch = next(i.shape[0] for i in session.get_inputs() if i.name == "x_cat")
        self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None  # None: any batch size
        self._reference: dict[tuple[int, int, float], np.ndarray] = {}

    def __repr__(self) -> str:
        return f"Surrogate({str(self.model)!r}, encoding={str(self.encoding)!r}, epoch={self.epoch:g})"

    def encode(self, genotypes: Iterable[Any], sources: Sequence[str] | None = None) -> np.ndarray:
        """``[n, 34]`` int32 levels; ``sources`` name the cells in error messages."""
        genotypes = list(genotypes)
        sources = list(sources) if sources is not None else [f"cell {k + 1}" for k in range(len(genotypes))]
        rows = [encode(g, self._levels, s) for g, s in zip(genotypes, sources)]
        return np.stack(rows) if rows else np.zeros((0, len(INPUT_NAMES)), dtype=np.int32)

    def predict(self, genotypes: Iterable[Any], sources: Sequence[str] | None = None) -> list[float]:
        """Predicted validation accuracy (%) of each cell at ``self.epoch``: column 0 of the output x 100."""
        return [float(v) for v in self._run(self.encode(genotypes, sources))]

    def _run(self, x_cat: np.ndarray) -> np.ndarray:
        out = []
        size = self._fixed_batch or 4096
        for start in range(0, len(x_cat), size):
            chunk = x_cat[start:start + size]
            if self._fixed_batch and len(chunk) < size:  # a model with a fixed batch: pad the last chunk
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), 0)])
            x_cont = np.full((len(chunk), 1), self.epoch, dtype=np.float32)
            try:
                y = self._session.run(None, {"x_cat": chunk, "x_cont": x_cont})[0]
            except Exception as exc:  # onnxruntime's own errors are not one type
                raise UserError(f"surrogate {self.model} failed to run: {_one_line(exc)}") from None
            y = np.asarray(y)
            if y.ndim != 2 or y.shape[0] != len(chunk) or y.shape[1] < 1:
                raise UserError(f"surrogate {self.model} gave an output of shape {list(y.shape)} for "
                                f"{len(chunk)} cells; expected [batch, >= 1]")
            out.append(y[: min(len(chunk), len(x_cat) - start), 0].astype(np.float64) * 100.0)
        values = np.concatenate(out) if out else np.zeros(0)
        if not np.all(np.isfinite(values)):
            raise UserError(f"surrogate {self.model} predicted a non-finite accuracy")
        return values

    def random_reference(self, n: int = REFERENCE_CELLS, seed: int = REFERENCE_SEED) -> np.ndarray:
        """The predicted accuracies (%) of ``random_genotypes(n, seed)``, in draw order; computed once per
        ``(n, seed)`` (and epoch) per Surrogate, read-only."""
        key = (int(n), int(seed), self.epoch)
        if key not in self._reference:
            values = self._run(self.encode(random_genotypes(n, seed)))
            values.setflags(write=False)
            self._reference[key] = values
        return self._reference[key]

    def percentile(self, value: float, n: int = REFERENCE_CELLS, seed: int = REFERENCE_SEED) -> float:
        """Share (%) of the random reference's cells ``value`` is at least as good as (as ``tables.py`` ranks)."""
        if not math.isfinite(value):
            return math.nan
        reference = self.random_reference(n, seed)
        return 100.0 * float(np.count_nonzero(reference <= value)) / len(reference)

    def reference_summary(self, n: int = REFERENCE_CELLS, seed: int = REFERENCE_SEED) -> dict[str, Any]:
        """What chance gives in this space, by this model: mean, median, top 10 % / top 1 % thresholds, max."""
        reference = self.random_reference(n, seed)
        return {"cells": int(n), "seed": int(seed), "mean": float(reference.mean()),
                "median": float(np.median(reference)), "top10": float(np.quantile(reference, 0.9)),
                "top1": float(np.quantile(reference, 0.99)), "max": float(reference.max())}

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.model), "encoding": str(self.encoding), "epoch": self.epoch}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_signature(session: Any, model: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = session.get_outputs()
    expected = "inputs x_cat int32 [batch, 34] and x_cont float32 [batch, 1], output [batch, >= 1]"

    def got() -> str:
        ins = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in session.get_inputs())
        outs = ", ".join(f"{o.name} {o.type} {list(o.shape) if o.shape is not None else '?'}" for o in outputs)
        return f"inputs {ins or 'none'}; outputs {outs or 'none'}"

    cat, cont = inputs.get("x_cat"), inputs.get("x_cont")
    ok = (len(inputs) == 2 and cat is not None and cont is not None and cat.type == "tensor(int32)"
          and cont.type == "tensor(float)" and _dims_ok(cat.shape, len(INPUT_NAMES)) and _dims_ok(cont.shape, 1)
          and cat.shape[0] == cont.shape[0] and bool(outputs) and outputs[0].type == "tensor(float)"
          and (outputs[0].shape is None or not outputs[0].shape or _dims_ok(outputs[0].shape, None)))
    if not ok:
        raise UserError(f"surrogate {model} is not an NB301 model: expected {expected}; got {got()}")


def open_surrogate(spec: str | Path, epoch: float = FINAL_EPOCH) -> Surrogate:
    """``MODEL.onnx`` (encoding found beside it) or ``MODEL.onnx:ENCODING.json``: the model opened with
    onnxruntime (CPU, one thread) and checked against the NB301 signature, the encoding read and checked.
    ``UserError`` with one line for anything wrong, before any cell is scored."""
    model, encoding = split_spec(str(spec))
    if not 1 <= float(epoch) <= 1000:  # NaN fails the comparison too
        raise UserError(f"surrogate epoch must be in [1, 1000], got {epoch}")
    try:
        is_dir = model.is_dir()
        exists = model.exists()
    except OSError as exc:
        raise UserError(f"surrogate model {model} is unreadable ({exc})") from None
    if not exists:
        raise UserError(f"surrogate model not found: {model}")
    if is_dir:
        raise UserError(f"surrogate model {model} is a directory: give the model's .onnx file")
    if encoding is None:
        candidates = encoding_candidates(model)
        encoding = next((p for p in candidates if p.is_file()), None)
        if encoding is None:
            raise UserError(f"no surrogate encoding beside {model} (looked for "
                            f"{', '.join(p.name for p in candidates)}); name it as {model}:ENCODING.json")
    levels = read_encoding(encoding)
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a few thousand rows: threads only contend on a shared machine
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph...: not one type across versions
        raise UserError(f"surrogate model {model} is not an ONNX model onnxruntime can load "
                        f"({_one_line(exc)})") from None
    _check_signature(session, model)
    return Surrogate(model, encoding, session, levels, epoch)
