"""``nni-offpolicy plot GENOTYPE -o cell.png``: a picture of the cells an architecture is made of."""
from __future__ import annotations

import argparse

from nni_offpolicy.commands.profile import GENOTYPE_HELP, load_spec

FORMATS = (".png", ".pdf", ".svg")  # = tools.plot.FORMATS (matplotlib: imported when a picture is drawn)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw a genotype's cells (or a NAS-Bench-201 cell)",
        description="Draw the normal and reduction cells of a DARTS-family genotype side by side, or the cell of "
                    "a NAS-Bench-201 arch string, as DAGs with one arrow per edge labelled and coloured by op.")
    parser.add_argument("genotype", metavar="GENOTYPE", help=GENOTYPE_HELP)
    parser.add_argument("-o", "--output", required=True, metavar="PATH",
                        help=f"picture to write; the format comes from the suffix ({', '.join(FORMATS)})")
    parser.add_argument("--index", type=int, default=None, help="which architecture of an exported list (default 0)")
    parser.add_argument("--title", default=None, help="title above the picture (default: none for DARTS cells)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nni_offpolicy.tools.plot import plot_architecture

    family, arch = load_spec(args.genotype, args.index)
    path = plot_architecture(family, arch, args.output, title=args.title)
    print(path)
    return 0
