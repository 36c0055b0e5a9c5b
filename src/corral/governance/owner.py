"""Who owns an open transaction: a process, named so that a reused pid is never mistaken for it.

An owner is ``{"host", "pid", "start"}``, where ``start`` is the process's start time in clock ticks
since boot, with the boot id. Recovery rolls back a transaction whose owner no longer exists (or whose
lease has lapsed); an owner on another host is judged by its lease alone.
"""

from __future__ import annotations

import os
from typing import Any

_BOOT_ID: str | None = None


def _boot_id() -> str:
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT_ID = f.read().strip()
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, with the boot id): a reused pid differs here."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


_OWNER: dict[str, Any] | None = None


def host_name() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it (without loading ``socket`` where
    ``os.uname`` answers: a per-call hook pays for every module it loads)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return uname().nodename
    import socket

    return socket.gethostname()


def owner_identity() -> dict[str, Any]:
    global _OWNER
    pid = os.getpid()
    if _OWNER is None or _OWNER["pid"] != pid:
        _OWNER = {"host": host_name(), "pid": pid, "start": process_start(pid)}
    return dict(_OWNER)


def owner_alive(owner: dict[str, Any] | None) -> bool:
    """True when the owning process still runs. Another host's owner is judged by its lease instead."""
    if not owner:
        return False
    if owner.get("host") != host_name():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    current = process_start(pid)
    if current is None:
        return False
    return owner.get("start") is None or current == owner.get("start")
