"""Time-ordered identifiers (ULID form): sortable by creation, unique across processes."""

from __future__ import annotations

import os
import random
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # in ASCII order, so ids sort as text
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits → two characters, one lookup
_RANDOM_BITS = (1 << 80) - 1
_lock = threading.Lock()
_last = [0, 0]
_prefix: tuple[int, str] = (-1, "")  # the latest millisecond and its ten characters
# The random part comes from a generator seeded once per process from the operating system (and again
# in a forked child): as unique across processes as os.urandom per id, without a system call per id.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def new_id() -> str:
    """A 26-character id: 48 bits of milliseconds then 80 random bits, monotonic within one process."""
    global _prefix
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms = _last[0]
            rand = (_last[1] + 1) & _RANDOM_BITS
        else:
            rand = _random.getrandbits(80)
        _last[0], _last[1] = ms, rand
        prefix = _prefix
        if prefix[0] != ms:  # the first ten characters are the millisecond: spelled once per millisecond
            pairs = _PAIRS
            prefix = _prefix = (ms, pairs[ms >> 40 & 1023] + pairs[ms >> 30 & 1023] + pairs[ms >> 20 & 1023]
                                + pairs[ms >> 10 & 1023] + pairs[ms & 1023])
    p = _PAIRS
    return (prefix[1] + p[rand >> 70] + p[rand >> 60 & 1023] + p[rand >> 50 & 1023] + p[rand >> 40 & 1023]
            + p[rand >> 30 & 1023] + p[rand >> 20 & 1023] + p[rand >> 10 & 1023] + p[rand & 1023])


def id_parts(value: str) -> tuple[int, int]:
    """``(milliseconds, random part)`` of an id made by ``new_id``."""
    number = 0
    for char in value:
        number = number * 32 + _CROCKFORD.index(char)
    return number >> 80, number & _RANDOM_BITS
