"""Which model-call failures are the transport's, and how to say so.

Transient (worth retrying): HTTP 408/409/429/5xx, timeouts, refused or reset connections, a truncated or malformed
response body. Permanent: any other 4xx (401/403/404 refuse access for good). A final failure becomes one line
naming the endpoint and status, with the fix as its hint (`describe_error`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import sys
import time
from typing import Any

import httpx

from decompose.errors import ModelAccessError, ModelError

_TRANSIENT_STATUS = {408, 409, 429}
ACCESS_REFUSED = {401, 403, 404}  # the key, a permission, the model name or the URL: no call can succeed

# openai>=3 runs on httpx2 (an API-identical fork of httpx); other clients still use httpx.
try:
    import httpx2

    _HTTPX: tuple = (httpx, httpx2)
except ImportError:  # pragma: no cover - openai<3
    _HTTPX = (httpx,)
_HTTP_STATUS_ERRORS = tuple(m.HTTPStatusError for m in _HTTPX)
_HTTP_ERRORS = tuple(m.HTTPError for m in _HTTPX)
_TRANSPORT_ERRORS = tuple(m.TransportError for m in _HTTPX)
_TIMEOUT_ERRORS = tuple(m.TimeoutException for m in _HTTPX)
_CONNECT_ERRORS = tuple(m.ConnectError for m in _HTTPX)


class _NeverRaised(Exception):
    """Stands in for an openai error class while openai is not imported: none of its errors can occur then."""


def _openai(name: str) -> type[Any]:  # an openai exception class, when openai is loaded
    # Looked up lazily: importing openai costs ~1 s, which local and scripted models should not pay.
    module = sys.modules.get("openai")
    return getattr(module, name) if module is not None else _NeverRaised


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, _openai("APIStatusError")):
        return exc.status_code
    if isinstance(exc, _HTTP_STATUS_ERRORS):
        return exc.response.status_code
    return None


class MalformedResponse(Exception):
    """A 200 from an OpenAI-compatible endpoint whose body is not a chat completion (a proxy's HTML login page,
    an object without choices): retried like a garbled body, then reported with what came back."""

    def __init__(self, url: str, body: object):
        preview = " ".join(str(body).split())
        self.url, self.preview = url, preview[:120] + ("…" if len(preview) > 120 else "")
        super().__init__(f"not a chat completion: {self.preview!r}")


def _malformed(exc: BaseException) -> MalformedResponse | None:
    return next((e for e in _chain(exc) if isinstance(e, MalformedResponse)), None)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying; a 4xx other than 408/409/429 never is."""
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    return isinstance(
        exc,
        (
            _openai("APIConnectionError"),  # includes APITimeoutError
            *_TRANSPORT_ERRORS,  # timeouts, refused, reset, protocol errors
            asyncio.TimeoutError,
            ConnectionError,
            json.JSONDecodeError,  # a 200 with a truncated or garbled body
            MalformedResponse,
        ),
    )


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a 429/503 response asks for (`retry-after-ms`, or `Retry-After` in seconds or as
    an HTTP date), or None when it asks for none."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes: langchain-openai wraps the SDK's error, which wraps httpx's."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    return chain


def _endpoint(exc: BaseException) -> str | None:
    for e in _chain(exc):
        if isinstance(e, MalformedResponse):
            return e.url
        try:
            url = e.request.url  # type: ignore[attr-defined]  # httpx's and openai's errors; others fall through
        except (AttributeError, RuntimeError):  # httpx raises RuntimeError when unset
            continue
        return str(url).split("?")[0]
    return None


def _server_detail(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("message", body)
    return " ".join(str(body).split())[:200] if body else ""


def error_reason(exc: BaseException) -> str:
    """A few words for why a call failed, for Retried events and logs ("HTTP 429", "timeout")."""
    status = _status(exc)
    if status is not None:
        return f"HTTP {status}"
    if _malformed(exc):  # raised at the HTTP layer, it reaches us wrapped as a connection error
        return "malformed response"
    if isinstance(exc, (_openai("APITimeoutError"), *_TIMEOUT_ERRORS, asyncio.TimeoutError)):
        return "timeout"
    if any(isinstance(e, (*_CONNECT_ERRORS, ConnectionRefusedError)) for e in _chain(exc)):
        return "connection refused"
    if isinstance(exc, (_openai("APIConnectionError"), *_TRANSPORT_ERRORS, ConnectionError)):
        return "connection lost"
    if isinstance(exc, (json.JSONDecodeError, _openai("APIResponseValidationError"))):
        return "malformed response"
    return type(exc).__name__


def _fix(reason: str, status: int | None) -> str:
    if status in (401, 403):
        return "check OPENAI_API_KEY (and that it may use this model)"
    if status == 404:
        return "check the model name, and that the base URL ends in /v1 (OPENAI_BASE_URL)"
    if status == 429:
        return "rate limited: lower max_concurrency or raise RetryPolicy.max_total"
    if status is not None and status >= 500:
        return "the server failed: retry later or configure a fallback model"
    if status is not None:
        return "the server rejected the request: check the model's parameters"
    if reason == "connection refused":
        return "is the server running? check OPENAI_BASE_URL"
    if reason == "malformed response":
        return (
            "is the base URL an OpenAI-compatible API (ending in /v1)? something else answered (a proxy, a login page)"
        )
    if reason == "timeout":
        return "the server is slow or stuck: raise the model's timeout or RetryPolicy.max_total"
    return "the server or the network is unreliable: retry later or configure a fallback model"


def describe_error(exc: BaseException, attempts: int = 1, endpoint: str | None = None) -> ModelError:
    """Turn a final model-call failure into a one-line `ModelError` naming endpoint, status, fix. `endpoint` is
    named when the error itself carries no request (a body that would not parse)."""
    reason, status, url = error_reason(exc), _status(exc), _endpoint(exc) or endpoint or "the model server"
    message = f"could not reach {url}" if reason == "connection refused" else f"{reason} from {url}"
    detail = _server_detail(exc) if status is not None else ""
    malformed = _malformed(exc)
    if malformed is not None:
        detail = f"got {malformed.preview!r} instead of a chat completion"
    if detail:
        message += f": {detail}"
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    kind = ModelAccessError if status in ACCESS_REFUSED else ModelError
    return kind(message, hint=_fix(reason, status))


def is_model_failure(exc: BaseException) -> bool:
    """True when the server or the way to it failed, as opposed to a bug or a reply that would not parse."""
    return is_transient(exc) or isinstance(exc, (_openai("APIError"), *_HTTP_ERRORS))
