"""Where governance keeps what it must not forget: sessions, the budget ledger, approvals,
the transaction log and the hash-chained audit records. ``open_store(url)`` picks one."""

from corral.store.protocol import Store, open_store

__all__ = ["Store", "open_store"]
