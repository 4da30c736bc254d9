"""The one exception type the CLI turns into a one-line message and a non-zero exit."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and what is allowed."""
