"""README.md and docs/*.md: every example runs as written from the repository root.

What is checked, without running a search:
- every path a fenced ``bash`` example names exists from the repository root (outputs the example itself writes,
  ``runs/...`` that an example in README/docs writes, URLs and the venv excluded; ``../shared/...`` only where
  that folder exists);
- every ``nni-offpolicy COMMAND`` is a real command, and its whole line parses with that command's own argparse
  parser (built from ``nni_offpolicy.cli``; nothing runs), with every ``--flag`` spelled in full;
- the cheap examples (``profile`` of a named cell, ``lookup`` of arch strings, ``--print-settings``, ``--help``)
  run in this process and exit 0;
- every relative link and image in README/docs resolves inside the repository, anchors included;
- README.md is at most 300 lines, its test command is ``.ci/run``'s, and its tables name every command and preset.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
README = REPO / "README.md"
README_MAX_LINES = 300
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

FILE_SUFFIXES = (".yml", ".yaml", ".json", ".csv", ".onnx", ".tar.gz", ".tgz", ".png", ".svg", ".py", ".sh", ".md")
OUTPUT_FLAGS = {"-o", "--output", "--json"}  # what follows is written by the example, not read
FENCE = re.compile(r"^```(\w*)\s*$")
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>", "2>&1", ">&"}


@dataclass(frozen=True)
class Example:
    doc: Path
    line: int  # 1-based line of the command's first line
    text: str  # the command with continuations joined
    argv: tuple[str, ...]
    inline: bool = False  # inline code in a sentence or table, not a fenced block

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: {self.text}"


def bash_blocks(doc: Path) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every ```bash / ```sh / ```shell block."""
    blocks, current, start, lang = [], None, 0, ""
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence and current is None:
            current, start, lang = [], number + 1, fence.group(1)
        elif line.strip() == "```" and current is not None:
            if lang in ("bash", "sh", "shell"):
                blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def split_commands(text: str) -> list[list[str]]:
    """One shell line into simple commands (split at && ; | ...), comments, redirections and env prefixes gone;
    a ``$(...)`` substitution becomes one opaque word."""
    text = re.sub(r"\$\([^()]*\)", "SUBSTITUTION", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current, skip_next = [], [], False
    for token in lexer:
        if skip_next:  # the target of a redirection: an output (or an input we do not model)
            skip_next = False
            continue
        if token in SEPARATORS:
            commands.append(current)
            current = []
        elif token in REDIRECTS or re.fullmatch(r"\d?>+&?\d*|<", token):
            skip_next = not token.endswith("&1")
        else:
            current.append(token)
    commands.append(current)
    cleaned = []
    for argv in commands:
        while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):  # ENV=value prefix
            argv = argv[1:]
        if argv:
            cleaned.append(argv)
    return cleaned


def examples(doc: Path) -> list[Example]:
    found = []
    for start, lines in bash_blocks(doc):
        joined, first = "", None
        for offset, line in enumerate(lines):
            if first is None:
                first = start + offset
            if line.rstrip().endswith("\\"):
                joined += line.rstrip()[:-1] + " "
                continue
            joined += line
            for argv in split_commands(joined):
                found.append(Example(doc, first, joined.strip(), tuple(argv)))
            joined, first = "", None
    return found


INLINE = re.compile(r"`((?:nni-offpolicy|nnictl|\.venv/bin/[\w-]+|python3? scripts/)[^`]*)`")


def inline_examples(doc: Path) -> list[Example]:
    """Commands written as inline code outside fences (a table's example column): checked like the fenced ones,
    but not run."""
    found, in_code = [], False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for text in INLINE.findall(line):
            if " " not in text.strip():
                continue  # the program's bare name in a sentence
            for argv in split_commands(text):
                found.append(Example(doc, number, text, tuple(argv), inline=True))
    return found


FENCED_EXAMPLES = [example for doc in DOCS for example in examples(doc)]
ALL_EXAMPLES = FENCED_EXAMPLES + [example for doc in DOCS for example in inline_examples(doc)]


def cli_args(example: Example) -> list[str] | None:
    """The arguments after ``nni-offpolicy`` (or ``.venv/bin/nni-offpolicy``), or None for another program."""
    argv = list(example.argv)
    if argv[0] == "nni-offpolicy" or argv[0].endswith("/nni-offpolicy"):
        return argv[1:]
    if argv[:3] in (["python", "-m", "nni_offpolicy.cli"], ["python3", "-m", "nni_offpolicy.cli"]):
        return argv[3:]
    return None


# ----------------------------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------------------------
def path_candidates(argv: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(paths the command reads, paths it writes) among its words."""
    reads, writes = [], []
    previous = ""
    for token in argv:
        value = token
        if previous in OUTPUT_FLAGS:
            writes.append(value)
            previous = token
            continue
        previous = token
        if "://" in value or value.startswith("-") and "=" not in value:
            continue
        if "=" in value:  # --flag=value, KEY=VALUE
            flag, value = value.split("=", 1)[0], value.split("=", 1)[1]
            if flag in OUTPUT_FLAGS:
                writes.append(value)
                continue
            if "=" in value:  # --set key=value
                value = value.split("=", 1)[1]
        if value.startswith("imagefolder:"):
            value = value[len("imagefolder:"):]
        for suffix in FILE_SUFFIXES:  # TABLE.csv:COLUMN
            if suffix + ":" in value:
                value = value.split(suffix + ":", 1)[0] + suffix
        if "|" in value or value.startswith("/") or value.startswith("~"):
            continue  # NB201 arch strings; absolute/home paths are the machine's, not the repository's
        if "/" in value or value.endswith(FILE_SUFFIXES):
            reads.append(value)
    return reads, writes


def created_outputs() -> list[str]:
    """Every output an example of README/docs writes (``-o``, ``--output``, ``--json``), as patterns: a later
    example may read ``runs/demo/genotype.json`` because an example names ``--output runs/demo``."""
    outs = []
    for example in ALL_EXAMPLES:
        outs += path_candidates(example.argv)[1]
    return [o.rstrip("/") for o in outs if o != "-"]


def under(path: str, output: str) -> bool:
    """Whether ``path`` is ``output`` or inside it, either of them possibly a glob (``runs/space-s*/...``)."""
    parts, out = path.split("/"), output.split("/")
    return len(parts) >= len(out) and all(fnmatch.fnmatch(p, o) or fnmatch.fnmatch(o, p) for p, o in zip(parts, out))


def missing_paths(example: Example, created: list[str]) -> list[str]:
    missing = []
    for value in path_candidates(example.argv)[0]:
        clean = value.rstrip("/")
        if clean.startswith(".venv/") or clean == ".venv":
            continue  # made by the README's install command
        if clean.startswith("../shared/") and not SHARED.exists():
            continue
        if any(under(clean, c) for c in created):
            continue
        if clean.startswith("runs/"):  # ignored by git: what a local run left there proves nothing on a clone
            missing.append(value + " (no example writes it)")
            continue
        if any(ch in clean for ch in "*?["):
            if not list(REPO.glob(clean)) and not (clean.startswith("../") and list(REPO.parent.glob(clean[3:]))):
                missing.append(value)
            continue
        if not (REPO / clean).exists():
            missing.append(value)
    return missing


def test_every_path_an_example_names_exists():
    problems, created = [], created_outputs()
    for example in ALL_EXAMPLES:
        for value in missing_paths(example, created):
            problems.append(f"{example.where()}\n    -> {value} does not exist from the repository root")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------------
# Commands and flags
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    from nni_offpolicy.cli import build_parser

    return build_parser()


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_parser(parser: argparse.ArgumentParser, args: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The innermost (sub)parser the words select, and the words it gets."""
    while args and args[0] in subparsers_of(parser):
        parser, args = subparsers_of(parser)[args[0]], args[1:]
    return parser, args


def test_every_command_is_real_and_every_flag_is_accepted(parser):
    problems, seen = [], 0
    commands = subparsers_of(parser)
    for example in ALL_EXAMPLES:
        args = cli_args(example)
        if args is None:
            continue
        seen += 1
        if not args or args[0] not in commands:
            problems.append(f"{example.where()}\n    -> not a command (commands: {', '.join(commands)})")
            continue
        sub, rest = command_parser(parser, args)
        for token in rest:
            flag = token.split("=", 1)[0]
            if flag.startswith("-") and flag != "-" and not re.fullmatch(r"-\d.*", flag) \
                    and flag not in sub._option_string_actions:
                problems.append(f"{example.where()}\n    -> {flag} is not an option of `{sub.prog}`")
        if "-h" in args or "--help" in args or (example.inline and len(args) == 1):
            continue  # `nni-offpolicy lookup` named in a sentence is not an invocation
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(args)
            except SystemExit as exc:
                if exc.code:
                    problems.append(f"{example.where()}\n    -> {err.getvalue().strip().splitlines()[-1]}")
    assert seen, "no nni-offpolicy example found"
    assert not problems, "\n".join(problems)


def cheap(args: list[str]) -> bool:
    """Examples that take seconds and write nothing: profile of a named/pasted cell, lookup of arch strings,
    --print-settings, --help."""
    if "-h" in args or "--help" in args:
        return True
    if args[0] == "search":
        return "--print-settings" in args
    if args[0] == "profile":
        return not any("/" in a or a.endswith(".json") for a in args[1:])
    if args[0] == "lookup":
        files = [a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] != "--table"]
        return all(a.startswith("|") and "..." not in a for a in files) and (SHARED.exists() or
                                                                             "../shared/" not in " ".join(args))
    return False


def test_the_cheap_examples_run(capsys):
    from nni_offpolicy import cli

    ran, problems = 0, []
    for example in FENCED_EXAMPLES:
        args = cli_args(example)
        if not args or not cheap(args):
            continue
        ran += 1
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # --help
            code = exc.code or 0
        out = capsys.readouterr()
        if code != 0:
            problems.append(f"{example.where()}\n    -> exit {code}: {out.err.strip()[-500:]}")
    assert ran, "no cheap example found"
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------------
# Links, length, and what the README must say
# ----------------------------------------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    found, in_code = set(), False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def test_every_relative_link_resolves():
    problems = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)  # no links in code
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            where = f"{doc.relative_to(REPO)}: ({target})"
            if not dest.is_relative_to(REPO):
                problems.append(f"{where} points outside the repository")
            elif not dest.exists():
                problems.append(f"{where} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not problems, "\n".join(problems)


def test_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/ (at most {README_MAX_LINES})"


def test_readme_test_command_is_the_ci_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line.strip() for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert command in README.read_text(encoding="utf-8"), f"README.md must show .ci/run's command: {command}"


def table_first_column(doc: Path, header: str) -> set[str]:
    """The backticked words of the first column of the table whose header row starts with ``| header``."""
    names, inside = set(), False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("| " + header):
            inside = True
        elif inside and line.startswith("|"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
        elif inside:
            break
    return names


def test_readme_tables_name_every_command_and_preset():
    from nni_offpolicy.cli import COMMANDS
    from nni_offpolicy.settings import SEARCH_PRESETS

    commands = {name.split()[0] for name in table_first_column(README, "command")}
    assert set(COMMANDS) <= commands, f"README's command table lacks {sorted(set(COMMANDS) - commands)}"
    presets = table_first_column(README, "preset")
    assert presets == set(SEARCH_PRESETS), f"README's preset table: {sorted(presets)} != {sorted(SEARCH_PRESETS)}"
