"""Stored conversations: `POST /v1/conversations`, `POST /v1/conversations/{id}/messages` (streamed like a run),
`GET /v1/conversations/{id}`. A message is committed before its run starts and its answer when the run ends;
the history a turn is given comes from the stored turns, under `Conversation`'s rules."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from decompose.conversation import Conversation, Turn
from decompose.conversation_state import ConversationState
from decompose.serve.bodies import optional_str, question_of, read_json
from decompose.serve.errors import INTERRUPTED_MESSAGE, ApiError
from decompose.serve.running import Ended, RunFeed, settle
from decompose.serve.service import Service
from decompose.serve.sse import event_stream, run_frames
from decompose.serve.store import ANSWERED, FAILED, INTERRUPTED, RUNNING, TurnBusy

MESSAGE_EXAMPLE = '{"question": "..."}'


def routes(service: Service) -> list[Route]:
    store = service.store

    async def create(request: Request) -> Response:
        body = await read_json(request, service.max_body_bytes, example='{"agent": "customer-service"}')
        agent, _ = service.catalog.get(optional_str(body, "agent"))
        return JSONResponse(await asyncio.to_thread(store.create_conversation, agent), status_code=201)

    async def show(request: Request) -> Response:
        return JSONResponse(await _conversation(service, request.path_params["conversation_id"]))

    async def send(request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        body = await read_json(request, service.max_body_bytes, example=MESSAGE_EXAMPLE)
        question = question_of(body, example=MESSAGE_EXAMPLE)
        stored_agent = await asyncio.to_thread(store.agent_of, conversation_id)
        if stored_agent is None:
            raise _no_conversation(conversation_id)
        agent, orch = service.catalog.get(stored_agent)
        try:
            seq, earlier = await asyncio.to_thread(store.begin_turn, conversation_id, question)
        except TurnBusy:
            raise ApiError(
                409,
                "the previous message of this conversation is still being answered",
                f"wait for its answer (GET /v1/conversations/{conversation_id}), then send again",
            ) from None
        chat = Conversation(orch, max_history_tokens=service.max_history_tokens)
        chat.history = [history_turn(t) for t in earlier]
        chat.state = ConversationState.from_dict(next((t["state"] for t in reversed(earlier) if t["state"]), None))
        feed = RunFeed()

        async def record(ended: Ended) -> None:
            result = ended.result
            await asyncio.to_thread(
                store.end_turn,
                conversation_id,
                seq,
                status=ANSWERED if result.answer is not None else FAILED,
                answer=result.answer,
                error=result.error,
                state=chat.state.to_dict(),
            )

        def record_interrupted() -> None:  # called on the event loop as the server stops: no waiting to retry
            store.end_turn(conversation_id, seq, status=INTERRUPTED, error=INTERRUPTED_MESSAGE, attempts=1)

        async def run() -> None:
            await settle(
                feed,
                chat.asend(question, on_event=feed.emit),
                question,
                run_id=f"{conversation_id}/{seq}",
                agent=agent,
                record=record,
                record_interrupted=record_interrupted,
            )

        service.start(run())
        first = {
            "conversation_id": conversation_id,
            "agent": agent,
            "seq": seq,
            "question": question,
            "status": RUNNING,
        }
        return event_stream(run_frames(feed, ("turn", first)))

    return [
        Route("/v1/conversations", create, methods=["POST"]),
        Route("/v1/conversations/{conversation_id}", show, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/messages", send, methods=["POST"]),
    ]


def history_turn(turn: dict[str, Any]) -> Turn:
    """A stored turn as `Conversation` remembers one."""
    return Turn.remembered(turn["question"], turn["answer"], turn["error"] or turn["status"])


async def _conversation(service: Service, conversation_id: str) -> dict[str, Any]:
    found = await asyncio.to_thread(service.store.conversation, conversation_id)
    if found is None:
        raise _no_conversation(conversation_id)
    return found


def _no_conversation(conversation_id: str) -> ApiError:
    return ApiError(404, f"no conversation has id {conversation_id!r}", "start one with POST /v1/conversations")
