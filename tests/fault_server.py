"""A real OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on cue (a test helper).

Tests queue behaviours; each request to /v1/chat/completions takes the next one, or `default` when
the queue is empty, and every request is recorded (arrival time, body) so tests can count attempts
and measure the gaps between them at the server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Behaviour:
    kind: str  # "ok" | "status" | "hang" | "reset" | "malformed" | "html" | "no_choices"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # "ok": the message dict (default: content "ok"); "status": the JSON body
    seconds: float = 30.0  # "hang": how long before answering anyway


def ok(content: str = "ok", **message: Any) -> Behaviour:
    return Behaviour("ok", body={"role": "assistant", "content": content, **message})


def status(code: int, headers: dict[str, str] | None = None, message: str = "") -> Behaviour:
    body = {"error": {"message": message or f"scripted {code}", "type": "test", "code": code}}
    return Behaviour("status", status=code, headers=headers or {}, body=body)


HANG = Behaviour("hang")
RESET = Behaviour("reset")
MALFORMED = Behaviour("malformed")
HTML_PAGE = Behaviour("html")  # a 200 with a proxy's login page
NO_CHOICES = Behaviour("no_choices")  # a 200 with a JSON object that is not a completion


@dataclass(frozen=True)
class Hit:
    at: float  # time.time() on arrival
    body: dict[str, Any]


def _completion(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fault",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def _chunk(delta: dict[str, Any], usage: dict[str, int] | None = None) -> bytes:
    choices = [{"index": 0, "delta": delta, "finish_reason": None}] if delta else []
    data = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fault",
        "choices": choices,
        "usage": usage,
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def _reset(request: Request) -> None:
    """Close the client's socket with an RST (SO_LINGER 0), as a crashed proxy would."""
    transport = request.scope["fault.transport"]
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultServer:
    def __init__(self) -> None:
        self.script: deque[Behaviour] = deque()
        self.default: Behaviour = ok()
        # When set, picks the behaviour of each request the script does not (a soak run's random faults).
        self.choose: Callable[[dict[str, Any]], Behaviour] | None = None
        self.keep_hits = True  # a long soak run counts requests instead of keeping each one
        self.requests = 0
        self.in_flight = self.peak_in_flight = 0
        self.hits: list[Hit] = []
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

        async def asgi(scope: dict, receive: Any, send: Any) -> None:
            # uvicorn's `send` is a bound method of the connection's cycle: keep its transport
            # so a behaviour can reset the TCP connection.
            if scope["type"] == "http":
                scope["fault.transport"] = send.__self__.transport
            await app(scope, receive, send)

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(asgi, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def queue(self, *behaviours: Behaviour) -> None:
        self.script.extend(behaviours)

    def reset(self) -> None:
        self.script.clear()
        self.hits.clear()
        self.default = ok()

    def gaps(self) -> list[float]:
        return [b.at - a.at for a, b in zip(self.hits, self.hits[1:], strict=False)]

    def __enter__(self) -> FaultServer:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    async def _chat(self, request: Request) -> Response:
        self.in_flight += 1  # one event loop thread: no lock needed
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        body = await request.json()
        self.requests += 1
        if self.keep_hits:
            self.hits.append(Hit(time.time(), body))
        if self.script:
            b = self.script.popleft()
        else:
            b = self.choose(body) if self.choose is not None else self.default
        if b.kind == "status":
            return JSONResponse(b.body, status_code=b.status, headers=b.headers)
        if b.kind == "hang":
            deadline = time.monotonic() + b.seconds
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(0.05)
            return JSONResponse(_completion({"role": "assistant", "content": "late"}))
        if b.kind == "reset":
            _reset(request)
            return Response(status_code=204)  # never reaches the client
        if b.kind == "malformed":
            return Response('{"id": "chatcmpl-fault", "choices": [', media_type="application/json")
        if b.kind == "html":
            return Response(
                "<html><body><h1>Sign in to continue</h1><form>...</form></body></html>", media_type="text/html"
            )
        if b.kind == "no_choices":
            return JSONResponse({"status": "queued", "detail": "try again"})
        if body.get("stream"):
            return StreamingResponse(self._stream(request, b), media_type="text/event-stream")
        return JSONResponse(_completion(b.body))

    async def _stream(self, request: Request, b: Behaviour):  # type: ignore[no-untyped-def]
        words = ["one", " two", " three"]
        yield _chunk({"role": "assistant", "content": words[0]})
        for word in words[1:]:
            yield _chunk({"content": word})
        yield _chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        yield b"data: [DONE]\n\n"
