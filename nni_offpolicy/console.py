"""What a run shows while it goes: progress bars where a person watches, plain lines everywhere else.

A progress bar redraws itself with carriage returns; on a terminal that is one line, in a file (a redirected log,
NNI's trial.stderr, CI) every redraw is a line of its own, hundreds for a handful of useful epoch lines. So bars
only go to a terminal; the per-epoch lines (and, with ``--quiet``, one line per stage) are plain text for both.
"""
from __future__ import annotations

import sys


def bars_wanted(progress: bool = True) -> bool:
    """Whether to draw progress bars: asked for (``progress``) and stderr, where they go, is a terminal."""
    if not progress:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False
