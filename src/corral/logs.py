"""corral's loggers, made when first used.

``logging`` costs a per-call process (the Claude Code hook) several milliseconds to import, and a hook
that has nothing to warn about never needs it: ``get_logger(name)`` returns a stand-in that loads
``logging`` and the real logger on its first call.
"""

from __future__ import annotations

from typing import Any


class LazyLogger:
    """``logging.getLogger(name)``, fetched when a method of it is first used."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return getattr(self._logger, attribute)


def get_logger(name: str) -> Any:
    """The logger ``name`` (``corral``, ``corral.store``), without importing ``logging`` until it logs."""
    return LazyLogger(name)
