"""CLI sub-commands; each module exposes ``register(subparsers)``."""
from __future__ import annotations

from nni_offpolicy.errors import UserError


def parse_pairs(items: list[str], flag: str = "--set") -> dict[str, str]:
    """Repeated ``KEY=VALUE`` flags to a mapping of strings (the settings' loaders coerce the types)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
