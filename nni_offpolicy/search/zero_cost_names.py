"""The zero-cost scores' names and the ``zero_cost`` setting's grammar, without torch.

The settings check a ``zero_cost`` value here, and building the CLI parser imports neither torch nor NNI; the
scores themselves are in ``zero_cost.py``, whose registry must hold exactly these names (it checks when it is
imported, and a test checks too). A value is one registered name, or ``ens:`` and two or more of them joined by
``+`` (a rank ensemble: ``ens:naswot+synflow+zico``).
"""
from __future__ import annotations

# in the order --help and error lines list them; naswot first (the one the presets use and the messages suggest)
ZERO_COST_SCORES = ("naswot", "synflow", "zico", "snip", "grad_norm", "jacob_cov", "params", "flops")
ENSEMBLE_PREFIX = "ens:"
ALLOWED = f"none, {', '.join(ZERO_COST_SCORES)}, or {ENSEMBLE_PREFIX}A+B[+C...] of two or more of them"


def components(value: str) -> tuple[str, ...]:
    """The scores ``value`` names: ``("naswot",)`` for ``naswot``, ``("naswot", "synflow")`` for
    ``ens:naswot+synflow``. A ``ValueError`` whose message is one line naming what is allowed for anything else:
    an unknown name, an ensemble of fewer than two scores or of one score twice."""
    if not isinstance(value, str):
        raise ValueError(f"unknown zero_cost score {value!r}; allowed: {ALLOWED}")
    if not value.startswith(ENSEMBLE_PREFIX):
        if value not in ZERO_COST_SCORES:
            raise ValueError(f"unknown zero_cost score {value!r}; allowed: {ALLOWED}")
        return (value,)
    names = tuple(value[len(ENSEMBLE_PREFIX):].split("+"))
    unknown = [name for name in names if name not in ZERO_COST_SCORES]
    if unknown:
        raise ValueError(f"unknown zero_cost score {unknown[0]!r} in {value!r}; allowed: {ALLOWED}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"zero_cost={value} must join two or more different scores with '+' "
                         f"(e.g. {ENSEMBLE_PREFIX}naswot+synflow); allowed: {ALLOWED}")
    return names


def is_ensemble(value: str) -> bool:
    """Whether ``value`` (a valid setting) is a rank ensemble."""
    return value.startswith(ENSEMBLE_PREFIX)
