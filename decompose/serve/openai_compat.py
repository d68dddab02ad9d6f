"""OpenAI-compatible `POST /v1/chat/completions` (and `GET /v1/models`): `model` names an agent, the last user
message is the question and the earlier messages are its history, so any OpenAI client or LangChain `ChatOpenAI`
can talk to an agent. System messages are left out: an agent brings its own instructions.

With `stream: true` the answer's text comes as the synthesis writes it (`chains/answer_stream.py`): the content
deltas add up to the answer. Only where the answer's checks rewrote text already sent does the content go on with
a blank line and the whole checked answer (a client that asked for progress also gets `answer_replaced`).
Progress is opt-in, as vLLM adds its `reasoning_content` beside the standard fields: a request with
`"decompose": {"progress": true}` (the OpenAI client's `extra_body`) also gets each run event as a standard chunk
with an empty delta and the event under `"decompose"`; a client that does not ask sees only OpenAI's chunks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from decompose.conversation import Conversation, Turn
from decompose.errors import DecomposeError
from decompose.events import Event
from decompose.result import Result
from decompose.serve.bodies import read_json
from decompose.serve.errors import ApiError, api_error_of, decompose_error_body
from decompose.serve.running import AnswerPiece, Ended, RunFeed, settle
from decompose.serve.service import Service
from decompose.serve.sse import KEEPALIVE_SECONDS, PING, SSE_HEADERS, frame

EXAMPLE = '{"model": "customer-service", "messages": [{"role": "user", "content": "..."}]}'
IGNORED_ROLES = ("system", "developer")
PROGRESS_EXAMPLE = '{"model": "finance", "stream": true, "decompose": {"progress": true}, "messages": [...]}'


def routes(service: Service) -> list[Route]:
    async def models(_: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "decompose"}
                    for name in service.catalog.names()
                ],
            }
        )

    async def completions(request: Request) -> Response:
        body = await read_json(request, service.max_body_bytes, example=EXAMPLE)
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise ApiError(
                422, "no model given: it names the agent to ask", f"models: {', '.join(service.catalog.names())}"
            )
        agent, orch = service.catalog.get(name)
        question, history = split_messages(body.get("messages"))
        chat = Conversation(orch, max_history_tokens=service.max_history_tokens)
        chat.history = history
        feed = RunFeed()
        stream, progress = bool(body.get("stream")), _progress_asked(body)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        # Pieces of the answer only for a stream: a plain call makes one `ainvoke` per model call, as before.
        run = chat.asend(question, on_event=feed.emit, on_answer=feed.answer if stream else None)

        async def record(ended: Ended) -> None:  # a run that waits for a person is decided like any other
            result = ended.result
            if result.awaiting_approval and result.run_id:
                await asyncio.to_thread(service.store.link_run, result.run_id, agent, question)

        task = service.start(settle(feed, run, question, run_id=completion_id, agent=agent, record=record))
        if stream:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _chunks(feed, completion_id, created, agent, usage=usage, progress=progress),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        ended = await task
        if isinstance(ended.error, DecomposeError):
            raise api_error_of(ended.error)
        if ended.error is not None:
            raise ApiError(500, **decompose_error_body(ended.error)["error"])
        return JSONResponse(_completion(ended.result, completion_id, created, agent))

    return [Route("/v1/models", models, methods=["GET"]), Route("/v1/chat/completions", completions, methods=["POST"])]


def _progress_asked(body: dict[str, Any]) -> bool:
    options = body.get("decompose")
    if options is None:
        return False
    if not isinstance(options, dict) or not isinstance(options.get("progress", False), bool):
        raise ApiError(422, 'decompose must be an object such as {"progress": true}', f"send {PROGRESS_EXAMPLE}")
    return bool(options.get("progress"))


def split_messages(messages: Any) -> tuple[str, list[Turn]]:
    """The question (the last message, a user's) and the earlier user/assistant messages as turns."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(422, "messages must be a non-empty list", f"send {EXAMPLE}")
    said = [(role, text) for role, text in map(_role_and_text, messages) if role not in IGNORED_ROLES]
    if not said or said[-1][0] != "user":
        raise ApiError(422, "the last message must be the user's question", f"send {EXAMPLE}")
    if not said[-1][1].strip():
        raise ApiError(422, "the question is empty", "ask a question in words")
    turns: list[Turn] = []
    asked: str | None = None
    for role, text in said[:-1]:
        if role == "user":
            if asked is not None:  # two questions in a row: the first was not answered
                turns.append(Turn(asked, "(no answer)"))
            asked = text
        else:
            turns.append(Turn(asked or "", text))
            asked = None
    if asked is not None:
        turns.append(Turn(asked, "(no answer)"))
    return said[-1][1].strip(), turns


def _role_and_text(message: Any) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise ApiError(422, "each message must be an object with role and content", f"send {EXAMPLE}")
    role, content = message.get("role"), message.get("content")
    if role not in ("user", "assistant", *IGNORED_ROLES):
        raise ApiError(
            422,
            f"messages with role {role!r} are not supported",
            "send user and assistant messages (an agent calls its own tools)",
        )
    if isinstance(content, list):  # content parts: only text is understood
        if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
            raise ApiError(422, "only text content parts are supported", "send the message as text")
        content = "".join(str(p.get("text", "")) for p in content)
    if not isinstance(content, str):
        raise ApiError(422, f"a {role} message has no text content", "give each message a content string")
    return role, content


def _usage(result: Result) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def waiting_reply(result: Result) -> str:
    """What a chat client is told of a run that waits for a person: an OpenAI reply has no such state."""
    calls = "; ".join(f"{a.tool} {json.dumps(a.args, default=str)} ({a.reason})" for a in result.approvals)
    return (
        f"This needs a person's approval first: {calls}. It waits as run {result.run_id}: decide with "
        f"POST /v1/runs/{result.run_id}/decisions."
    )


def _completion(result: Result, completion_id: str, created: int, agent: str) -> dict[str, Any]:
    answer = waiting_reply(result) if result.awaiting_approval else result.answer
    if answer is None:
        raise ApiError(
            502,
            f"the agent gave no answer: {result.error}",
            "POST /v1/runs with the same question streams every step and where it failed",
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": agent,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": _usage(result),
    }


async def _chunks(
    feed: RunFeed, completion_id: str, created: int, agent: str, *, usage: bool, progress: bool
) -> AsyncIterator[bytes]:
    """chat.completion.chunk events: the role at once, the answer's pieces as they are written (and, with
    `progress`, each event), the rest of the answer when the run ends, then `[DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return chunk_with([{"index": 0, "delta": delta, "finish_reason": finish}])

    def chunk_with(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return frame(
            None,
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": agent,
                "choices": choices,
                **extra,
            },
        )

    def news(data: dict[str, Any]) -> bytes:  # progress: a standard chunk that adds nothing to the answer
        return chunk_with([{"index": 0, "delta": {}, "finish_reason": None}], decompose=data)

    sent = ""
    yield chunk({"role": "assistant", "content": ""})
    async for item in feed.items(KEEPALIVE_SECONDS):
        if item is None:
            yield PING
        elif isinstance(item, AnswerPiece):
            sent += item.text
            yield chunk({"content": item.text})
        elif isinstance(item, Event):
            if progress:
                yield news(item.to_dict())
        else:
            result = item.result
            answer = waiting_reply(result) if result.awaiting_approval else result.answer
            if answer is None:  # OpenAI clients raise an error event as an APIError
                yield frame(
                    None,
                    decompose_error_body(item.error)
                    if item.error is not None
                    else {"error": {"message": f"the agent gave no answer: {result.error}", "hint": None}},
                )
            elif answer.startswith(sent):
                if answer != sent:
                    yield chunk({"content": answer[len(sent) :]})
            else:  # the checks rewrote text already sent: never left standing uncorrected
                if progress:
                    yield news({"type": "answer_replaced", "answer": answer})
                yield chunk({"content": f"\n\n{answer}"})
            if answer is not None:
                yield chunk({}, "stop")
                if usage:
                    yield chunk_with([], usage=_usage(result))
    yield b"data: [DONE]\n\n"
