"""Compiled-policy cache for short-lived processes: parse a rules file once, not once per process.

The Claude Code hook is a new process for every tool call; parsing its rules each time means loading the
parser and lark (tens of milliseconds) before every decision. ``cached_policy`` keeps the parsed rule
files (the nodes, not compiled code) in a directory keyed by the SHA-256 of the rules' text and source,
the rule language's version and corral's, and compiles them afresh from there — compiling from nodes is
quick and needs no parser. A stale, damaged or foreign cache entry is never trusted: only the rule
language's own node classes may be loaded from it, and anything else means "parse the text again".
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from corral.governance.rules.compiler import Policy
from corral.governance.rules.nodes import RuleFile
from corral.version import __version__

#: Bumped whenever the node classes change shape, so old entries are parsed again, never misread.
FORMAT = 2
_NODES = "corral.governance.rules.nodes"
_ALLOWED = {("decimal", "Decimal"), ("builtins", "frozenset"), ("builtins", "set")}


def cached_policy(sources: Sequence[tuple[str, str] | tuple[str, str, str | None]], directory: Path) -> Policy:
    """The policy of ``(text, source[, mode])``, parsing only the text no cached entry holds."""
    files: list[RuleFile] = []
    for item in sources:
        text, source = item[0], item[1]
        mode = item[2] if len(item) > 2 else None  # type: ignore[misc]
        key = hashlib.sha256(f"{FORMAT}\0{__version__}\0{source}\0{mode}\0{text}".encode()).hexdigest()[:40]
        path = directory / f"rules-{key}.pickle"
        parsed = _load(path)
        if parsed is None or parsed.source != source or parsed.mode != mode:
            from corral.governance.rules.parser import parse_rules

            parsed = parse_rules(text, source, mode=mode)
            _save(path, parsed)
        files.append(parsed)
    return Policy(files)


class _NodesOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if module == _NODES or (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a rule node")


def _load(path: Path) -> RuleFile | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        value = _NodesOnly(io.BytesIO(data)).load()
    except Exception:  # damaged, foreign or from another version: parse the text instead
        return None
    return value if isinstance(value, RuleFile) else None


def _save(path: Path, parsed: RuleFile) -> None:
    """Atomically; a cache that cannot be written only costs time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
