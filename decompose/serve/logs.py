"""What the service logs, through the standard `logging` module: one access line per HTTP request (logger
`decompose.serve.access`: method, path, status, duration, written when the response has been sent, a stream
included) and one line per run (logger `decompose.serve.runs`: run id, agent, status, duration, tokens, model
calls). Each line's fields are also on its record (`record.method`, `record.run_id`, ...), so any handler can use
them; `configure` writes them as text or as one JSON object a line for `decompose serve`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decompose.result import Result

ACCESS = logging.getLogger("decompose.serve.access")
RUNS = logging.getLogger("decompose.serve.runs")
SERVER = logging.getLogger("decompose.serve")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The fields a JSON line carries beside time, level, logger and message, when the record has them.
FIELDS = (
    "method",
    "path",
    "status",
    "duration_s",
    "client",
    "run_id",
    "agent",
    "input_tokens",
    "output_tokens",
    "model_calls",
    "error",
)


class AccessLog:
    """ASGI middleware: one `decompose.serve.access` line per HTTP request once its response is sent."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ACCESS.isEnabledFor(logging.INFO):
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), 500  # an app that raises before it answers: the server sends 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            duration = round(time.monotonic() - started, 3)
            client = scope.get("client")
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_s": duration,
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
            ACCESS.info("%s %s %s %.3fs", scope["method"], scope["path"], status, duration, extra=fields)


def log_run(run_id: str, agent: str, result: Result, error: BaseException | None, duration: float) -> None:
    """One `decompose.serve.runs` line for a run that ended: answered, failed or interrupted."""
    if isinstance(error, asyncio.CancelledError):
        status = "interrupted"
    else:
        status = "answered" if result.answer is not None and error is None else "failed"
    usage = result.usage
    fields = {
        "run_id": run_id,
        "agent": agent,
        "status": status,
        "duration_s": round(duration, 3),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "model_calls": usage.model_calls,
        "error": None if status == "answered" else str(error or result.error),
    }
    RUNS.log(
        logging.INFO if status == "answered" else logging.WARNING,
        "run %s agent=%s status=%s duration=%.3fs tokens=%d/%d calls=%d",
        run_id,
        agent,
        status,
        duration,
        usage.input_tokens,
        usage.output_tokens,
        usage.model_calls,
        extra=fields,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, the record's known fields, and the
    traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is logged, not the stream it was when configured: a
    replaced stderr (a test's capture, since closed) is never written to."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "info", fmt: str = "text") -> None:
    """`decompose serve`'s logging: the `decompose` and `uvicorn` loggers to stderr at `level`, as `fmt` ("text"
    or "json")."""
    handler = _CurrentStderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for name in ("decompose", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
