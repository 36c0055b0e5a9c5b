"""The per-session hash chain: ``hash = sha256(prev + canonical record)``. Tampering breaks a link."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.canonical import canonical_json, sha256_hex

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


def audit_key() -> bytes | None:
    """The HMAC key for heads, from ``CORRAL_AUDIT_KEY`` (unset: heads are not signed)."""
    import os

    key = os.environ.get("CORRAL_AUDIT_KEY")
    return key.encode("utf-8") if key else None


def sign_head(key: bytes, session_id: str, head: str) -> str:
    import hashlib
    import hmac

    return hmac.new(key, f"{session_id}:{head}".encode(), hashlib.sha256).hexdigest()


def verify_session(store: Any, session_id: str) -> dict[str, Any]:
    """Verify one session's chain against its separately kept head (and the head's HMAC when keyed)."""
    import hmac

    records = store.records(session_id)
    head = store.head(session_id)
    ok, bad, why = verify_chain(records, head)
    if ok and head is None and records:
        ok, bad, why = False, len(records) - 1, "the store keeps no head for this chain"
    key = audit_key()
    if ok and key is not None and head is not None:
        signature = getattr(store, "head_signature", lambda sid: None)(session_id)
        if signature is None:
            ok, bad, why = False, None, "the head is not signed, but CORRAL_AUDIT_KEY is set"
        elif not hmac.compare_digest(signature, sign_head(key, session_id, head)):
            ok, bad, why = False, None, "the head's HMAC does not match (head replaced, or another key)"
    bad_record = records[bad]["id"] if bad is not None and bad < len(records) else None
    return {"session": session_id, "ok": ok, "records": len(records), "bad_index": bad, "bad_record": bad_record,
            "why": why}
