"""Time-ordered identifiers (ULID form): sortable by creation, unique across processes."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # in ASCII order, so ids sort as text
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits → two characters, one lookup
_SHIFTS = tuple(range(120, -1, -10))
_lock = threading.Lock()
_last = [0, 0]


def new_id() -> str:
    """A 26-character id: 48 bits of milliseconds then 80 random bits, monotonic within one process."""
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms = _last[0]
            rand = (_last[1] + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last[0], _last[1] = ms, rand
    value = (ms << 80) | rand  # 128 bits, as 26 characters of 5 bits (the first holds 3)
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])
