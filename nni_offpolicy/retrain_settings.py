"""What defines a retrain (``RetrainSettings``) and how loosely typed values become it (``coerce_overrides``).

Apart from ``retrain.py`` (torch) so that the CLI builds ``retrain``'s and ``trial retrain``'s options, one per
field, without importing torch; ``nni_offpolicy.retrain`` re-exports both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from nni_offpolicy.errors import UserError
from nni_offpolicy.parsing import coerce, field_types


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class RetrainSettings:
    """Everything that defines a retrain; defaults are the DARTS/P-DARTS CIFAR-10 evaluation protocol.

    ``layers``/``channels`` left at ``None`` mean the family's standard network (``Family.eval_shape``): 20
    cells of C=36 for DARTS genotypes, 5 cells per stack of C=16 for NAS-Bench-201. For NAS-Bench-201,
    ``layers`` counts cells *per stack* (3 stacks), and ``auxiliary``/``drop_path`` do not apply (its protocol
    has neither).
    """

    genotype: str = field(metadata={"help": "built-in genotype name, Genotype(...) string, NAS-Bench-201 arch "
                                            "string, or JSON file (genotype, genotype.json or exported top-K)"})
    index: int | None = _opt(None, "entry of an exported top-K file (default: the first)")
    dataset: str = _opt("cifar10", "digits | cifar10 | cifar100 | imagefolder:PATH")
    data_dir: str | None = _opt(None, "where the dataset lives (default: the data module's default)")
    download: bool = _opt(False, "download the dataset if missing")
    image_size: int | None = _opt(None, "resize every image to NxN (a folder of mixed sizes needs it; default: the "
                                        "images' own size)")
    layers: int | None = _opt(None, "cells (DARTS, default 20) or cells per stack (NB201, default 5)")
    channels: int | None = _opt(None, "initial channels (default: DARTS 36, NB201 16)")
    epochs: int = _opt(600, "training epochs")
    batch_size: int = _opt(96, "batch size")
    lr: float = _opt(0.025, "initial SGD learning rate (cosine-annealed to 0 over the epochs)")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(3e-4, "SGD weight decay")
    grad_clip: float = _opt(5.0, "gradient-norm clipping (0 = off)")
    cutout: int = _opt(16, "cutout square side in pixels (0 = off)")
    drop_path: float = _opt(0.2, "final drop-path probability, raised linearly from 0 (DARTS only)")
    auxiliary: bool = _opt(True, "auxiliary head at 2/3 depth (DARTS only)")
    auxiliary_weight: float = _opt(0.4, "weight of the auxiliary loss")
    seed: int = _opt(0, "random seed (weights, data order, drop-path)")
    device: str = _opt("auto", "cpu | cuda | cuda:N | auto (cuda if available)")
    valid_portion: float = _opt(0.0, "0: validate on the test split each epoch (DARTS protocol); >0: hold out "
                                     "this part of the training set and test once at the end")
    max_steps: int | None = _opt(None, "at most this many steps per epoch (short runs)")

    def validate(self) -> "RetrainSettings":
        """Raise ``UserError`` naming the first bad field; return ``self``."""
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise UserError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        need(isinstance(self.genotype, str) and bool(self.genotype.strip()), "genotype",
             "a genotype name, string or file")
        for f in fields(self):
            value = getattr(self, f.name)
            need(not isinstance(value, float) or math.isfinite(value), f.name, "a finite number")
        from nni_offpolicy.files.checkpoint import check_seed  # torch: imported when a retrain is checked

        check_seed(self.seed)
        need(self.index is None or self.index >= 0, "index", ">= 0")
        need(self.layers is None or 1 <= self.layers <= 200, "layers", "in 1..200")  # not a MemoryError later
        need(self.channels is None or 1 <= self.channels <= 2048, "channels", "in 1..2048")
        need(self.image_size is None or self.image_size >= 1, "image_size", ">= 1 pixel (or unset)")
        need(self.epochs >= 1, "epochs", ">= 1")
        need(self.batch_size >= 1, "batch_size", ">= 1")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "> 0")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.grad_clip >= 0, "grad_clip", ">= 0 (0 = off)")
        need(self.cutout >= 0, "cutout", ">= 0 (0 = off)")
        need(0 <= self.drop_path < 1, "drop_path", "in [0, 1)")
        need(self.auxiliary_weight >= 0, "auxiliary_weight", ">= 0")
        need(0 <= self.valid_portion < 1, "valid_portion", "in [0, 1)")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", ">= 1 (or unset)")
        need(self.device == "auto" or self.device == "cpu" or self.device.split(":")[0] == "cuda", "device",
             "cpu, cuda, cuda:N or auto")
        return self

    def shape(self, family: str) -> tuple[int, int]:
        """``(layers, channels)`` of the network for this family; for NB201 ``layers`` is cells per stack."""
        from search_spaces.families import get_family

        return get_family(family).eval_shape(self.layers, self.channels)


def coerce_overrides(overrides: Mapping[str, Any], where: str,
                     reserved: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Retrain settings from text or loosely typed values (``--retrain-set`` strings, an NNI tuner's numbers:
    TPE hands ``600.0`` for an int) to the dataclass's types, with one clear error per bad entry.
    ``where`` names the source in errors; ``reserved`` maps settings the caller sets itself to what sets them."""
    hints = field_types(RetrainSettings)
    known = set(hints)
    reserved = reserved or {}
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        key = name.replace("-", "_")
        if key in reserved:
            raise UserError(f"{where} {key}: set by {reserved[key]}")
        if key not in known:
            raise UserError(f"{where}: unknown retrain setting {name!r}; allowed: "
                            f"{', '.join(sorted(known - set(reserved)))}")
        out[key] = coerce(f"{where} {key}", value, hints[key])
    return out
