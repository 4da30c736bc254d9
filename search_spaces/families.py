"""The architecture families, one record each, looked up by name like the op registry.

The DARTS family (normal and reduce cells whose nodes pick two inputs, a ``Genotype``) and NAS-Bench-201 (one
cell kind, every edge kept, an arch string) differ in a dozen small ways: cell kinds, edge keys, whether a
derivation picks input pairs, the smallest supernet, the evaluation network and its standard size, how an
architecture is written. Tests of a family's name spread over a code base drift apart (the two op-list
expansions once did); here each difference is one field of one record, code elsewhere asks the record, and a
third family is one more entry in ``FAMILIES``.

Nothing here knows how a space is searched: the records describe spaces and architectures only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from nni.nas.nn.pytorch import ModelSpace
from torch import nn

from .darts_cell import DartsCellSpace, edge_keys, reduction_layers
from .eval_networks import NB201EvalNetwork, NetworkCIFAR
from .genotypes import (PUBLISHED, Architecture, Genotype, GenotypeError, _pick_entry, _read_json, _shown,
                        genotype_from_dict, genotype_from_document, genotype_to_dict, is_existing_file_name,
                        load_genotype, nb201_to_sample, parse_genotype, sample_to_genotype, sample_to_nb201,
                        validate_genotype)
from .nb201 import NB201Space, nb201_edge_keys
from .ops import DARTS_OPS, NB201_OPS, EdgeOps, expand_ops

EdgeOpLists = dict[str, dict[str, list[str]]]
"""``{cell kind: {edge key: [op, ...]}}``."""

CellSlot = tuple[str, int, int, int]
"""``(kind, channels, size before the cell, size after it)`` of one cell of an evaluation network."""


class UnknownFamilyError(ValueError):
    """A family name that is not in the registry."""


@dataclass(frozen=True)
class Family:
    """What one architecture family is; the callables are the family's own rules, the methods shared ones."""

    name: str
    description: str
    op_args: Mapping[str, str]
    """Cell kind -> the space constructor's argument holding that kind's op lists (also the error prefix)."""
    space_class: type
    picks_inputs: bool
    """Each intermediate node picks an input pair (a decision of its own); derivation then follows P-DARTS
    (best non-``none`` op, input pairs, skip-connect limit). Without: every edge is kept, argmax per edge."""
    variable_nodes: bool
    """The number of intermediate nodes is a setting (DARTS) rather than fixed by the space (NB201)."""
    min_layers: int
    """The smallest supernet the space builds (DARTS: one normal and two reduction cells)."""
    space_layers: int
    """Supernet depth when none is given."""
    eval_layers: int
    eval_channels: int
    """The standard evaluation network: DARTS' 20 cells of C=36, NAS-Bench-201's 5 cells per stack of C=16."""
    layers_unit: str
    """What ``layers`` counts, for messages."""
    auxiliary: bool
    """The evaluation network has DARTS' auxiliary head (which parameter counts leave out)."""
    drop_path: bool
    """The evaluation protocol uses drop-path."""
    tables: bool
    """Benchmark tables (``nni_offpolicy.data.tables``) hold this family's cells."""
    default_ops: tuple[str, ...]
    default_space: str
    """The space preset a bare space of this family searches as."""
    text_field: str
    """The genotype.json key holding the one-line text of the derived cell."""
    published: Mapping[str, Architecture] = field(default_factory=dict)
    _edge_keys: Callable[[int], list[str]] = field(default=edge_keys, repr=False)
    _from_sample: Callable[[Mapping[str, Any], int], Architecture] = field(default=None, repr=False)
    _to_json: Callable[[Architecture], Any] = field(default=None, repr=False)
    _from_json: Callable[[Any], Architecture] = field(default=None, repr=False)
    _to_text: Callable[[Architecture], str] = field(default=str, repr=False)
    _normalise: Callable[[Any], Architecture] = field(default=None, repr=False)
    _ops_of: Callable[[Architecture], list[str]] = field(default=None, repr=False)
    _build_eval: Callable[..., nn.Module] = field(default=None, repr=False)
    _eval_cells: Callable[[int, int, int], Iterator[CellSlot]] = field(default=None, repr=False)
    _cell_edges: Callable[[Architecture, str], list[tuple[str, int]]] = field(default=None, repr=False)
    _uniform: Callable[[str], Architecture] = field(default=None, repr=False)
    strided_kinds: tuple[str, ...] = ()
    """Cell kinds whose edges from the cell inputs have stride 2 (DARTS' reduction cells)."""
    cost_shape: Callable[[Architecture], tuple] = field(default=lambda arch: (), repr=False)
    """What besides the chosen edges changes the evaluation network's cost (DARTS: how many states each cell
    kind concatenates, which sizes the next cell's preprocessing)."""

    def __reduce__(self) -> tuple:
        # pickled (and deep-copied) by name: the record holds functions, and there is one record per name
        return get_family, (self.name,)

    # ------------------------------------------------------------ the space

    @property
    def kinds(self) -> list[str]:
        return list(self.op_args)

    def edge_keys(self, nodes: int = 4) -> list[str]:
        """Edge keys ``"j_i"`` of one cell, in the family's order."""
        return self._edge_keys(nodes)

    def expand(self, ops: EdgeOps, nodes: int = 4, where: str = "ops") -> dict[str, list[str]]:
        """One validated op list per edge (``ops.expand_ops``: no empty list, no op twice, known names)."""
        return expand_ops(ops, self.edge_keys(nodes), where)

    def expand_kinds(self, ops: Mapping[str, EdgeOps], nodes: int = 4) -> EdgeOpLists:
        """``{kind: {edge: ops}}`` from each kind's op list(s), errors named by the space's argument."""
        return {kind: self.expand(ops[kind], nodes, arg) for kind, arg in self.op_args.items()}

    def build_space(self, edge_ops: EdgeOpLists, layers: int | None = None, channels: int = 16,
                    num_classes: int = 10, in_channels: int = 3, nodes: int = 4) -> ModelSpace:
        kwargs: dict[str, Any] = {arg: edge_ops[kind] for kind, arg in self.op_args.items()}
        if self.variable_nodes:
            kwargs["nodes"] = nodes
        return self.space_class(**kwargs, layers=layers or self.space_layers, channels=channels,
                                num_classes=num_classes, in_channels=in_channels)

    def space_settings(self, space: Any) -> tuple[EdgeOpLists, dict[str, Any]]:
        """A built space's per-edge op lists and the search settings its constructor arguments imply."""
        args = dict(getattr(space, "args", {}) or {})
        nodes = args.get("nodes", 4)
        implied: dict[str, Any] = {"channels": args.get("channels", 16)}
        if self.variable_nodes:
            implied["nodes"] = nodes
        edge_ops = {kind: self.expand(args[arg], nodes, arg) for kind, arg in self.op_args.items()}
        return edge_ops, implied

    # ------------------------------------------------------------ the genotype codec

    def from_sample(self, sample: Mapping[str, Any], nodes: int = 4) -> Architecture:
        """An NNI sample of the space -> the family's architecture (``Genotype`` or NB201 sample)."""
        return self._from_sample(sample, nodes)

    def to_json(self, arch: Architecture) -> Any:
        """What goes under ``genotype`` in our JSON files: a DARTS dict, or the NB201 arch string."""
        return self._to_json(arch)

    def from_json(self, data: Any) -> Architecture:
        return self._from_json(data)

    def to_text(self, arch: Architecture) -> str:
        """One line: the ``Genotype(...)`` string, or the NB201 arch string."""
        return self._to_text(arch)

    def arch_key(self, sample: Mapping[str, Any], nodes: int = 4) -> str:
        """The text of a sample's architecture: equal for samples that are the same cell."""
        return self.to_text(self.from_sample(sample, nodes))

    def normalise(self, arch: Any) -> Architecture:
        """Validate and normalise any accepted form (architecture, JSON form, NNI sample, text)."""
        return self._normalise(arch)

    def ops_of(self, arch: Architecture) -> list[str]:
        """The ops the architecture uses (a DARTS cell: its chosen edges only)."""
        return self._ops_of(arch)

    def cost_key(self, arch: Architecture) -> str:
        """A hashable form of a normalised architecture, equal for equal cells."""
        return json.dumps(self.to_json(arch))

    # ------------------------------------------------------------ the evaluation network

    def eval_shape(self, layers: int | None = None, channels: int | None = None) -> tuple[int, int]:
        """``(layers, channels)``, the family's standard ones where ``None``."""
        return (self.eval_layers if layers is None else layers, self.eval_channels if channels is None else channels)

    def build_eval_network(self, arch: Any, layers: int | None = None, channels: int | None = None,
                           num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                           auxiliary: bool = True) -> nn.Module:
        """The evaluation network (``forward`` returns ``(logits, aux_logits or None)``); the one builder that
        retraining, profiling and zero-cost scoring share. ``auxiliary`` only matters where the family has one."""
        layers, channels = self.eval_shape(layers, channels)
        return self._build_eval(self.normalise(arch), layers, channels, num_classes, in_channels, input_size,
                                auxiliary)

    def eval_cells(self, layers: int, channels: int, input_size: int) -> Iterator[CellSlot]:
        """Every cell of the evaluation network as ``(kind, C, H before, H after)``, in network order."""
        return self._eval_cells(layers, channels, input_size)

    def cell_edges(self, arch: Architecture, kind: str) -> list[tuple[str, int]]:
        """``(op, stride)`` of every executed edge of a ``kind`` cell; stride-2 edges see the size before it."""
        return self._cell_edges(arch, kind)

    def uniform_arch(self, op: str) -> Architecture:
        """An architecture with ``op`` on every edge it keeps (a first one to price the network's fixed part)."""
        return self._uniform(op)


# ---------------------------------------------------------------- DARTS family

def _darts_normalise(arch: Any) -> Genotype:
    if isinstance(arch, Genotype):
        return validate_genotype(arch)
    if isinstance(arch, Mapping) and "normal" in arch:
        return genotype_from_dict(arch)
    if isinstance(arch, Mapping) and "normal/input_2" in arch:
        nodes = sum(1 for key in arch if key.startswith("normal/input_"))
        return sample_to_genotype(arch, nodes)
    raise GenotypeError(f"expected a Genotype for family 'darts', got {type(arch).__name__}")


def _darts_eval(arch: Genotype, layers: int, channels: int, num_classes: int, in_channels: int, input_size: int,
                auxiliary: bool) -> nn.Module:
    return NetworkCIFAR(arch, layers=layers, channels=channels, num_classes=num_classes, auxiliary=auxiliary,
                        in_channels=in_channels, input_size=input_size)


def _darts_cells(layers: int, channels: int, size: int) -> Iterator[CellSlot]:
    """NetworkCIFAR: cells at the reduction positions double C and halve H."""
    reductions = reduction_layers(layers)
    for index in range(layers):
        if index in reductions:
            channels *= 2
            before, size = size, (size + 1) // 2
            yield "reduce", channels, before, size
        else:
            yield "normal", channels, size, size


def _darts_edges(arch: Genotype, kind: str) -> list[tuple[str, int]]:
    return [(op, 2 if kind == "reduce" and i < 2 else 1) for op, i in getattr(arch, kind)]


def _darts_uniform(op: str) -> Genotype:
    pairs = [(op, i) for j in range(2, 6) for i in (0, 1)]
    return Genotype(normal=pairs, normal_concat=[2, 3, 4, 5], reduce=pairs, reduce_concat=[2, 3, 4, 5])


DARTS = Family(
    name="darts", description="DARTS/P-DARTS cells: normal and reduce, nodes picking input pairs, a Genotype",
    op_args={"normal": "normal_ops", "reduce": "reduce_ops"}, space_class=DartsCellSpace, picks_inputs=True,
    variable_nodes=True, min_layers=3, space_layers=8, eval_layers=20, eval_channels=36, layers_unit="cells",
    auxiliary=True, drop_path=True, tables=False, default_ops=tuple(DARTS_OPS), default_space="darts",
    text_field="genotype_str", published=PUBLISHED,
    _edge_keys=edge_keys, _from_sample=sample_to_genotype, _to_json=genotype_to_dict, _from_json=genotype_from_dict,
    _to_text=str, _normalise=_darts_normalise,
    _ops_of=lambda g: [op for op, _ in g.normal] + [op for op, _ in g.reduce],
    _build_eval=_darts_eval, _eval_cells=_darts_cells, _cell_edges=_darts_edges, _uniform=_darts_uniform,
    strided_kinds=("reduce",), cost_shape=lambda g: (len(g.normal_concat), len(g.reduce_concat)),
)


# ---------------------------------------------------------------- NAS-Bench-201

def _nb201_normalise(arch: Any) -> dict[str, str]:
    if isinstance(arch, str):
        return nb201_to_sample(arch)
    if isinstance(arch, Mapping):
        keys = [f"cell/op_{key}" for key in nb201_edge_keys()]
        missing = [k for k in keys if k not in arch]
        if missing:
            raise GenotypeError(f"NAS-Bench-201 sample is missing {missing}")
        return nb201_to_sample(sample_to_nb201(arch))  # validates the op names
    raise GenotypeError(f"expected a sample dict or arch string for family 'nb201', got {type(arch).__name__}")


def _nb201_eval(arch: dict, layers: int, channels: int, num_classes: int, in_channels: int, input_size: int,
                auxiliary: bool) -> nn.Module:
    return NB201EvalNetwork(arch, channels=channels, cells_per_stack=layers, num_classes=num_classes,
                            in_channels=in_channels)


def _nb201_cells(layers: int, channels: int, size: int) -> Iterator[CellSlot]:
    """Each stack after the first starts with a residual block (stride-2 3x3 conv) that doubles C and halves H;
    its cells keep both."""
    for stack in range(3):
        if stack > 0:
            size, channels = (size + 1) // 2, channels * 2
        for _ in range(layers):
            yield "cell", channels, size, size


NB201 = Family(
    name="nb201", description="NAS-Bench-201: one cell kind, 6 edges all kept, an arch string |op~0|+|op~0|op~1|+...",
    op_args={"cell": "ops"}, space_class=NB201Space, picks_inputs=False, variable_nodes=False, min_layers=1,
    space_layers=5, eval_layers=5, eval_channels=16, layers_unit="cells per stack", auxiliary=False,
    drop_path=False, tables=True, default_ops=tuple(NB201_OPS), default_space="nb201", text_field="arch",
    _edge_keys=lambda nodes: nb201_edge_keys(), _from_sample=lambda sample, nodes: dict(sample),
    _to_json=sample_to_nb201, _from_json=lambda text: nb201_to_sample(str(text)), _to_text=sample_to_nb201,
    _normalise=_nb201_normalise, _ops_of=lambda sample: [op for op in sample.values() if isinstance(op, str)],
    _build_eval=_nb201_eval, _eval_cells=_nb201_cells,
    _cell_edges=lambda sample, kind: [(sample[f"cell/op_{key}"], 1) for key in nb201_edge_keys()],
    _uniform=lambda op: {f"cell/op_{key}": op for key in nb201_edge_keys()},
)


FAMILIES: dict[str, Family] = {family.name: family for family in (DARTS, NB201)}


def get_family(name: str) -> Family:
    """The family named ``name``; one error listing the allowed names otherwise."""
    if name not in FAMILIES:
        raise UnknownFamilyError(f"unknown family {name!r}; allowed: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def as_family(family: Family | str) -> Family:
    """The record itself, or the one its name names. The search resolves its family once (``SearchSettings.family``)
    and hands the record down; the public helpers it shares with users' scripts (``sample_to_arch``, the cost
    model, the zero-cost scorer) also take the name a script or a file holds."""
    return family if isinstance(family, Family) else get_family(family)


def load_architecture(spec: str, index: int | None = None) -> tuple[str, Architecture]:
    """``("darts", Genotype)`` or ``("nb201", sample)`` from a built-in name, a ``Genotype(...)`` string, a
    NAS-Bench-201 arch string (``|op~0|+...``), or a JSON file (a genotype, a search's genotype.json, or an
    exported top-K list; ``index`` picks an entry). In files, a ``genotype`` that is an arch string is NB201."""
    if not spec.strip():  # Path("") is the working directory: "Is a directory: '.'"
        raise GenotypeError("no genotype given: name a built-in genotype, a JSON file, a Genotype(...) string or an "
                            "arch string |op~0|+...")
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
        family = entry.get("family") if isinstance(entry, dict) else None
        if family is not None:  # a search's genotype.json or an exported entry says what it holds: honour it
            if family not in FAMILIES:
                raise GenotypeError(f"{spec}: family {_shown(family)} is not one of {', '.join(FAMILIES)}")
            if isinstance(arch, str) and arch.lstrip().startswith("{"):  # json.dumps(...), as trials report it
                from nni_offpolicy.files.reading import parse_json

                arch = parse_json(arch, spec)
            elif isinstance(arch, str) and arch.lstrip().startswith("Genotype("):
                arch = parse_genotype(arch)
            try:
                return family, FAMILIES[family].normalise(arch)
            except GenotypeError as exc:
                raise GenotypeError(f"{spec}: its family is {family}, but its genotype is not one ({exc})") from None
        if isinstance(arch, str) and arch.lstrip().startswith("|"):
            return "nb201", nb201_to_sample(arch)
        return "darts", genotype_from_document(entry, None, spec)
    return "darts", load_genotype(spec, index)


def family_of_space(space: Any) -> Family | None:
    """The family whose space class built ``space``, or None."""
    return next((f for f in FAMILIES.values() if isinstance(space, f.space_class)), None)


def architecture_to_json(family: Family | str, arch: Architecture) -> Any:
    """What goes under ``genotype`` in our JSON files: a DARTS dict, or the NB201 arch string."""
    return as_family(family).to_json(arch)
