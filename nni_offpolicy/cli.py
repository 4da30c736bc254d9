"""``nni-offpolicy``: one sub-command per module in ``nni_offpolicy.commands``.

Every command module has ``register(subparsers)`` which adds its parser and sets ``func``. Errors of the user's
making (``UserError`` and the spaces' ``ValueError``s) become one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from nni_offpolicy.errors import UserError

COMMANDS = ["search", "profile", "retrain", "export", "plot", "trial", "bench", "ablate", "lookup"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All commands for ``--help``; just ``only`` when it is known, so ``export`` does not pay for torch."""
    parser = argparse.ArgumentParser(prog="nni-offpolicy", description="P-DARTS progressive shrinking with an "
                                     "off-policy REINFORCE controller, as an NNI 3.0 NAS strategy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ([only] if only else COMMANDS):
        importlib.import_module(f"nni_offpolicy.commands.{name}").register(sub)
    return parser


MESSAGE_LIMIT = 1000  # characters of an error line: whatever a message quotes, a 10 MB value is not echoed whole


def brief(exc: BaseException) -> str:
    """The error's message as one line of at most about ``MESSAGE_LIMIT`` characters."""
    text = " ".join(str(exc).split("\n")) or type(exc).__name__
    if len(text) > MESSAGE_LIMIT:
        text = f"{text[:MESSAGE_LIMIT]}... ({len(text) - MESSAGE_LIMIT:,} more characters)"
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"nni-offpolicy {args.command}: error: {brief(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not the input's (disk full, permissions changed mid-run)
        print(f"nni-offpolicy {args.command}: error: {brief(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nni-offpolicy {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
