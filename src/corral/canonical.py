"""Canonical JSON and hashing: the one way corral turns values into bytes it signs or binds to."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return repr(value)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)

# The same encoding, made once: ``JSONEncoder.encode`` builds a new C encoder for every value, which is
# most of the cost of hashing a small argument dict (1.3 → 0.5 µs) and a quarter of sealing a trace.
# Without cycle markers: what corral hashes is JSON data, and a cycle would still fail (RecursionError).
_C_ENCODER = (
    json.encoder.c_make_encoder(None, _default, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    if json.encoder.c_make_encoder is not None
    else None
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal values always give equal text."""
    if _C_ENCODER is None or isinstance(value, str):  # the C encoder returns a bare string's text unjoined
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def sha256_hex(text: str | bytes) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return hashlib.sha256(text).hexdigest()


def canonical_sha256(value: Any) -> str:
    return sha256_hex(canonical_json(value))
