"""Group commit for the audit chain: records that need not be durable at once wait in memory and are
written many to a transaction, by a background thread, before any durable record, and at exit."""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from corral.errors import ConfigError
from corral.logs import get_logger

log = get_logger("corral.store")

T = TypeVar("T")


class Sealed(Protocol):
    """What the group commit writes: an item that takes its place in the chain once its write commits."""

    def apply(self) -> None: ...


Item = TypeVar("Item", bound=Sealed)

_OPEN_BUFFERS: weakref.WeakSet[GroupCommit] = weakref.WeakSet()


class GroupCommit(Generic[Item]):
    """Group commit for the audit chain: read records wait in memory and are written in batches.

    A batch is one transaction: written when it reaches ``size`` records, ``interval`` seconds after its
    first record (a background thread), before any durable record of this process (so chain order is
    call order within a process), and on ``flush()`` and at exit. A crash loses at most the buffered
    read records — never a durable one. ``write(batch)`` is the store's one transaction.

    Lock order, for every chain write of the process: the chain lock, then the database's write lock
    (inside ``write``). A store's ``batch`` that appends takes them in the same order (``write_with``),
    so it and the flusher never wait on each other in a cycle.
    """

    IDLE_SECONDS = 2.0  # the flusher thread ends after this long with nothing to do; the next record restarts it

    def __init__(
        self, write: Callable[[list[Item]], None], *, size: int, interval: float, name: str
    ) -> None:
        if size < 1 or interval < 0:
            raise ConfigError(f"group commit needs size ≥ 1 and interval ≥ 0, got {size}, {interval}")
        self._write = write
        self.size = size
        self.interval = interval
        self.name = name
        self._reset()
        _OPEN_BUFFERS.add(self)

    def _reset(self) -> None:
        # every chain write of this process goes through _chain_lock: an in-flight batch is never overtaken
        self._chain_lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[Item] = []
        self._first = 0.0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failures = 0

    def after_fork(self) -> None:
        """In a forked child: the parent writes its own buffer; the child starts empty, with fresh locks."""
        self._reset()

    def buffer(self, item: Item) -> None:
        with self._cond:
            self._pending.append(item)
            count = len(self._pending)
            if count == 1:
                self._first = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"corral-group-commit[{self.name}]",
                                                daemon=True)
                self._thread.start()
            if count == 1 or count >= self.size:
                self._cond.notify_all()
        if count >= self.size * 8:  # the flusher is failing or behind: the caller writes, and hears why not
            self.flush()

    def write(self, items: Sequence[Item]) -> None:
        """Write everything buffered, then ``items``, in one transaction; on failure nothing is lost."""
        self.write_with(items, self._write)

    def write_with(self, items: Sequence[Item], write: Callable[[list[Item]], T]) -> T | None:
        """``write`` with another writer: ``write(batch)`` gets everything buffered, then ``items``, and
        writes them in one transaction of its own — with whatever else belongs in it (a store's ``batch``).

        The records are sealed only if it returns; if it raises, nothing of it was written and the
        buffered records go back in front of the buffer. Returns what ``write`` returned (None when
        there was nothing to write).
        """
        with self._chain_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            batch.extend(items)
            if not batch:
                return None
            try:
                result = write(batch)
            except BaseException:
                self._failures += 1
                given = {id(item) for item in items}
                with self._cond:  # the buffered records go back, in front of any that came meanwhile
                    self._pending[:0] = [b for b in batch if id(b) not in given]
                    if self._pending:
                        self._first = time.monotonic()
                raise
            for item in batch:
                item.apply()
            self._failures = 0
            return result

    def flush(self) -> None:
        self.write(())

    def writable(self) -> bool:
        """False while a write has failed and the store has not answered since: it tries once more now,
        writing what is buffered. Governance blocks every call, reads too, while this is False (§9)."""
        if not self._failures:
            return True
        try:
            self.flush()
        except Exception:
            return False
        return True

    @property
    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Stop the flusher and write what is buffered. The store stays usable; a later record restarts it."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self.interval * 4))
        with self._cond:
            self._stopping = False
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                idle_until = time.monotonic() + self.IDLE_SECONDS
                while not self._pending and not self._stopping:
                    remaining = idle_until - time.monotonic()
                    if remaining <= 0:
                        self._thread = None
                        return
                    self._cond.wait(remaining)
                while self._pending and len(self._pending) < self.size and not self._stopping:
                    remaining = self._first + self.interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopping:
                    self._thread = None
                    return
            try:
                self.flush()
            except Exception as exc:
                log.warning("corral: could not write %d buffered audit record(s) to %s (attempt %d): %s",
                            self.pending_count, self.name, self._failures, exc)
                with self._cond:  # back off, but wake at once for close()
                    self._cond.wait(min(5.0, self.interval * 2 ** min(self._failures, 6) + 0.05))


@atexit.register
def flush_open_buffers() -> None:
    """Write every open buffer's records now: at exit, and before a process ends without its teardown."""
    for buffer in list(_OPEN_BUFFERS):
        try:
            buffer.flush()
        except Exception as exc:  # nothing left to raise to
            log.error("corral: at exit, %d buffered audit record(s) for %s were lost: %s",
                      buffer.pending_count, buffer.name, exc)


def _after_fork_in_child() -> None:
    for buffer in list(_OPEN_BUFFERS):
        buffer.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
