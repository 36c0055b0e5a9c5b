"""Compiled-policy cache for short-lived processes: parse a rules file once, not once per process.

The Claude Code hook is a new process for every tool call; parsing its rules each time means loading the
parser and lark (tens of milliseconds) before every decision. ``cached_policy`` keeps the parsed rule
files (the nodes, not compiled code) in a directory keyed by the SHA-256 of the rules' text and source,
the rule language's version and corral's, and compiles them afresh from there — compiling from nodes is
quick and needs no parser. An entry is JSON: loading one can only ever build the rule language's own
node classes (``{"@": "Rule", "v": [...]}``), so a stale, damaged or planted entry means "parse the text
again", never anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from corral.governance.rules import nodes
from corral.governance.rules.compiler import Policy
from corral.governance.rules.nodes import RuleFile
from corral.struct import fields_of
from corral.version import __version__

#: Bumped whenever the node classes or the entry format change, so old entries are parsed again.
FORMAT = 4
_NODE_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (nodes.Literal, nodes.Subject, nodes.Condition, nodes.Not, nodes.And, nodes.Or, nodes.Rule,
                nodes.Directive, nodes.RuleFile)
}
_NODE_TYPES = frozenset(_NODE_CLASSES.values())


def cached_policy(sources: Sequence[tuple[str, str] | tuple[str, str, str | None]], directory: Path) -> Policy:
    """The policy of ``(text, source[, mode])``, parsing only the text no cached entry holds."""
    files: list[RuleFile] = []
    for item in sources:
        text, source = item[0], item[1]
        mode = item[2] if len(item) > 2 else None  # type: ignore[misc]
        key = hashlib.sha256(f"{FORMAT}\0{__version__}\0{source}\0{mode}\0{text}".encode()).hexdigest()[:40]
        path = directory / f"rules-{key}.json"
        parsed = _load(path)
        if parsed is None or parsed.source != source or parsed.mode != mode:
            from corral.governance.rules.parser import parse_rules

            parsed = parse_rules(text, source, mode=mode)
            _save(path, parsed)
        files.append(parsed)
    return Policy(files)


def encode(node: Any) -> Any:
    """A node tree as JSON-ready values: a node is ``{"@": class, "v": [fields]}``, a tuple a list, a
    ``Decimal`` ``{"$": text}``."""
    if type(node) in _NODE_TYPES:
        return {"@": type(node).__name__, "v": [encode(getattr(node, f.name)) for f in fields_of(node)]}
    if isinstance(node, tuple | list):
        return [encode(item) for item in node]
    if isinstance(node, Decimal):
        return {"$": str(node)}
    if node is None or isinstance(node, str | int | float):
        return node
    raise TypeError(f"a rule node cannot hold {type(node).__name__}")


def _decode_object(obj: dict[str, Any]) -> Any:
    if "$" in obj:
        return Decimal(obj["$"])
    cls = _NODE_CLASSES[obj["@"]]  # a KeyError for anything else: the entry is not trusted
    return cls(*(tuple(v) if isinstance(v, list) else v for v in obj["v"]))


def decode(text: str | bytes) -> RuleFile | None:
    """The ``RuleFile`` an entry holds, or None for anything else (damaged, foreign, another shape)."""
    try:
        value = json.loads(text, object_hook=_decode_object)
    except Exception:  # damaged, planted or from another version: parse the text instead
        return None
    return value if isinstance(value, RuleFile) else None


def _load(path: Path) -> RuleFile | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return decode(data)


def _save(path: Path, parsed: RuleFile) -> None:
    """Atomically; a cache that cannot be written only costs time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(encode(parsed), ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
