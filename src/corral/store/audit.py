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
    """Verify one session's chain against its separately kept head (and the head's HMAC when keyed).

    A session whose chain and head are gone is tampering, not an empty session: every session's chain
    exists, empty, from the moment the session does. A chain whose session record is gone is tampering
    too.
    """
    import hmac

    records = store.records(session_id)
    kept = store.chain_head(session_id)
    exists = store.get_session(session_id) is not None
    bad: int | None = None
    if not exists and (records or kept is not None):
        ok, why = False, "a chain without its session: the session's record was deleted"
    elif exists and kept is None:
        ok, why = False, (f"the session's chain and its head are missing: {len(records)} record(s) and no head "
                          "(deleted)" if records else "the session's audit chain and its head are missing (deleted)")
        bad = len(records) - 1 if records else None
    elif kept is None:
        ok, why = False, "no such session and no chain"
    else:
        count, head, signature = kept
        ok, bad, why = verify_chain(records, head if count else GENESIS)
        if ok and count != len(records):
            ok, bad, why = False, min(count, len(records)), (
                f"the stored head counts {count} record(s), the chain has {len(records)} (deleted or added)")
        key = audit_key()
        if ok and key is not None:
            if signature is None:
                ok, why = False, "the head is not signed, but CORRAL_AUDIT_KEY is set"
            elif not hmac.compare_digest(signature, sign_head(key, session_id, head if count else GENESIS)):
                ok, why = False, "the head's HMAC does not match (head replaced, or another key)"
    bad_record = records[bad]["id"] if bad is not None and 0 <= bad < len(records) else None
    return {"session": session_id, "ok": ok, "records": len(records), "bad_index": bad, "bad_record": bad_record,
            "why": why}


def verify_store(store: Any, session: str | None = None) -> list[dict[str, Any]]:
    """``verify_session`` for one session, or for every session and every chain in the store — a chain
    whose session was deleted included. A session that cannot be read is reported, never a crash."""
    if session is not None:
        ids = [session]
    else:
        ids = sorted({s["id"] for s in store.list_sessions()} | set(store.chain_ids()))
    results = []
    for sid in ids:
        try:
            results.append(verify_session(store, sid))
        except Exception as exc:  # a damaged store is reported, never a crash
            results.append({"session": sid, "ok": False, "records": None, "bad_index": None, "bad_record": None,
                            "why": f"could not be read: {type(exc).__name__}: {exc}"})
    return results
