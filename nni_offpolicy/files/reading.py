"""The one way a user's file is read: bounded in size and nesting, and every way it can be wrong is one line.

Every JSON or YAML document the commands take from a user (``--config``, a genotype or top-K file for retrain,
profile, plot and lookup, a benchmark table) goes through here:

- the path must be a regular file: a folder, a FIFO (which would block the read for ever), ``/dev/zero`` or
  another device (endless), or a socket is refused before it is opened;
- its size is bounded (``limit`` bytes, checked with ``stat`` and again while reading, so a file that grows
  between the two cannot slip past): a 1 GB one-line CSV is one line, not a ``MemoryError``;
- it must be UTF-8 text without NUL bytes;
- JSON and YAML are nested at most ``MAX_DEPTH`` deep (200,000 nested brackets were a ``RecursionError``), and a
  YAML document's aliases may expand to at most ``MAX_NODES`` nodes (a 9-level alias bomb under ``preset:`` was a
  ``MemoryError``); an alias that refers to itself is refused.

Kept free of torch so that every command can use it.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from nni_offpolicy.errors import UserError

MAX_DEPTH = 100  # nesting of JSON/YAML containers: every real document here is under 10
MAX_NODES = 2_000_000  # a YAML document's nodes with every alias expanded
CONFIG_LIMIT = 1 << 20  # settings files: 1 MiB
DOCUMENT_LIMIT = 64 << 20  # genotype.json, top-K files, result documents: 64 MiB
TABLE_LIMIT = 256 << 20  # benchmark tables (NAS-Bench-201's 15,625 rows with every column are a few MB)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= (1 << 20) else f"{size} bytes"


def check_regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it names a regular file (after symbolic links); else one line saying what it is instead."""
    path = Path(path)
    if str(path) in ("", "."):
        raise UserError(f"{what}: no file name given")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except OSError as exc:  # a symlink loop, a name too long, a folder without permission
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a device" if
                stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket" if
                stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise UserError(f"{what} {path} is {kind}, not a regular file; give a file")
    return path


def read_bytes(path: str | Path, what: str = "file", limit: int = DOCUMENT_LIMIT) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``check_regular_file``); one line otherwise."""
    path = check_regular_file(path, what)
    size = path.stat().st_size
    if size > limit:
        raise UserError(f"{what} {path} is {_mib(size)}, over the {_mib(limit)} one may have")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in now still cannot block
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UserError(f"{what} {path} is over the {_mib(limit)} one may have")
    return data


def read_text(path: str | Path, what: str = "file", limit: int = DOCUMENT_LIMIT) -> str:
    """UTF-8 text of a regular file of at most ``limit`` bytes, without NUL bytes; one line otherwise."""
    data = read_bytes(path, what, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not text (UTF-8 expected)") from None
    if "\x00" in text:
        raise UserError(f"{what} {path} is not text (it holds NUL bytes)")
    return text


def check_depth(data: Any, where: str) -> Any:
    """``data`` if its containers nest at most ``MAX_DEPTH`` deep (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return data


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def parse_json(text: str, where: str) -> Any:
    """A JSON document, bounded in nesting; one line naming ``where`` for anything else."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        hint = " (the file is empty)" if not text.strip() else ""
        raise UserError(f"{where}: not valid JSON ({_first_line(exc)}){hint}") from None
    except ValueError as exc:  # numbers too long to convert, and the like
        raise UserError(f"{where}: not valid JSON ({_first_line(exc)})") from None
    return check_depth(data, where)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader; documents are checked (``_check_yaml_nodes``) before anything is constructed."""


def _check_yaml_nodes(root: yaml.Node, where: str) -> None:
    """Depth and alias-expanded size of a composed YAML document, memoised per node (aliases share nodes), walked
    without recursion; an alias cycle is refused."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if depth[key] > MAX_DEPTH + 1:
                raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            if size[key] > MAX_NODES:
                raise UserError(f"{where}: its aliases expand to over {MAX_NODES:,} values (an alias bomb?)")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise UserError(f"{where}: an alias refers to itself")
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise UserError(f"{where}: an alias refers to itself")
            if id(child) not in size:
                stack.append((child, False))
        if len(stack) > 4 * MAX_NODES:
            raise UserError(f"{where}: too large a document")


def parse_yaml(text: str, where: str) -> Any:
    """A YAML document (safe types only), bounded in nesting and alias expansion; one line for anything else."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, where)
        return loader.construct_document(node)
    except RecursionError:
        raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: cannot parse ({_first_line(exc)})") from None
    finally:
        loader.dispose()


def read_json(path: str | Path, what: str = "file", limit: int = DOCUMENT_LIMIT) -> Any:
    """A user's JSON file (``read_text`` + ``parse_json``)."""
    return parse_json(read_text(path, what, limit), f"{what} {path}")


def read_document(path: str | Path, what: str = "config file", limit: int = CONFIG_LIMIT) -> Any:
    """A user's YAML (``.yml``/``.yaml``) or JSON file."""
    path = Path(path)
    text = read_text(path, what, limit)
    where = f"{what} {path}"
    return parse_yaml(text, where) if path.suffix.lower() in (".yml", ".yaml") else parse_json(text, where)
