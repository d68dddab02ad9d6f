"""Server-sent events for a run: a first frame that says what runs (`run` or `turn`), then one frame per decompose
event, named by its type (`PlanFallback`, `PlanReady`, `StepStarted`, `StepFinished`, `StepFailed`, `StepSkipped`,
`Retried`, `Answered`) with `event.to_dict()` as data, an `error` frame when the run failed, and last a `result` frame
with `Result.to_dict()`. `PlanReady` carries the whole plan and the step events its changes, so a page can draw the plan
tree from the stream alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from decompose.serve.errors import decompose_error_body
from decompose.serve.running import Ended, RunFeed

KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing a quiet stream
PING = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer the stream


def frame(name: str | None, data: Any) -> bytes:
    """One server-sent event; without a name it is a bare `data:` line, as OpenAI's chunks are."""
    named = f"event: {name}\n" if name else ""
    return f"{named}data: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


async def run_frames(feed: RunFeed, first: tuple[str, dict[str, Any]]) -> AsyncIterator[bytes]:
    yield frame(*first)
    async for item in feed.items(KEEPALIVE_SECONDS):
        if item is None:
            yield PING
        elif isinstance(item, Ended):
            if item.error is not None:
                yield frame("error", decompose_error_body(item.error))
            yield frame("result", item.result.to_dict())
        else:
            yield frame(item.type, item.to_dict())


def event_stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
