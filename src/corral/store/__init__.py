"""Where governance keeps what it must not forget: sessions, the budget ledger, approvals,
the transaction log and the hash-chained audit records. ``open_store(url)`` picks one."""

from corral.store.protocol import (
    Append,
    LogStep,
    Op,
    PutTransaction,
    Reserve,
    Settle,
    Store,
    UpdateTransaction,
    open_store,
)

__all__ = [
    "Append",
    "LogStep",
    "Op",
    "PutTransaction",
    "Reserve",
    "Settle",
    "Store",
    "UpdateTransaction",
    "open_store",
]
