"""Values typed by people (flags, YAML, an NNI tuner's parameters) to Python values, with one clear error each.
Kept free of torch and NNI so that settings, retrain settings and the CLI helpers can all use it.

``coerce(what, value, hint)`` is the one way a setting's value becomes its dataclass field's type, for search
settings (``settings.py``), retrain settings (``retrain.py``) and the ablation harness (``tools/ablate/``) alike, so
a bad value reads the same wherever it was given: ``<what>: expected an integer, got '1.5'``."""
from __future__ import annotations

import functools
import typing
from typing import Any, Sequence

from nni_offpolicy.errors import UserError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
NONE_WORDS = ("none", "")


def shown(value: Any) -> str:
    """``repr(value)`` as an error shows it: short, however long the value given."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_unset(value: Any) -> bool:
    """None, or the text ``none``/empty that stands for it in flags and YAML."""
    return value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def parse_bool(what: str, value: Any) -> bool:
    """``true/yes/on/1`` or ``false/no/off/0``, any case (a bool, or the numbers 0 and 1, as they are); ``what``
    names the setting in the error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise UserError(f"{what}: expected true/false, got {shown(value)}")


def parse_float(what: str, value: Any) -> float:
    if isinstance(value, bool):  # YAML's true is not the number 1
        raise UserError(f"{what}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{what}: expected a number, got {shown(value)}") from None


def parse_int(what: str, value: Any) -> int:
    """A whole number, also when written ``600.0`` (TPE hands floats for ints); ``1.5``, ``x`` or ``true`` (YAML's
    boolean: ``seed: true`` was seed 1) is an error."""
    if isinstance(value, bool):
        raise UserError(f"{what}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value  # exactly, however large (float() would round 2**70)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{what}: expected an integer, got {shown(value)}") from None
    if not number.is_integer():
        raise UserError(f"{what}: expected an integer, got {shown(value)}")
    return int(number)


def coerce(what: str, value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[int]``,
    ``list[float]``). ``X | None`` takes ``none``/empty as None; a list takes ``1,2,3`` text, a sequence or one
    value (a one-entry list, which a caller may broadcast)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if is_unset(value):
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        items = value if isinstance(value, (list, tuple)) else [value]
        return [coerce(what, v, item) for v in items]
    if hint is bool:
        return parse_bool(what, value)
    if hint is int:
        return parse_int(what, value)
    if hint is float:
        return parse_float(what, value)
    if hint is str and value is not None:
        if isinstance(value, (bool, dict, list, tuple, set)):  # dataset: {imagefolder: /etc} is no name
            raise UserError(f"{what}: expected text, got {type(value).__name__} {shown(value)}")
        return str(value)
    return value


@functools.lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, Any]:
    """A settings dataclass's field name -> resolved type hint (what ``coerce`` takes)."""
    return typing.get_type_hints(cls)


def parse_choices(text: str | Sequence[str], flag: str, allowed: Sequence[str], noun: str | None = None
                  ) -> list[str]:
    """A comma-separated list (or a sequence) of allowed names, duplicates dropped, order kept. The error for a
    name not allowed reads "unknown <noun> ..." when ``noun`` is given, else "<flag>: ... is not allowed"."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise UserError(f"{flag}: give at least one of {', '.join(allowed)}")
    for item in items:
        if item not in allowed:
            start = f"unknown {noun} {item!r}" if noun else f"{flag}: {item!r} is not allowed"
            raise UserError(f"{start}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(items))
