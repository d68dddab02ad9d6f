"""Server-sent events for a run: a first frame that says what runs (`run` or `turn`), then one frame per decompose
event, named by its type (`PlanFallback`, `PlanReady`, `StepStarted`, `StepFinished`, `StepFailed`, `StepSkipped`,
`Retried`, `Answered`) with `event.to_dict()` as data (`Event.from_dict` reads it back), an `error` frame when the
run failed, and last a `result` frame with `Result.to_dict()`.

After each event that changes a step, a `state` frame carries every step's state as the run has it
(`RunState.to_dict()`: status, answer, attempts, elapsed, ..., and the question with answered references
resolved): the stream folds its events with `run_state.apply`, the engine's own transition function, so the page
draws that state and never works out a step's next state itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from decompose.run_state import RunState, apply
from decompose.serve.errors import decompose_error_body
from decompose.serve.running import AnswerPiece, Ended, RunFeed

KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing a quiet stream
PING = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer the stream


def frame(name: str | None, data: Any) -> bytes:
    """One server-sent event; without a name it is a bare `data:` line, as OpenAI's chunks are."""
    named = f"event: {name}\n" if name else ""
    return f"{named}data: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


async def run_frames(feed: RunFeed, first: tuple[str, dict[str, Any]]) -> AsyncIterator[bytes]:
    yield frame(*first)
    state = RunState()
    async for item in feed.items(KEEPALIVE_SECONDS):
        if item is None:
            yield PING
        elif isinstance(item, Ended):
            if item.error is not None:
                yield frame("error", decompose_error_body(item.error))
            yield frame("result", item.result.to_dict())
        elif isinstance(item, AnswerPiece):  # asked for by /v1/chat/completions only
            continue
        else:
            before, state = state, apply(state, item)
            yield frame(item.type, item.to_dict())
            if state.steps is not before.steps:
                yield frame("state", state.to_dict())


def event_stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
