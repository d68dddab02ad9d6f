"""A server span per HTTP request, when tracing is on: a run started by the request is its child, and a client
that sends a W3C `traceparent` header gets the request (and the run) in its own trace. Imported only when
tracing is on."""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestSpans:
    """ASGI middleware: each HTTP request in a span named `METHOD ROUTE` (HTTP semantic conventions), current while
    the request is handled, streamed responses included."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer):
        self.app, self.tracer = app, tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        with self.tracer.start_as_current_span(
            method, context=propagate.extract(headers), kind=SpanKind.SERVER, attributes=attributes
        ) as span:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                path = getattr(scope.get("route"), "path", None)  # the matched route, set by Starlette's router
                if path:
                    span.update_name(f"{method} {path}")
                    span.set_attribute("http.route", path)
