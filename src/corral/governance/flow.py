"""Information flow (DESIGN §15): labels a tool's results add to the session, tags that describe a tool.

The attacks that matter most on agents are flows: a session reads private data, then content with a
planted instruction, then sends something out — the "lethal trifecta". corral tracks the first two as
*labels* (``pii``, ``secret``, ``untrusted``…) that a tool's results add to its session, and the third as
*tags* on the tool itself (``egress``). Rules read both as sets::

    BLOCK * WHEN tags CONTAINS egress AND labels CONTAINS untrusted AND labels CONTAINS pii

Labels only accumulate within a session. They are added when a call returns a result (a refused or
failing call read nothing), recorded in that call's outcome (``outcome.labels``) and in the session
record, listed in every trace (``labels``: what the rules saw) and restored on resume from both — the
chain being the truth. Results of the browser, of MCP servers marked ``untrusted: true`` and of tools
marked so add ``untrusted``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from corral.errors import ConfigError

__all__ = ["UNTRUSTED", "add_session_labels", "check_words", "labels_added", "tool_labels"]

UNTRUSTED = "untrusted"

_WORD = re.compile(r"^[\w\-.:/]+$")


def check_words(value: Any, what: str, tool: str) -> frozenset[str]:
    """``labels`` or ``tags`` as given to a tool: a list of words. Anything else is a ``ConfigError``
    naming the tool — a bare string is refused rather than read as a list of its letters."""
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"tool {tool!r}: {what} must be a list of words, e.g. {what}=['pii'], got {value!r}")
    words = list(value)
    for word in words:
        if not isinstance(word, str) or not word:
            raise ConfigError(f"tool {tool!r}: {what} must be a list of words, e.g. {what}=['pii'], got {value!r}")
        if not _WORD.match(word):
            raise ConfigError(f"tool {tool!r}: {what}: {word!r} is not a word (letters, digits, _ - . : /)")
    return frozenset(words)


def tool_labels(options: Any, tool: str) -> tuple[frozenset[str], frozenset[str]]:
    """(labels, tags) from a tool's options: ``labels``, ``tags`` and ``untrusted=True``."""
    labels = check_words(options.get("labels"), "labels", tool)
    tags = check_words(options.get("tags"), "tags", tool)
    untrusted = options.get("untrusted", False)
    if not isinstance(untrusted, bool):
        raise ConfigError(f"tool {tool!r}: untrusted must be True or False, got {untrusted!r}")
    if untrusted:
        labels |= {UNTRUSTED}
    return labels, tags


def labels_added(traces: Iterable[Any]) -> frozenset[str]:
    """The labels a session's chain says its calls' results added (``outcome.labels``): what a resumed
    session starts with, whatever its session record says."""
    found: set[str] = set()
    for trace in traces:
        outcome = getattr(trace, "outcome", None)
        if isinstance(outcome, dict) and outcome.get("status") == "ok":
            found.update(label for label in outcome.get("labels") or () if isinstance(label, str))
    return frozenset(found)


def add_session_labels(store: Any, session_id: str, labels: Iterable[str]) -> None:
    """Keep labels a result added in the session record, for a call finished away from its ``Session``
    object (PostToolUse, a detached finish). The outcome in the chain holds them already; this is the
    record a resumed session reads first."""
    record = store.get_session(session_id)
    added = set(labels)
    if record is None or added <= set(record.get("labels") or ()):
        return
    record["labels"] = sorted(set(record.get("labels") or ()) | added)
    store.put_session(record)
