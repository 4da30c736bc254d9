"""The exception types the CLI turns into a one-line message and a non-zero exit (here, not in the modules that
raise them, so search.py and replicas.py need not import each other)."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and what is allowed."""


class SearchDiverged(UserError):
    """A NaN/inf loss or reward: the search stops and the last good checkpoint stays as it was."""
