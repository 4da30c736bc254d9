"""The registries of the search's pluggable parts, by name: how α learns (``settings.controller``, filled in by
``learners.py``) and how the answer is picked at the end (``settings.final_pick``, filled in by ``final_picks.py``).

They sit below both the settings, which validate a name against them, and the modules that implement the parts,
which import the settings' type for annotations only: neither imports the other. The names are here from the
start, so settings list and check them without importing torch; each implementing module puts its classes in
when it is imported (``make_learner`` and ``make_final_pick`` read them from there). A new learner or pick is one
class and one registry entry.
"""
from __future__ import annotations

from typing import Any

LEARNERS: dict[str, Any] = dict.fromkeys(("reinforce", "darts", "random"))  # name -> Learner subclass
FINAL_PICKS: dict[str, Any] = dict.fromkeys(("policy", "best-sampled", "zero-cost"))  # name -> FinalPick subclass


def fill(registry: dict[str, Any], classes: list[Any]) -> dict[str, Any]:
    """Put each class in ``registry`` under its ``name``, which must be one the registry already lists (so the
    names settings accept and the classes that run stay the same set)."""
    unknown = [cls.name for cls in classes if cls.name not in registry]
    if unknown or len(classes) != len(registry):
        raise RuntimeError(f"registry names {sorted(registry)} and classes {[c.name for c in classes]} differ")
    registry.update({cls.name: cls for cls in classes})
    return registry
