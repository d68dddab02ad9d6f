"""Plans awaiting review: `POST /v1/runs?review=true` plans only and keeps the plan (expiring after the store's
`review_ttl`); `POST /v1/runs/{id}/approve` runs it as reviewed or edited, once. Asked with a `conversation_id`
(the web page does), the approved run is that conversation's next turn, and the planning's model calls count in
its usage like any turn's."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from decompose.conversation_state import ConversationState
from decompose.errors import DecomposeError, PlanError
from decompose.events import TokenCount, Usage
from decompose.orchestrator import Orchestrator
from decompose.plan import Plan
from decompose.result import Result
from decompose.serve.approvals import stream_run
from decompose.serve.bodies import optional_str, read_json
from decompose.serve.conversations import busy, conversation_of, no_conversation, stream_turn
from decompose.serve.errors import ApiError, api_error_of
from decompose.serve.service import Service
from decompose.serve.store import FAILED, TurnBusy


def checked_plan(orch: Orchestrator, data: Any) -> Plan:
    """A plan from a request (its JSON form, as data or text), checked as `execute` would: 422 when invalid."""
    try:
        return orch.check_plan(data)
    except PlanError as exc:
        raise ApiError(422, f"the plan is invalid: {exc.args[0]}", exc.hint) from None


async def for_review(
    service: Service,
    agent: str,
    orch: Orchestrator,
    question: str | None,
    plan: Plan | None,
    conversation_id: str | None = None,
) -> Response:
    usage = Usage()
    if plan is None:
        history: list[Any] = []
        if conversation_id is not None:  # planned as the conversation's next turn: "can I return it?" needs it
            found = await asyncio.to_thread(service.store.conversation, conversation_id)
            history = conversation_of(service, orch, found["turns"] if found else []).history_messages()
        try:
            # question_of read it: a body without a plan has one
            plan = await orch.aplan(question or "", history=history, usage=usage)
        except DecomposeError as exc:
            raise api_error_of(exc) from None
    run_id = uuid.uuid4().hex
    question = question or plan.question or ""
    store = service.store
    await asyncio.to_thread(store.link_run, run_id, agent, question, conversation_id, None, usage.to_dict())
    expires_at = await asyncio.to_thread(store.save_review, run_id, agent, question, plan.spec())
    return JSONResponse(
        {
            "run_id": run_id,
            "agent": agent,
            "question": question,
            "plan": plan.spec(),
            "conversation_id": conversation_id,
            "approve": f"/v1/runs/{run_id}/approve",
            "cancel": f"/v1/runs/{run_id}/cancel",
            "expires_at": expires_at,
        },
        status_code=201,
    )


def routes(service: Service) -> list[Route]:
    store = service.store

    async def approve(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        review = await asyncio.to_thread(store.review, run_id)
        if review is None:
            raise ApiError(
                404, f"no plan awaiting approval has run id {run_id!r}", "ask for one with POST /v1/runs?review=true"
            )
        if review["status"] != "pending":
            raise _not_pending(run_id, review["status"], store.review_ttl)
        body = await read_json(request, service.max_body_bytes, example='{"plan": {"steps": [...]}} or nothing')
        agent, orch = service.catalog.get(review["agent"])
        plan = checked_plan(orch, body["plan"] if body.get("plan") is not None else review["plan"])
        link = await asyncio.to_thread(store.run_link, run_id) or {}
        question, conversation_id = review["question"], link.get("conversation_id")
        seq: int | None = None
        earlier: list[dict[str, Any]] = []
        if conversation_id is not None:  # the conversation's next turn, taken before the plan is marked approved
            try:
                seq, earlier = await asyncio.to_thread(store.begin_turn, conversation_id, question)
            except TurnBusy:
                raise busy(conversation_id) from None
        if not await asyncio.to_thread(store.approve, run_id):  # decided meanwhile, or just expired
            latest = await asyncio.to_thread(store.review, run_id)
            error = _not_pending(run_id, latest["status"] if latest else "approved", store.review_ttl)
            if conversation_id is not None and seq is not None:
                await asyncio.to_thread(store.end_turn, conversation_id, seq, status=FAILED, error=error.message)
            raise error

        history = conversation_of(service, orch, earlier).history_messages() if conversation_id is not None else []

        async def executed(emit: Any) -> Result:
            result = await orch.aexecute(plan, question=question, run_id=run_id, on_event=emit, history=history)
            _add_planning(result.usage, link.get("planning"))
            return result

        if conversation_id is None or seq is None:
            return stream_run(service, agent, question, run_id, executed)
        await asyncio.to_thread(store.link_run, run_id, agent, question, conversation_id, seq)
        state = conversation_of(service, orch, earlier).state

        def learned(result: Result) -> ConversationState:
            state.learn(result.plan, question, None, result.answer or "")
            return state

        return stream_turn(service, agent, conversation_id, seq, question, executed, learned, run_id=run_id)

    return [Route("/v1/runs/{run_id}/approve", approve, methods=["POST"])]


async def review_target(service: Service, body: dict[str, Any]) -> tuple[str, Orchestrator, str | None]:
    """The agent a review plans with, and the conversation whose turn it will be (its agent, when it names one)."""
    conversation_id = optional_str(body, "conversation_id")
    named = optional_str(body, "agent")
    if conversation_id is None:
        return (*service.catalog.get(named), None)
    stored = await asyncio.to_thread(service.store.agent_of, conversation_id)
    if stored is None:
        raise no_conversation(conversation_id)
    if named is not None and named != stored:
        raise ApiError(
            422,
            f"conversation {conversation_id} is with {stored}, not {named}",
            "leave out 'agent' (the conversation's is used), or start a conversation with that agent",
        )
    return (*service.catalog.get(stored), conversation_id)


def _not_pending(run_id: str, status: str, ttl: float) -> ApiError:
    """409 for a plan that can no longer be approved: approved or cancelled already, or expired."""
    said = f"expired unapproved after {ttl / 3600:g} h" if status == "expired" else f"was already {status}"
    return ApiError(409, f"the plan of run {run_id} {said}", "ask for a new plan with POST /v1/runs?review=true")


def _add_planning(usage: Usage, planning: dict[str, Any] | None) -> None:
    """Count a reviewed plan's planning (`Usage.to_dict` form) in the usage of the run that executed it, first."""
    if not planning:
        return
    phases = {name: TokenCount(c["input"], c["output"], c["calls"]) for name, c in planning["phases"].items()}
    for name, count in usage.phases.items():
        total = phases.setdefault(name, TokenCount())
        total.input, total.output = total.input + count.input, total.output + count.output
        total.calls += count.calls
    usage.phases = phases
    usage.transport_retries += planning["transport_retries"]
    usage.parse_retries += planning["parse_retries"]
    usage.cost = None if usage.cost is None or planning["cost"] is None else usage.cost + planning["cost"]
