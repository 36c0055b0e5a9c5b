"""The per-session hash chain: ``hash = sha256(prev + canonical record)``. Tampering breaks a link."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.governance.canonical import canonical_json, sha256_hex

GENESIS = ""


def link(prev: str, record: Mapping[str, Any]) -> str:
    """The hash of a record chained after ``prev``; ``prev`` and ``hash`` themselves are not hashed twice."""
    body = {k: v for k, v in record.items() if k not in ("prev", "hash")}
    return sha256_hex(prev + canonical_json(body))


def seal(prev: str, record: dict[str, Any]) -> dict[str, Any]:
    record["prev"] = prev
    record["hash"] = link(prev, record)
    return record


def verify_chain(records: list[Mapping[str, Any]], head: str | None = None) -> tuple[bool, int | None, str]:
    """Check a session's records in order. Returns (ok, index of the first bad record, why)."""
    prev = GENESIS
    for i, record in enumerate(records):
        if record.get("prev") != prev:
            return False, i, "its prev does not name the record before it (deleted or reordered)"
        if record.get("hash") != link(prev, record):
            return False, i, "its hash does not match its content (edited)"
        prev = record["hash"]
    if head is not None and head != prev:
        return False, len(records), "the chain ends before the stored head (truncated)"
    return True, None, "intact"
