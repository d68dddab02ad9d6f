"""`decompose serve`'s log handler follows `sys.stderr` as it is when a record is logged (serve/logs.py)."""

from __future__ import annotations

import io
import logging
import sys

from decompose.serve.logs import configure


def test_the_log_goes_to_the_current_stderr_and_never_to_a_closed_one(monkeypatch):
    loggers = [logging.getLogger(name) for name in ("decompose", "uvicorn")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        configure("info", "text")
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        logging.getLogger("decompose.serve").info("turn stored")
        assert "turn stored" in first.getvalue()
        first.close()  # a test's captured stream, closed when it ended
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("decompose.serve").warning("after the close")
        assert "after the close" in second.getvalue() and "Logging error" not in second.getvalue()
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
