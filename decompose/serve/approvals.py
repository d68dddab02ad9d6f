"""Tool approvals over HTTP (decompose/approvals.py): a run whose call waits for a person ends awaiting approval,
kept in the server's checkpoint store; `GET /v1/approvals` lists what waits, `POST /v1/runs/{id}/decisions`
records a decision for each waiting call (checked before anything runs) and streams the resumed run like a run
(a conversation's turn gets its answer), `POST /v1/runs/{id}/cancel` ends a waiting run, or a plan awaiting
review. The checkpoint store is the arbiter between replicas: a call is decided once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from decompose.approvals import ApprovalRequest, Decision, Edit, decision_dict, decision_from
from decompose.checkpoints import AWAITING, CANCELLED, EXPIRED, FINISHED, CheckpointStore
from decompose.errors import InputError
from decompose.events import Event
from decompose.orchestrator import Orchestrator
from decompose.result import Result
from decompose.serve.bodies import read_json
from decompose.serve.errors import ApiError
from decompose.serve.running import Ended, RunFeed, settle
from decompose.serve.service import Service
from decompose.serve.sse import event_stream, run_frames

DECISIONS_EXAMPLE = '{"decisions": {"2": {"decision": "approve"}}}'
DECISION_FORMS = (
    '{"decision": "approve"}, {"decision": "edit", "args": {...}} or {"decision": "reject", "reason": "..."}'
)
ENDED_AS = {
    FINISHED: "has finished",
    CANCELLED: "was cancelled",
    EXPIRED: "expired: no decision came in time",
}


def stream_run(
    service: Service,
    agent: str,
    question: str,
    run_id: str,
    start: Callable[[Callable[[Event], None]], Coroutine[Any, Any, Result]],
) -> Response:
    """Start a run of POST /v1/runs (`start(on_event)` makes its coroutine) and stream it: `run`, the events,
    `result`. A run that ends awaiting approval is remembered with its agent first, so a decision finds it."""
    feed = RunFeed()

    async def record(ended: Ended) -> None:
        if ended.result.awaiting_approval:
            await asyncio.to_thread(service.store.link_run, run_id, agent, question)

    async def run() -> None:
        await settle(feed, start(feed.emit), question, run_id=run_id, agent=agent, record=record)

    service.start(run())
    return event_stream(run_frames(feed, ("run", {"id": run_id, "agent": agent, "question": question})))


def waiting(checkpoints: CheckpointStore, run_id: str | None = None) -> list[ApprovalRequest]:
    """The calls still waiting (of one run or of all): one past its time is not listed (the store expires it)."""
    now = checkpoints.clock()
    return [a for a in checkpoints.approvals(run_id) if a.expires_at is None or a.expires_at >= now]


def run_status(checkpoints: CheckpointStore, run_id: str) -> tuple[str, str | None] | None:
    """The run's status and error, a run whose approval waited past its time marked expired first; None when
    the store has no such run (never, or ended long ago)."""
    if len(waiting(checkpoints, run_id)) < len(checkpoints.approvals(run_id)):
        checkpoints.purge()
    saved = checkpoints.load(run_id)
    return None if saved is None else (saved.status, saved.error)


def routes(service: Service) -> list[Route]:
    store = service.store

    async def list_approvals(request: Request) -> Response:
        run_id = request.query_params.get("run_id") or None

        def pending() -> list[dict[str, Any]]:
            found = [a for s in service.catalog.checkpoint_stores() for a in waiting(s, run_id)]
            links = {a.run_id: store.run_link(a.run_id) for a in found}
            return [_shown(a, links[a.run_id]) for a in found]

        return JSONResponse({"approvals": await asyncio.to_thread(pending)})

    async def decide(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request, service.max_body_bytes, example=DECISIONS_EXAMPLE)
        link, orch = await _linked(service, run_id)
        checkpoints = _store_of(orch)
        given = body.get("decisions")
        if not isinstance(given, dict) or not given:
            raise ApiError(
                422, '"decisions" must be an object of step id -> decision', f"send {DECISIONS_EXAMPLE}; {_forms()}"
            )
        status = await asyncio.to_thread(run_status, checkpoints, run_id)
        if status is None or status[0] != AWAITING:
            raise _not_waiting(run_id, status)
        pending = {a.step_id: a for a in await asyncio.to_thread(waiting, checkpoints, run_id)}
        chosen = dict(_checked(orch, run_id, key, decision, pending) for key, decision in given.items())
        undecided = sorted(set(pending) - set(chosen))
        if undecided:
            raise ApiError(
                422,
                f"run {run_id} also waits for step {', '.join(map(str, undecided))}: decide every waiting call at once",
                f"send a decision for each of steps {', '.join(map(str, sorted(pending)))}",
            )
        try:  # the arbiter: a call decided meanwhile (another request, another replica) is refused here
            await asyncio.to_thread(checkpoints.decide, run_id, {s: decision_dict(d) for s, d in chosen.items()})
        except InputError as exc:
            raise ApiError(409, str(exc.args[0]), "list what still waits with GET /v1/approvals") from None
        if link["conversation_id"] is not None:
            from decompose.serve.conversations import resumed_turn

            return await resumed_turn(service, link, orch, run_id)
        return stream_run(
            service, link["agent"], link["question"], run_id, lambda emit: orch.aresume(run_id, on_event=emit)
        )

    async def cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request, service.max_body_bytes, example='{"reason": "..."} or nothing')
        reason = body.get("reason") or "cancelled by a person"
        if not isinstance(reason, str):
            raise ApiError(422, f"'reason' must be text, got {type(reason).__name__}", 'send {"reason": "..."}')
        review = await asyncio.to_thread(store.review, run_id)
        if review is not None:  # a plan awaiting review: it will never run
            if not await asyncio.to_thread(store.cancel_review, run_id):
                raise ApiError(
                    409,
                    f"the plan of run {run_id} is not awaiting review: it was {review['status']}",
                    "nothing to cancel; ask for a new plan with POST /v1/runs?review=true",
                )
            return JSONResponse({"run_id": run_id, "status": CANCELLED, "review": True})
        link, orch = await _linked(service, run_id)
        checkpoints = _store_of(orch)
        status = await asyncio.to_thread(run_status, checkpoints, run_id)
        if status is None or status[0] != AWAITING:
            raise _not_waiting(run_id, status, doing="cancel")
        try:
            await asyncio.to_thread(checkpoints.cancel, run_id, reason)
        except InputError as exc:  # it ended meanwhile
            raise ApiError(409, str(exc.args[0]), exc.hint) from None
        if link["conversation_id"] is not None:
            await asyncio.to_thread(
                store.end_turn, link["conversation_id"], link["seq"], status=CANCELLED, error=f"cancelled: {reason}"
            )
        return JSONResponse({"run_id": run_id, "status": CANCELLED, "review": False})

    return [
        Route("/v1/approvals", list_approvals, methods=["GET"]),
        Route("/v1/runs/{run_id}/decisions", decide, methods=["POST"]),
        Route("/v1/runs/{run_id}/cancel", cancel, methods=["POST"]),
    ]


def _shown(request: ApprovalRequest, link: dict[str, Any] | None) -> dict[str, Any]:
    shown = request.to_dict()
    del shown["decision"]  # pending: none yet
    where = {k: link[k] for k in ("agent", "question", "conversation_id", "seq")} if link else {}
    return {**shown, **where, "decide": f"/v1/runs/{request.run_id}/decisions"}


async def _linked(service: Service, run_id: str) -> tuple[dict[str, Any], Orchestrator]:
    """The run's record (agent, turn) and its agent; 404 when no run of this server ever waited with that id."""
    link = await asyncio.to_thread(service.store.run_link, run_id)
    if link is None:
        raise ApiError(
            404, f"no run waiting for approval has id {run_id!r}", "list the calls that wait with GET /v1/approvals"
        )
    return link, service.catalog.get(link["agent"])[1]


def _store_of(orch: Orchestrator) -> CheckpointStore:
    if orch.checkpoints is None:  # an agent given to create_app(agents=...) without a store: it cannot wait
        raise ApiError(500, "this agent has no checkpoint store", "give its Orchestrator checkpoints=...")
    return orch.checkpoints


def _not_waiting(run_id: str, status: tuple[str, str | None] | None, *, doing: str = "decide") -> ApiError:
    if status is None:
        return ApiError(
            404,
            f"run {run_id} has no checkpoint: it never ran (a plan still awaiting review?) or ended long ago",
            "approve a reviewed plan with POST /v1/runs/ID/approve; ended runs are deleted after a week",
        )
    said = ENDED_AS.get(status[0], "is running again: its calls were decided already")
    why = f" ({status[1]})" if status[1] and status[0] != FINISHED else ""
    return ApiError(409, f"run {run_id} is not waiting for approval: it {said}{why}", f"nothing to {doing}")


def _checked(
    orch: Orchestrator, run_id: str, key: Any, given: Any, pending: dict[int, ApprovalRequest]
) -> tuple[int, Decision]:
    """One decision of the body, checked: a waiting step (409 otherwise), a decision's form and an edit's
    arguments against the tool's schema (422)."""
    step = int(key) if isinstance(key, str) and key.strip().isdigit() else None
    if step is None:
        raise ApiError(422, f"decision key {key!r} is not a step id", f"send {DECISIONS_EXAMPLE}")
    request = pending.get(step)
    if request is None:
        waits = ", ".join(map(str, sorted(pending))) or "none"
        raise ApiError(
            409,
            f"step {step} of run {run_id} has no pending approval (decided already, or never asked)",
            f"steps waiting: {waits}; a call is decided once",
        )
    try:
        decision = decision_from(given)
    except InputError as exc:
        raise ApiError(422, f"step {step}: {exc.args[0]}", _forms()) from None
    if isinstance(decision, Edit) and (problem := orch.tool_runner.edit_problem(request, decision.args)):
        raise ApiError(
            422, problem, f"edit the arguments of {request.tool}, e.g. {json.dumps(request.args, default=str)}"
        )
    return step, decision


def _forms() -> str:
    return f"a decision is {DECISION_FORMS}"
