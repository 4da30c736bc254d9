"""Pictures of cells: a DARTS-family genotype's normal and reduction cells, or a NAS-Bench-201 cell, as DAGs.

Drawn with matplotlib alone (no graphviz binary needed) on an Agg canvas, without touching pyplot's global
backend. Each edge is an arrow coloured by its op (the same colour for an op in every picture) and labelled with
the op name; a DARTS cell's concatenation into its output is drawn in grey. Edges are routed by a small greedy
search over curvatures and label positions that keeps labels off each other, off nodes, and edges off nodes
they do not touch.

The output format comes from the suffix (.png, .pdf, .svg). A picture is written to a temporary file in the
same folder and moved into place, so a failure never leaves a half-written file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch
from matplotlib.path import Path as MplPath

from search_spaces.families import get_family
from search_spaces.genotypes import Genotype, sample_to_nb201
from search_spaces.nb201 import nb201_edge_keys
from search_spaces.ops import OPS

from nni_offpolicy.files.atomic import atomic_write
from nni_offpolicy.errors import UserError

logger = logging.getLogger(__name__)

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

OP_COLORS: dict[str, str] = {
    "none": "#b0b0b0",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "skip_connect": "#2ca02c",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "dil_conv_3x3": "#9467bd",
    "dil_conv_5x5": "#e377c2",
    "conv_1x1": "#8c564b",
    "conv_3x3": "#bcbd22",
    "conv_3x1_1x3": "#393b79",
    "max_pool_5x5": "#3182bd",
    "max_pool_7x7": "#6baed6",
    "nor_conv_1x1": "#8c564b",
    "nor_conv_3x3": "#d62728",
}
"""One colour per op, the same in every picture; ops registered later get colours from ``_EXTRA_COLORS``."""
_EXTRA_COLORS = ["#637939", "#843c39", "#7b4173", "#e7ba52", "#5254a3", "#ad494a", "#a55194", "#8ca252"]
CONCAT_COLOR = "#8a8a8a"

UNIT_IN = 0.62      # inches per data unit (the axes have equal aspect, so sizes are known before drawing)
NODE_R = 0.34       # node radius, data units
FONT_SIZE = 8.5     # edge labels
DPI = 150


def op_color(op: str) -> str:
    if op in OP_COLORS:
        return OP_COLORS[op]
    extra = sorted(name for name in OPS if name not in OP_COLORS)
    index = extra.index(op) if op in extra else len(extra)
    return _EXTRA_COLORS[index % len(_EXTRA_COLORS)]


# ---------------------------------------------------------------- public API

def genotype_figure(genotype: Genotype | Mapping[str, Any], title: str | None = None) -> Figure:
    """The normal and reduction cells of a DARTS-family genotype, side by side, on an Agg canvas."""
    genotype = get_family("darts").normalise(genotype)
    return _figure([_darts_panel(genotype, "normal"), _darts_panel(genotype, "reduce")], title)


def nb201_figure(sample_or_arch: Mapping[str, str] | str, title: str | None = None) -> Figure:
    """A NAS-Bench-201 cell (4 nodes, 6 edges; 'none' edges dashed and light) with its arch string below."""
    sample = get_family("nb201").normalise(sample_or_arch)
    return _figure([_nb201_panel(sample)], "NAS-Bench-201 cell" if title is None else title,
                   caption=sample_to_nb201(sample))


def plot_genotype(genotype: Genotype | Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw a DARTS-family genotype's normal and reduction cells side by side; returns the path written."""
    path, fmt = _check_output(path)
    return _save(genotype_figure(genotype, title), path, fmt)


def plot_nb201(sample_or_arch: Mapping[str, str] | str, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw a NAS-Bench-201 cell (4 nodes, 6 edges; 'none' edges dashed and light); returns the path written."""
    path, fmt = _check_output(path)
    return _save(nb201_figure(sample_or_arch, title), path, fmt)


def plot_architecture(family: str, arch: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """``plot_genotype`` or ``plot_nb201`` by family: cells whose nodes pick input pairs are drawn as DARTS cells
    (a panel per cell kind), cells that keep every edge as the NAS-Bench-201 cell. ``arch`` may be any form the
    family accepts (architecture, its genotype.json form, an NNI sample, an arch string)."""
    draw = plot_genotype if get_family(family).picks_inputs else plot_nb201
    return draw(arch, path, title)


# ---------------------------------------------------------------- graph description

@dataclass
class _Node:
    name: str
    xy: tuple[float, float]
    text: str
    fill: str


@dataclass
class _Edge:
    src: str
    dst: str
    label: str | None          # op name, or None for a concat edge
    color: str
    dashed: bool = False
    width: float = 1.6
    rad: float = 0.0           # curvature, as matplotlib's arc3
    t: float = 0.5             # where along the curve the label sits
    box: tuple[float, float] = (0.0, 0.0)  # label width, height in data units


@dataclass
class _Panel:
    title: str
    nodes: dict[str, _Node]
    edges: list[_Edge]


_INPUT_FILL, _NODE_FILL, _OUTPUT_FILL = "#dbe9f6", "#fff2cc", "#d9ead3"


def _darts_panel(genotype: Genotype, kind: str) -> _Panel:
    pairs = genotype.normal if kind == "normal" else genotype.reduce
    concat = genotype.normal_concat if kind == "normal" else genotype.reduce_concat
    n = len(pairs) // 2
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(n)]
    nodes = {
        names[0]: _Node(names[0], (0.0, 1.3), r"$c_{k-2}$", _INPUT_FILL),
        names[1]: _Node(names[1], (0.0, -1.3), r"$c_{k-1}$", _INPUT_FILL),
    }
    # Intermediate nodes left to right, alternately above and below the middle line, so that edges between
    # neighbours slope and their labels have room.
    step = 2.35
    for i in range(n):
        y = 0.9 if i % 2 == 0 else -0.9
        nodes[str(i)] = _Node(str(i), (2.6 + step * i, y), str(i), _NODE_FILL)
    nodes["c_{k}"] = _Node("c_{k}", (2.6 + step * (n - 1) + 2.5, 0.0), r"$c_{k}$", _OUTPUT_FILL)
    edges = []
    for k, (op, src) in enumerate(pairs):
        edges.append(_Edge(names[src], str(k // 2), op, op_color(op), dashed=op == "none",
                           width=1.0 if op == "none" else 1.6))
    for c in concat:
        edges.append(_Edge(names[c], "c_{k}", None, CONCAT_COLOR, width=1.1))
    return _Panel("normal cell" if kind == "normal" else "reduction cell", nodes, edges)


def _nb201_panel(sample: Mapping[str, str]) -> _Panel:
    positions = {0: (0.0, 0.0), 1: (2.9, 1.5), 2: (2.9, -1.5), 3: (5.8, 0.0)}
    fills = {0: _INPUT_FILL, 1: _NODE_FILL, 2: _NODE_FILL, 3: _OUTPUT_FILL}
    texts = {0: "0\nin", 1: "1", 2: "2", 3: "3\nout"}
    nodes = {str(k): _Node(str(k), xy, texts[k], fills[k]) for k, xy in positions.items()}
    edges = []
    for key in nb201_edge_keys():
        j, i = key.split("_")
        op = sample[f"cell/op_{key}"]
        edges.append(_Edge(i, j, op, op_color(op), dashed=op == "none", width=1.0 if op == "none" else 1.6))
    return _Panel("", nodes, edges)


# ---------------------------------------------------------------- routing

_RADS = np.array([0.0, 0.1, -0.1, 0.2, -0.2, 0.3, -0.3, 0.42, -0.42, 0.55, -0.55])
_TS = np.array([0.5, 0.42, 0.58, 0.34, 0.66])
_SAMPLES = 32
_FAR = 1e6


def _curve(p0: np.ndarray, p2: np.ndarray, rad: float | np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Quadratic Bezier with matplotlib's arc3 control point ``mid + rad * (dy, -dx)``; rads broadcast in front:
    a scalar rad gives ``(len(ts), 2)``, an array of rads ``(len(rads), len(ts), 2)``."""
    d = p2 - p0
    rad = np.asarray(rad, dtype=float)
    c = (p0 + p2) / 2 + rad[..., None] * np.array([d[1], -d[0]])
    ts = ts[:, None]
    return (1 - ts) ** 2 * p0 + 2 * (1 - ts) * ts * c[..., None, :] + ts ** 2 * p2


def _box_of(edge: _Edge, center: np.ndarray) -> np.ndarray:
    w, h = edge.box
    return np.concatenate([center - (w / 2, h / 2), center + (w / 2, h / 2)], axis=-1)


def _inside(points: np.ndarray, boxes: np.ndarray, pad: float = 0.03) -> np.ndarray:
    """How many of ``points`` (..., S, 2) lie in each box (..., 4); leading shapes broadcast."""
    x, y = points[..., 0], points[..., 1]
    b = boxes[..., None, :]
    return ((x > b[..., 0] - pad) & (x < b[..., 2] + pad) & (y > b[..., 1] - pad) & (y < b[..., 3] + pad)).sum(-1)


class _Candidates:
    """Every (curvature, label position) an edge may take, with what does not depend on other edges' choices."""

    def __init__(self, panel: _Panel, edge: _Edge):
        self.edge = edge
        p0, p2 = np.array(panel.nodes[edge.src].xy), np.array(panel.nodes[edge.dst].xy)
        self.ts = _TS if edge.label else _TS[:1]
        points = _curve(p0, p2, _RADS, np.linspace(0, 1, _SAMPLES))                      # (R, S, 2)
        inside_ends = ((np.linalg.norm(points - p0, axis=-1) < NODE_R + 0.02)
                       | (np.linalg.norm(points - p2, axis=-1) < NODE_R + 0.02))
        self.points = np.where(inside_ends[..., None], _FAR, points)  # parked far away: near nothing
        self.valid = ~inside_ends                                                           # (R, S)
        self.boxes = _box_of(edge, _curve(p0, p2, _RADS, self.ts)) if edge.label else None   # (R, T, 4)
        cost = 2.0 * np.abs(_RADS)[:, None] + 3.0 * np.abs(self.ts - 0.5)[None, :]
        for node in panel.nodes.values():
            center = np.array(node.xy)
            if node.name not in (edge.src, edge.dst):  # an edge through a node it does not touch
                hit = np.linalg.norm(self.points - center, axis=-1).min(-1) < NODE_R + 0.12
                cost += 400.0 * hit[:, None]
            if self.boxes is not None:  # a label over a node
                nearest = np.clip(center, self.boxes[..., :2], self.boxes[..., 2:])
                cost += 400.0 * (np.linalg.norm(nearest - center, axis=-1) < NODE_R + 0.05)
        self.static = cost                                                                  # (R, T)
        self.near = {name: np.linalg.norm(self.points - np.array(panel.nodes[name].xy), axis=-1) < NODE_R + 0.45
                     for name in (edge.src, edge.dst)}                                      # (R, S) each
        self.choice = (0, 0)

    @property
    def chosen_points(self) -> np.ndarray:
        return self.points[self.choice[0]]

    @property
    def chosen_box(self) -> np.ndarray | None:
        return None if self.boxes is None else self.boxes[self.choice]

    def cost_against(self, other: "_Candidates") -> np.ndarray:
        """(R, T) penalty of each candidate given ``other``'s current choice."""
        cost = np.zeros_like(self.static)
        other_points, other_box = other.chosen_points, other.chosen_box
        if self.boxes is not None:
            if other_box is not None:  # label on label
                dx = np.minimum(self.boxes[..., 2], other_box[2]) - np.maximum(self.boxes[..., 0], other_box[0])
                dy = np.minimum(self.boxes[..., 3], other_box[3]) - np.maximum(self.boxes[..., 1], other_box[1])
                area = np.clip(dx, 0, None) * np.clip(dy, 0, None)
                cost += np.where(area > 0, 300.0 + 1000.0 * area, 0.0)
            cost += 6.0 * _inside(np.broadcast_to(other_points, self.boxes.shape[:2] + other_points.shape),
                                  self.boxes)  # the other edge under this label
        if other_box is not None:  # this edge under the other label
            cost += 6.0 * _inside(self.points, np.broadcast_to(other_box, (len(_RADS), 4)))[:, None]
        diff = self.points[:, :, None, :] - other_points[None, None, :, :]
        close = ((diff * diff).sum(-1).min(-1) < 0.1 ** 2) & self.valid                       # (R, S)
        for name in {self.edge.src, self.edge.dst} & {other.edge.src, other.edge.dst}:
            close &= ~self.near[name]  # edges meeting at a node are close there: only count it away from it
        cost += 4.0 * close.sum(-1)[:, None]
        return cost


def _route(panel: _Panel, label_size) -> None:
    """Choose each edge's curvature and label position: greedy, shortest edges first, then a refining sweep."""
    for edge in panel.edges:
        edge.box = label_size(edge.label) if edge.label else (0.0, 0.0)
    cands = [_Candidates(panel, edge) for edge in panel.edges]
    order = sorted(cands, key=lambda c: float(np.hypot(*np.subtract(panel.nodes[c.edge.dst].xy,
                                                                      panel.nodes[c.edge.src].xy))))
    placed: list[_Candidates] = []
    for sweep in range(2):
        for cand in order:
            cost = cand.static.copy()
            for other in placed:
                if other is not cand:
                    cost += cand.cost_against(other)
            cand.choice = np.unravel_index(int(np.argmin(cost)), cost.shape)
            if sweep == 0:
                placed.append(cand)
    for cand in cands:
        r, t = cand.choice
        cand.edge.rad, cand.edge.t = float(_RADS[r]), float(cand.ts[t])


# ---------------------------------------------------------------- drawing

def _text_inches(canvas: FigureCanvasAgg, text: str, font: FontProperties) -> tuple[float, float]:
    w, h, _ = canvas.get_renderer().get_text_width_height_descent(text, font, ismath=False)
    return w / canvas.figure.dpi, h / canvas.figure.dpi


def _label_sizer(canvas: FigureCanvasAgg):
    """Label box (width, height) in data units, padding included."""
    font = FontProperties(size=FONT_SIZE)

    def size(text: str) -> tuple[float, float]:
        w, h = _text_inches(canvas, text, font)
        return w / UNIT_IN + 0.22, h / UNIT_IN + 0.2

    return size


def _extent(panel: _Panel) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for node in panel.nodes.values():
        xs += [node.xy[0] - NODE_R, node.xy[0] + NODE_R]
        ys += [node.xy[1] - NODE_R, node.xy[1] + NODE_R]
    for edge in panel.edges:
        p0, p2 = np.array(panel.nodes[edge.src].xy), np.array(panel.nodes[edge.dst].xy)
        points = _curve(p0, p2, edge.rad, np.linspace(0, 1, _SAMPLES))
        xs += [points[:, 0].min(), points[:, 0].max()]
        ys += [points[:, 1].min(), points[:, 1].max()]
        if edge.label:
            box = _box_of(edge, _curve(p0, p2, edge.rad, np.array([edge.t]))[0])
            xs += [box[0], box[2]]
            ys += [box[1], box[3]]
    m = 0.2
    return min(xs) - m, max(xs) + m, min(ys) - m, max(ys) + m


def _draw_panel(ax, panel: _Panel) -> None:
    ax.set_aspect("equal")
    ax.axis("off")
    for edge in panel.edges:
        p0, p2 = np.array(panel.nodes[edge.src].xy), np.array(panel.nodes[edge.dst].xy)
        points = _curve(p0, p2, edge.rad, np.linspace(0, 1, 120))
        keep = (np.hypot(*(points - p0).T) > NODE_R + 0.03) & (np.hypot(*(points - p2).T) > NODE_R + 0.03)
        points = points[keep]
        if len(points) < 2:
            continue
        if edge.dashed:
            ax.add_line(Line2D(points[:, 0], points[:, 1], color=edge.color, lw=edge.width, ls=(0, (4, 3)),
                               zorder=1))
            ax.add_artist(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=10,
                                         color=edge.color, lw=edge.width, shrinkA=0, shrinkB=0, zorder=1))
        else:
            ax.add_artist(FancyArrowPatch(path=MplPath(points), arrowstyle="-|>", mutation_scale=11,
                                         color=edge.color, lw=edge.width, zorder=1 if edge.label else 0.5))
        if edge.label:
            x, y = _curve(p0, p2, edge.rad, np.array([edge.t]))[0]
            ax.text(x, y, edge.label, fontsize=FONT_SIZE, ha="center", va="center", zorder=3,
                    color="#777777" if edge.dashed else "#1a1a1a",
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=edge.color, lw=1.0, alpha=0.95))
    for node in panel.nodes.values():
        ax.add_artist(Circle(node.xy, NODE_R, fc=node.fill, ec="#333333", lw=1.2, zorder=4))
        ax.text(*node.xy, node.text, fontsize=10 if "\n" not in node.text else 8, ha="center", va="center",
                zorder=5, linespacing=0.95)


def _figure(panels: list[_Panel], title: str | None, caption: str | None = None) -> Figure:
    fig = Figure(dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    sizer = _label_sizer(canvas)
    for panel in panels:
        _route(panel, sizer)
    extents = [_extent(p) for p in panels]
    widths = [(x1 - x0) * UNIT_IN for x0, x1, _, _ in extents]
    heights = [(y1 - y0) * UNIT_IN for _, _, y0, y1 in extents]
    gap, side = 0.5, 0.25
    top = 0.35 + (0.45 if title else 0.0)  # panel titles, figure title
    ops = sorted({e.label for p in panels for e in p.edges if e.label},
                 key=lambda op: list(OP_COLORS).index(op) if op in OP_COLORS else len(OP_COLORS))
    has_concat = any(e.label is None for p in panels for e in p.edges)
    total_w = sum(widths) + gap * (len(panels) - 1) + 2 * side
    if caption:
        total_w = max(total_w, _text_inches(canvas, caption, FontProperties(size=8, family="monospace"))[0] + 0.4)
    per_row = max(1, int(total_w // 1.75))
    legend_rows = -(-(len(ops) + has_concat) // per_row)
    bottom = 0.25 + 0.24 * legend_rows + (0.3 if caption else 0.0)
    total_h = max(heights) + top + bottom
    fig.set_size_inches(total_w, total_h)
    x = (total_w - sum(widths) - gap * (len(panels) - 1)) / 2
    for panel, (x0, x1, y0, y1), w, h in zip(panels, extents, widths, heights):
        ax = fig.add_axes([x / total_w, (bottom + (max(heights) - h) / 2) / total_h, w / total_w, h / total_h])
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        _draw_panel(ax, panel)
        if panel.title:
            fig.text((x + w / 2) / total_w, (bottom + max(heights) + 0.12) / total_h, panel.title,
                     ha="center", va="bottom", fontsize=11, weight="bold")
        x += w + gap
    if title:
        fig.text(0.5, 1 - 0.12 / total_h, title, ha="center", va="top", fontsize=12.5)
    handles = [Line2D([], [], color=op_color(op), lw=2.2, ls=(0, (4, 3)) if op == "none" else "-", label=op)
               for op in ops]
    if has_concat:
        handles.append(Line2D([], [], color=CONCAT_COLOR, lw=1.4, label="concat"))
    fig.legend(handles=handles, loc="lower center", ncol=min(per_row, len(handles)), frameon=False,
               fontsize=8.5, bbox_to_anchor=(0.5, (0.05 + (0.3 if caption else 0.0)) / total_h),
               handlelength=2.2, columnspacing=1.4)
    if caption:
        fig.text(0.5, 0.08 / total_h, caption, ha="center", va="bottom", fontsize=8, family="monospace",
                 color="#444444")
    return fig


# ---------------------------------------------------------------- output

def _check_output(path: str | os.PathLike) -> tuple[Path, str]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        shown = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise UserError(f"cannot write {path}: {shown}; the picture format comes from the suffix, "
                        f"allowed: {', '.join(FORMATS)}")
    parent = path.parent
    if not parent.is_dir():
        there = next((p for p in (parent, *parent.parents) if os.path.lexists(p)), None)
        if there is not None and not there.is_dir():  # existing_file.txt/x.png: not "does not exist"
            raise UserError(f"cannot write {path}: {there} is a file, not a folder")
        raise UserError(f"cannot write {path}: folder {parent} does not exist")
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    return path, FORMATS[suffix]


def _save(fig: Figure, path: Path, fmt: str) -> Path:
    """Through ``atomic_write``: a temporary file next to ``path`` (the umask's permissions), then moved in."""
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format=fmt, dpi=DPI, facecolor="white",
                                                      metadata=_metadata(fmt)))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _metadata(fmt: str) -> dict[str, Any]:
    """No creation dates in PDF/SVG, so the same genotype gives the same file."""
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None}
    if fmt == "svg":
        return {"Date": None}
    return {}
