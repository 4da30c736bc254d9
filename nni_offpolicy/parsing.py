"""Values typed by people (flags, YAML, an NNI tuner's parameters) to Python values, with one clear error each.
Kept free of torch and NNI so that settings, retrain settings and the CLI helpers can all use it."""
from __future__ import annotations

from typing import Sequence

from .errors import UserError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(what: str, text: str) -> bool:
    """``true/yes/on/1`` or ``false/no/off/0``, any case; ``what`` names the setting in the error."""
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise UserError(f"{what}: expected true/false, got {text!r}")


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
