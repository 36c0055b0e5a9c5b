"""The store protocol: the small surface the kernel needs, so stores plug in without kernel changes.

Records are plain JSON-able dicts. Every method is atomic on its own; ``reserve`` is atomic across
every scope it names (all fit, or nothing is reserved).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from corral.errors import ConfigError


@runtime_checkable
class Store(Protocol):
    url: str

    # sessions: {"id", "agent", "principal", "roles", "phase", "plan", "created", ...}
    def put_session(self, record: dict[str, Any]) -> None: ...
    def get_session(self, session_id: str) -> dict[str, Any] | None: ...
    def list_sessions(self, agent: str | None = None) -> list[dict[str, Any]]: ...

    # the audit chain, per session; the store sets "prev" and "hash"
    def append(self, session_id: str, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]: ...
    def records(self, session_id: str) -> list[dict[str, Any]]: ...
    def head(self, session_id: str) -> str | None: ...
    def flush(self) -> None: ...

    # the budget ledger: scope keys like "session:01J…", "agent:refund-desk"
    def reserve(
        self, scopes: Sequence[tuple[str, Decimal]], amount: Decimal, expires_at: datetime
    ) -> str | None: ...
    def settle(self, reservation_id: str, actual: Decimal) -> None: ...
    def release(self, reservation_id: str) -> None: ...
    def usage(self, scope_keys: Sequence[str]) -> list[tuple[Decimal, Decimal]]: ...
    def release_expired(self, now: datetime) -> int: ...

    # approvals: {"id", "binding", "session", "tool", "args", "status", "expires", ...}
    def put_approval(self, record: dict[str, Any]) -> None: ...
    def get_approval(self, approval_id: str) -> dict[str, Any] | None: ...
    def find_approvals(
        self, *, binding: str | None = None, session: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]: ...
    def resolve_approval(self, approval_id: str, expect: str, fields: dict[str, Any]) -> bool: ...

    # the transaction log
    def put_transaction(self, record: dict[str, Any]) -> None: ...
    def update_transaction(self, tx_id: str, fields: dict[str, Any]) -> None: ...
    def get_transaction(self, tx_id: str) -> dict[str, Any] | None: ...
    def transactions(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    def log_step(self, tx_id: str, entry: dict[str, Any]) -> None: ...
    def steps(self, tx_id: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def open_store(url: Any = None) -> Store:
    """``None`` or ``"memory://"`` → in memory. Other URLs are recognised by scheme."""
    if url is None or url == "memory://" or url == "memory":
        from corral.store.memory import MemoryStore

        return MemoryStore()
    if isinstance(url, Store):
        return url
    if not isinstance(url, str):
        raise ConfigError(f"store must be a URL string or a Store, got {url!r}")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from corral.store.sqlite import SQLiteStore  # type: ignore[import-not-found]

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from corral.store.postgres import PostgresStore  # type: ignore[import-not-found]

        return PostgresStore(url)
    raise ConfigError(
        f"store URL {url!r}: unknown scheme {scheme or '(none)'!r}; "
        "expected sqlite:///path.db, postgresql://user@host/db or memory://"
    )
