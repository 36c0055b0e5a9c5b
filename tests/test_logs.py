"""corral's loggers load logging only when they log, and then log as logging's own loggers do."""

from __future__ import annotations

import logging
import subprocess
import sys

from corral.logs import get_logger


def test_a_lazy_logger_logs_through_the_named_logger(caplog) -> None:
    log = get_logger("corral.store")
    with caplog.at_level(logging.WARNING, logger="corral.store"):
        log.warning("corral: %s could not switch to WAL", "db")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("corral.store", "corral: db could not switch to WAL")]
    assert log.isEnabledFor(logging.WARNING)


def test_the_kernel_and_the_sqlite_store_import_without_logging() -> None:
    code = "import sys, corral.governance.governor, corral.store.sqlite; print('logging' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
