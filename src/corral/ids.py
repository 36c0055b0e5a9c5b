"""Time-ordered identifiers (ULID form): sortable by creation, unique across processes."""

from __future__ import annotations

import os
import random
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # in ASCII order, so ids sort as text
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits → two characters, one lookup
_SHIFTS = tuple(range(120, -1, -10))
_lock = threading.Lock()
_last = [0, 0]
# The random part comes from a generator seeded once per process from the operating system (and again
# in a forked child): as unique across processes as os.urandom per id, without a system call per id.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def new_id() -> str:
    """A 26-character id: 48 bits of milliseconds then 80 random bits, monotonic within one process."""
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms = _last[0]
            rand = (_last[1] + 1) & ((1 << 80) - 1)
        else:
            rand = _random.getrandbits(80)
        _last[0], _last[1] = ms, rand
    value = (ms << 80) | rand  # 128 bits, as 26 characters of 5 bits (the first holds 3)
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])
