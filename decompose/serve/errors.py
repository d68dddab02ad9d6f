"""Every error the service returns is JSON, `{"error": {"message": ..., "hint": ...}}`, with its status: never a
traceback. `ApiError` is raised by the routes; the handlers here turn anything else into the same shape."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from decompose.errors import DecomposeError, InputError, ModelError, PlanError
from decompose.serve.store import StoreUnavailable

log = logging.getLogger("decompose.serve")

INTERRUPTED_MESSAGE = "interrupted: the server stopped before the answer"


class ApiError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.hint, self.headers = status, message, hint, headers


def error_body(message: str, hint: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "hint": hint}}


def error_response(
    status: int, message: str, hint: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, hint), status_code=status, headers=headers)


def decompose_error_body(exc: BaseException) -> dict[str, Any]:
    """A run's own error (the message without the hint appended, and the hint apart)."""
    if isinstance(exc, DecomposeError):
        return error_body(str(exc.args[0]) if exc.args else type(exc).__name__, exc.hint)
    if isinstance(exc, asyncio.CancelledError):
        return error_body(INTERRUPTED_MESSAGE, "send the question again")
    return error_body(
        f"internal error: {type(exc).__name__}: {exc}", "this is a bug in the server; the server log has the traceback"
    )


def api_error_of(exc: DecomposeError) -> ApiError:
    """A run that failed before anything streamed: the caller's mistake is 422, a model's failure 502."""
    body = decompose_error_body(exc)["error"]
    status = 422 if isinstance(exc, (InputError, PlanError)) else 502 if isinstance(exc, ModelError) else 500
    return ApiError(status, body["message"], body["hint"])


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.hint, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            404,
            f"no such endpoint: {request.method} {request.url.path}",
            "the endpoints are under /v1: /v1/agents, /v1/runs, /v1/conversations, /v1/chat/completions",
        )
    if exc.status_code == 405:
        return error_response(
            405,
            f"{request.method} is not allowed on {request.url.path}",
            f"use {exc.headers.get('Allow', 'another method') if exc.headers else 'another method'}",
            exc.headers,
        )
    return error_response(exc.status_code, str(exc.detail), None, exc.headers)


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """Any route whose store call found the database locked past its busy timeout or unreachable: nothing was
    stored, so the client may send again."""
    assert isinstance(exc, StoreUnavailable)
    return error_response(503, str(exc.args[0]), exc.hint, {"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(decompose_error_body(exc), status_code=500)


exception_handlers = {
    ApiError: _api_error,
    HTTPException: _http_error,
    StoreUnavailable: _store_unavailable,
    Exception: _unexpected,
}
