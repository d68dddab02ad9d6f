"""Stored conversations: `POST /v1/conversations`, `POST /v1/conversations/{id}/messages` (streamed like a run),
`GET /v1/conversations/{id}`. A message is committed before its run starts and its answer when the run ends;
the history a turn is given comes from the stored turns, under `Conversation`'s rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from decompose.conversation import Conversation, Turn
from decompose.conversation_state import ConversationState
from decompose.events import Event
from decompose.orchestrator import Orchestrator
from decompose.result import Result
from decompose.serve.approvals import run_status, waiting
from decompose.serve.bodies import optional_str, question_of, read_json
from decompose.serve.errors import INTERRUPTED_MESSAGE, ApiError
from decompose.serve.running import Ended, RunFeed, settle
from decompose.serve.service import Service
from decompose.serve.sse import event_stream, run_frames
from decompose.serve.store import ANSWERED, AWAITING, CANCELLED, EXPIRED, FAILED, INTERRUPTED, RUNNING, TurnBusy

MESSAGE_EXAMPLE = '{"question": "..."}'


def routes(service: Service) -> list[Route]:
    store = service.store

    async def create(request: Request) -> Response:
        body = await read_json(request, service.max_body_bytes, example='{"agent": "customer-service"}')
        agent, _ = service.catalog.get(optional_str(body, "agent"))
        return JSONResponse(await asyncio.to_thread(store.create_conversation, agent), status_code=201)

    async def show(request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        found = await _conversation(service, conversation_id)
        runs = await asyncio.to_thread(store.runs_of, conversation_id)
        for turn in found["turns"]:
            if turn["seq"] in runs:
                turn["run_id"] = runs[turn["seq"]]
                await _with_approvals(service, conversation_id, turn)
        return JSONResponse(found)

    async def send(request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        body = await read_json(request, service.max_body_bytes, example=MESSAGE_EXAMPLE)
        question = question_of(body, example=MESSAGE_EXAMPLE)
        stored_agent = await asyncio.to_thread(store.agent_of, conversation_id)
        if stored_agent is None:
            raise no_conversation(conversation_id)
        agent, orch = service.catalog.get(stored_agent)
        try:
            seq, earlier = await asyncio.to_thread(store.begin_turn, conversation_id, question)
        except TurnBusy:
            raise busy(conversation_id) from None
        chat = conversation_of(service, orch, earlier)
        return stream_turn(
            service,
            agent,
            conversation_id,
            seq,
            question,
            lambda emit: chat.asend(question, on_event=emit),
            lambda _: chat.state,
        )

    return [
        Route("/v1/conversations", create, methods=["POST"]),
        Route("/v1/conversations/{conversation_id}", show, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/messages", send, methods=["POST"]),
    ]


def stream_turn(
    service: Service,
    agent: str,
    conversation_id: str,
    seq: int,
    question: str,
    start: Callable[[Callable[[Event], None]], Coroutine[Any, Any, Result]],
    state_after: Callable[[Result], ConversationState],
    run_id: str | None = None,
) -> Response:
    """Run a turn (`start(on_event)` makes its coroutine) and stream it: `turn`, the events, `result`; its end
    is stored (awaiting approval: with its run's agent and turn, for the decision) before it is announced."""
    store = service.store
    feed = RunFeed()

    async def record(ended: Ended) -> None:
        result = ended.result
        if result.awaiting_approval and result.run_id:
            await asyncio.to_thread(store.link_run, result.run_id, agent, question, conversation_id, seq)
        status = AWAITING if result.awaiting_approval else ANSWERED if result.answer is not None else FAILED
        await asyncio.to_thread(
            store.end_turn,
            conversation_id,
            seq,
            status=status,
            answer=result.answer,
            error=result.error,
            state=state_after(result).to_dict(),
        )

    def record_interrupted() -> None:  # called on the event loop as the server stops: no waiting to retry
        store.end_turn(conversation_id, seq, status=INTERRUPTED, error=INTERRUPTED_MESSAGE, attempts=1)

    async def run() -> None:
        await settle(
            feed,
            start(feed.emit),
            question,
            run_id=f"{conversation_id}/{seq}",
            agent=agent,
            record=record,
            record_interrupted=record_interrupted,
        )

    service.start(run())
    first = {"conversation_id": conversation_id, "agent": agent, "seq": seq, "question": question, "status": RUNNING}
    return event_stream(run_frames(feed, ("turn", {**first, "run_id": run_id} if run_id else first)))


async def resumed_turn(service: Service, link: dict[str, Any], orch: Orchestrator, run_id: str) -> Response:
    """The awaiting turn of a decided run runs again, streamed like a turn; the resumed run's answer is the
    turn's answer."""
    conversation_id, seq, question = link["conversation_id"], link["seq"], link["question"]
    turn = await asyncio.to_thread(service.store.resume_turn, conversation_id, seq)
    state = ConversationState.from_dict(turn["state"] if turn else None)

    def learned(result: Result) -> ConversationState:
        state.learn(result.plan, question, None, result.answer or "")
        return state

    return stream_turn(
        service,
        link["agent"],
        conversation_id,
        seq,
        question,
        lambda emit: orch.aresume(run_id, on_event=emit),
        learned,
        run_id=run_id,
    )


async def _with_approvals(service: Service, conversation_id: str, turn: dict[str, Any]) -> None:
    """An awaiting turn with the calls it waits for; one whose run was cancelled or expired meanwhile (on any
    replica, or by its time) is stored so."""
    if turn["status"] != AWAITING:
        return
    agent = await asyncio.to_thread(service.store.agent_of, conversation_id)
    checkpoints = service.catalog.get(agent)[1].checkpoints
    if checkpoints is None:
        return
    status = await asyncio.to_thread(run_status, checkpoints, turn["run_id"])
    if status is not None and status[0] == AWAITING:
        turn["approvals"] = [a.to_dict() for a in await asyncio.to_thread(waiting, checkpoints, turn["run_id"])]
        return
    ended, error = status if status is not None and status[0] in (CANCELLED, EXPIRED) else (EXPIRED, "expired")
    await asyncio.to_thread(service.store.end_turn, conversation_id, turn["seq"], status=ended, error=error)
    turn.update(status=ended, error=error)


def conversation_of(service: Service, orch: Orchestrator, earlier: list[dict[str, Any]]) -> Conversation:
    """A `Conversation` with `orch` that remembers the stored turns `earlier` and the state the last one left."""
    chat = Conversation(orch, max_history_tokens=service.max_history_tokens)
    chat.history = [history_turn(t) for t in earlier]
    chat.state = ConversationState.from_dict(next((t["state"] for t in reversed(earlier) if t["state"]), None))
    return chat


def history_turn(turn: dict[str, Any]) -> Turn:
    """A stored turn as `Conversation` remembers one."""
    waiting = "it waits for a person's approval" if turn["status"] == AWAITING else turn["status"]
    return Turn.remembered(turn["question"], turn["answer"], turn["error"] or waiting)


async def _conversation(service: Service, conversation_id: str) -> dict[str, Any]:
    found = await asyncio.to_thread(service.store.conversation, conversation_id)
    if found is None:
        raise no_conversation(conversation_id)
    return found


def busy(conversation_id: str) -> ApiError:
    return ApiError(
        409,
        "the previous message of this conversation is still being answered",
        f"wait for its answer (GET /v1/conversations/{conversation_id}), then send again",
    )


def no_conversation(conversation_id: str) -> ApiError:
    return ApiError(404, f"no conversation has id {conversation_id!r}", "start one with POST /v1/conversations")
