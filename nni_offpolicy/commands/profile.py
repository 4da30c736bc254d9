"""``nni-offpolicy profile GENOTYPE``: parameters and FLOPs of the evaluation network an architecture becomes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from search_spaces.genotypes import PUBLISHED

from nni_offpolicy.errors import UserError

GENOTYPE_HELP = (f"a built-in name ({', '.join(sorted(PUBLISHED))}), a JSON file (a genotype, a search's "
                 "genotype.json or an exported list; see --index), a 'Genotype(...)' string, or a NAS-Bench-201 "
                 "arch string '|op~0|+|op~0|op~1|+...'")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def load_spec(spec: str, index: int | None) -> tuple[str, object]:
    """``load_architecture`` with file-system errors (a folder, no permission) as one-line user errors."""
    if spec in PUBLISHED and index not in (None, 0):
        raise UserError(f"{spec} is one built-in genotype, so --index {index} is past the end")
    from search_spaces.families import load_architecture  # NNI and torch: not while the parser is built

    try:
        return load_architecture(spec, index)
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read genotype file {spec}: {exc}") from None


def display_name(spec: str) -> str:
    """The spec as given, shortened when it is a long inline ``Genotype(...)``."""
    spec = " ".join(spec.split())
    return spec if len(spec) <= 60 or not spec.startswith("Genotype(") else spec[:57] + "..."


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="parameters and FLOPs of the network a genotype becomes",
        description="Parameters (without the auxiliary head) and FLOPs (thop MACs, one image, eval mode) of the "
                    "evaluation network: NetworkCIFAR for DARTS-family genotypes (default 20 cells, 36 channels), "
                    "the NAS-Bench-201 network for arch strings (default 5 cells per stack, 16 channels), on a "
                    "32x32 RGB image with 10 classes. A search's genotype.json is priced at the evaluation size it "
                    "records (eval_size: cells, channels, input size, input channels, classes), so profile agrees "
                    "with the search's own params_m/flops_m; each flag given overrides its part.")
    parser.add_argument("genotype", metavar="GENOTYPE", help=GENOTYPE_HELP)
    parser.add_argument("--index", type=int, default=None, help="which architecture of an exported list (default 0)")
    parser.add_argument("--layers", type=positive_int, default=None,
                        help="cells (DARTS, default 20) or cells per stack (NAS-Bench-201, default 5)")
    parser.add_argument("--channels", type=positive_int, default=None,
                        help="initial channels (DARTS default 36, NAS-Bench-201 default 16)")
    parser.add_argument("--num-classes", type=positive_int, default=None, help="default 10")
    parser.add_argument("--in-channels", type=positive_int, default=None, help="default 3")
    parser.add_argument("--input-size", type=positive_int, default=None, help="input height and width (default 32)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    parser.set_defaults(func=run)


STANDARD_INPUT = {"input_size": 32, "in_channels": 3, "num_classes": 10}  # CIFAR-10, what papers price at
EVAL_SIZE_KEYS = ("layers", "channels", "input_size", "in_channels", "num_classes")


def recorded_eval_size(spec: str) -> dict[str, int]:
    """The evaluation size a search's genotype.json records (``eval_size``: the network its params_m/flops_m
    priced); {} for anything else (a built-in name, a pasted string, a plain genotype or an exported list)."""
    path = Path(spec)
    if spec.lstrip().startswith(("|", "Genotype(")) or not path.suffix == ".json" or not path.is_file():
        return {}
    from nni_offpolicy.errors import UserError
    from nni_offpolicy.files.reading import read_json

    try:
        doc = read_json(path, "genotype file")  # bounded: size, nesting, not a FIFO or a device
    except UserError:
        return {}  # load_spec reports what is wrong with the file
    size = doc.get("eval_size") if isinstance(doc, dict) else None
    if not isinstance(size, dict):
        return {}
    return {k: size[k] for k in EVAL_SIZE_KEYS if isinstance(size.get(k), int) and not isinstance(size[k], bool)
            and size[k] >= 1}


def run(args: argparse.Namespace) -> int:
    import torch

    from search_spaces.families import get_family

    from nni_offpolicy.profiling import genotype_cost

    family, arch = load_spec(args.genotype, args.index)
    spec = get_family(family)
    if spec.tables:  # a benchmark's family (NAS-Bench-201): its network's cells hold the benchmark's ops only
        from search_spaces.genotypes import require_benchmark_ops

        require_benchmark_ops(arch, display_name(args.genotype))
    recorded = recorded_eval_size(args.genotype)
    size = {k: getattr(args, k) if getattr(args, k) is not None else recorded.get(k, STANDARD_INPUT.get(k))
            for k in EVAL_SIZE_KEYS}
    layers, channels = spec.eval_shape(size["layers"], size["channels"])
    input_size = size["input_size"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one batch-1 forward: a thread pool only adds overhead, a lot on a busy machine
    try:
        params, flops = genotype_cost(arch, family, layers=layers, channels=channels, num_classes=size["num_classes"],
                                      in_channels=size["in_channels"], input_size=input_size)
    except RuntimeError as exc:  # e.g. an input too small for the network's pooling
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot profile {display_name(args.genotype)} at {input_size}x{input_size} "
                        f"input: {first}") from None
    finally:
        torch.set_num_threads(threads)
    if args.json:
        print(json.dumps({
            "genotype": args.genotype, "family": family,
            "params": params, "params_m": round(params / 1e6, 3),
            "flops": flops, "flops_m": round(flops / 1e6, 1),
            "layers": layers, "channels": channels, "input_size": input_size,
            "num_classes": size["num_classes"], "in_channels": size["in_channels"],
            "eval_size_from": args.genotype if recorded else None,
        }))
        return 0
    cells = f"{layers} {spec.layers_unit}"
    aux = " (without auxiliary head)" if spec.auxiliary else ""
    shape = ("" if (size["in_channels"], size["num_classes"]) == (3, 10) else
             f" of {size['in_channels']} channel{'s' * (size['in_channels'] != 1)}, {size['num_classes']} classes")
    where = ""
    if recorded:
        overridden = [k for k in EVAL_SIZE_KEYS if getattr(args, k) is not None and k in recorded]
        where = (f" (the evaluation size recorded in {args.genotype}"
                 + (f", {', '.join(overridden)} from the flags" if overridden else "") + ")")
    print(f"{display_name(args.genotype)}: {params / 1e6:.2f} M params{aux}, "
          f"{flops / 1e6:.1f} M FLOPs (MACs) at {cells}, {channels} channels, "
          f"{input_size}x{input_size} input{shape}{where}")
    return 0
