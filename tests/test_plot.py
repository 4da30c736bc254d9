"""Cell pictures: real files in the right format, readable layouts, and no half-written files on failure."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from nni_offpolicy.cli import main
from nni_offpolicy.errors import UserError
from nni_offpolicy.tools.plot import genotype_figure, nb201_figure, op_color, plot_genotype, plot_nb201
from search_spaces import DARTS_OPS, NB201_OPS, PUBLISHED, GenotypeError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_plot_genotype_writes_a_png(tmp_path):
    path = plot_genotype(PUBLISHED["pdarts"], tmp_path / "pdarts.png", title="P-DARTS")
    assert path == tmp_path / "pdarts.png"
    width, height = png_size(path)
    assert width > 1500 and 300 < height < width  # two cells side by side
    assert path.stat().st_size > 30_000
    assert files(tmp_path) == ["pdarts.png"]  # no temporary file left behind


def test_plot_nb201_from_an_arch_string_and_a_sample(tmp_path):
    width, height = png_size(plot_nb201(ARCH, tmp_path / "a.png"))
    assert width > 500 and height > 400
    sample = {f"cell/op_{j}_{i}": "none" for j in range(1, 4) for i in range(j)}
    svg = plot_nb201(sample, tmp_path / "none.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def cell_texts(fig: Figure):
    """(label text boxes, node circles) of each axes, in display coordinates, after drawing."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts if t.get_bbox_patch()]
        circles = []
        for patch in ax.patches:
            if isinstance(patch, Circle):
                center = ax.transData.transform(patch.center)
                edge = ax.transData.transform((patch.center[0] + patch.radius, patch.center[1]))
                circles.append((center, edge[0] - center[0]))
        yield boxes, circles


@pytest.mark.parametrize("make", [lambda: genotype_figure(PUBLISHED["pdarts"]),
                                  lambda: genotype_figure(PUBLISHED["darts_v1"]),
                                  lambda: nb201_figure(ARCH)], ids=["pdarts", "darts_v1", "nb201"])
def test_labels_do_not_overlap_each_other_or_nodes(make):
    fig = make()
    for boxes, circles in cell_texts(fig):
        assert boxes and circles
        for k, a in enumerate(boxes):
            for b in boxes[k + 1:]:
                assert not a.overlaps(b.expanded(0.98, 0.9)), "two edge labels overlap"
            for center, radius in circles:
                nearest = np.clip(center, [a.x0, a.y0], [a.x1, a.y1])
                assert np.hypot(*(nearest - center)) > radius * 0.95, "an edge label covers a node"


def test_every_edge_is_drawn_and_coloured_by_op():
    fig = genotype_figure(PUBLISHED["pc_darts"])
    normal, reduce = fig.axes
    assert sorted(t.get_text() for t in normal.texts if t.get_bbox_patch()) == sorted(
        op for op, _ in PUBLISHED["pc_darts"].normal)
    assert len([t for t in reduce.texts if t.get_bbox_patch()]) == 8
    assert len({op_color(op) for op in DARTS_OPS}) == len(DARTS_OPS)
    assert len({op_color(op) for op in NB201_OPS}) == len(NB201_OPS)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "concat" in legend and "sep_conv_3x3" in legend and "max_pool_3x3" in legend


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "cell.png"
    target.write_bytes(b"old picture")

    def broken(self, fname, **kwargs):
        fname.write(b"half a picture")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_genotype(PUBLISHED["darts_v2"], target)
    assert target.read_bytes() == b"old picture"
    assert files(tmp_path) == ["cell.png"]


def test_bad_suffix_and_missing_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"'\.jpg'.*\.png, \.pdf, \.svg"):
        plot_genotype(PUBLISHED["pdarts"], tmp_path / "cell.jpg")
    with pytest.raises(UserError, match="does not exist"):
        plot_nb201(ARCH, tmp_path / "nowhere" / "cell.png")
    with pytest.raises(GenotypeError, match="sep_conv_9x9"):
        plot_genotype(PUBLISHED["pdarts"]._replace(reduce=[("sep_conv_9x9", 0)] * 8), tmp_path / "bad.png")
    assert files(tmp_path) == []


# ---------------------------------------------------------------- CLI

def test_cli_plot_darts_and_nb201(capsys, tmp_path):
    out_png = tmp_path / "pdarts.png"
    assert main(["plot", "pdarts", "-o", str(out_png), "--title", "P-DARTS (CIFAR-10)"]) == 0
    assert capsys.readouterr().out.strip() == str(out_png)
    png_size(out_png)

    out_pdf = tmp_path / "nb201.pdf"
    assert main(["plot", ARCH, "-o", str(out_pdf)]) == 0
    assert out_pdf.read_bytes()[:5] == b"%PDF-"

    empty = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    exported = tmp_path / "top.json"
    exported.write_text(json.dumps([{"genotype": ARCH}, {"genotype": empty}]))
    assert main(["plot", str(exported), "--index", "1", "-o", str(tmp_path / "second.png")]) == 0
    direct = plot_nb201(empty, tmp_path / "direct.png")  # same picture, byte for byte: --index picked entry 1
    assert (tmp_path / "second.png").read_bytes() == direct.read_bytes()
    assert main(["plot", str(exported), "-o", str(tmp_path / "first.png")]) == 0
    assert (tmp_path / "first.png").read_bytes() != direct.read_bytes()


def test_cli_plot_bad_suffix_returns_2_and_writes_nothing(capsys, tmp_path):
    assert main(["plot", "pdarts", "-o", str(tmp_path / "cell.jpeg")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ".jpeg" in err and ".png" in err
    assert files(tmp_path) == []


def test_cli_plot_bad_genotype_returns_2_and_writes_nothing(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"normal": [["sep_conv_3x3", 0]] * 8, "normal_concat": [2, 3, 4, 5],
                               "reduce": [["max_pool_3x3", 9]] * 8, "reduce_concat": [2, 3, 4, 5]}))
    assert main(["plot", str(bad), "-o", str(tmp_path / "cell.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "reduce[0]" in err and "Traceback" not in err
    assert main(["plot", "|nor_conv_3x3~0|+|oops~0|none~1|", "-o", str(tmp_path / "cell.png")]) == 2
    assert "needs 3 nodes" in capsys.readouterr().err
    assert files(tmp_path) == ["bad.json"]
