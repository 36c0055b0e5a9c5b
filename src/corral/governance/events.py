"""What the kernel tells its listeners, as typed events (``gov.subscribe(listener)``).

A listener is called with one event at a time, in the thread that made the call, after the record it
describes is written. Live views (the harness's, the server's event stream), compatibility layers and
tests listen here instead of wrapping the store. A listener that raises is logged and ignored: an
observer cannot change a decision.
"""

from __future__ import annotations

from corral.governance.traces import Trace
from corral.struct import struct


@struct(frozen=True, slots=True)
class CallDecided:
    """A call was allowed (allowed, flagged or approved) and its decision recorded; it is about to run."""

    trace: Trace


@struct(frozen=True, slots=True)
class CallRefused:
    """A call was refused: blocked, denied, pending approval, or refused by a fault inside governance."""

    trace: Trace


@struct(frozen=True, slots=True)
class CallFinished:
    """A call ran (or failed, or was cancelled); ``trace.outcome`` says how."""

    trace: Trace


Event = CallDecided | CallRefused | CallFinished
