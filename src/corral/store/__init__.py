"""Where governance keeps what it must not forget: sessions, the budget ledger, approvals,
the transaction log and the hash-chained audit records. ``open_store(url)`` picks one."""

from __future__ import annotations

from typing import Any

from corral.errors import ConfigError
from corral.store.protocol import (
    Append,
    CloseCall,
    LogStep,
    Op,
    OpenCall,
    PutTransaction,
    Reserve,
    Settle,
    Store,
    UpdateTransaction,
)


def open_store(url: Any = None) -> Store:
    """``None`` or ``"memory://"`` → in memory. Other URLs are recognised by scheme.

    Each store's module is imported only when its scheme is asked for: a process that uses SQLite never
    loads the PostgreSQL driver.
    """
    if url is None or url == "memory://" or url == "memory":
        from corral.store.memory import MemoryStore

        return MemoryStore()
    if isinstance(url, Store):
        return url
    if not isinstance(url, str):
        raise ConfigError(f"store must be a URL string or a Store, got {url!r}")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from corral.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from corral.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(
        f"store URL {url!r}: unknown scheme {scheme or '(none)'!r}; "
        "expected sqlite:///path.db, postgresql://user@host/db or memory://"
    )


__all__ = [
    "Append",
    "CloseCall",
    "LogStep",
    "Op",
    "OpenCall",
    "PutTransaction",
    "Reserve",
    "Settle",
    "Store",
    "UpdateTransaction",
    "open_store",
]
