"""`create_app(...)`: the HTTP service — agents, streamed runs with optional plan review, stored conversations and
an OpenAI-compatible chat endpoint — as a Starlette ASGI app. `decompose serve` runs it under uvicorn; mount it
in your own app to serve the agents there (enter its lifespan in yours so a shutdown ends its runs cleanly)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from decompose.errors import DecomposeError, PlanError
from decompose.events import Event
from decompose.models import load_model
from decompose.orchestrator import Orchestrator
from decompose.plan import Plan
from decompose.result import Result
from decompose.serve import conversations, openai_compat
from decompose.serve.bodies import optional_str, question_of, read_json
from decompose.serve.catalog import Catalog
from decompose.serve.errors import ApiError, api_error_of, exception_handlers
from decompose.serve.logs import AccessLog
from decompose.serve.running import RunFeed, settle
from decompose.serve.security import ApiKeys, Guard, RateLimiter, parse_rate
from decompose.serve.service import Service
from decompose.serve.sse import event_stream, run_frames
from decompose.serve.store import Store
from decompose.telemetry import tracing

if TYPE_CHECKING:
    from decompose.checkpoints import CheckpointStore

RUN_EXAMPLE = '{"question": "...", "agent": "customer-service"}'
STATIC = Path(__file__).parent / "static"
# The page loads nothing from elsewhere and runs no inline script: model text that ever reached the markup could
# not run, and nothing can be fetched from the network.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def create_app(
    model: Any = None,
    *,
    db: str | None = None,
    agents: Mapping[str, Orchestrator] | None = None,
    tools: Sequence[Any] = (),
    orchestrator_options: Mapping[str, Any] | None = None,
    api_keys: Iterable[str] | None = None,
    rate_limit: int | str | None = None,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = 1_000_000,
    max_history_tokens: int = 1500,
    shutdown_timeout: float = 30.0,
    lease: float = 15.0,
) -> Starlette:
    """The service as an ASGI app.

    model: a chat model or spec (`load_model`'s; None: $DECOMPOSE_MODEL, else the embedded model) for the ready
    agents and `decompose` (the model alone with `tools`); or `agents={name: Orchestrator}` to serve exactly
    those (a request that names no agent gets `decompose`, or the first of `agents`). orchestrator_options: the
    Orchestrator's keyword arguments for every agent built here. db: a SQLAlchemy URL for conversations and
    plans awaiting review (default: SQLite in the cache folder). api_keys: accepted keys (kept hashed);
    rate_limit: requests a minute per key ("60/min" or 60); cors_origins: origins a browser may call from (none
    by default). shutdown_timeout: how long runs in flight may finish at shutdown. lease: seconds after which a
    running turn whose server stopped renewing it reads as interrupted. With a `tracer_provider` among the
    orchestrator options, or the `OTEL_*` variables asking for traces, each request is a span and its run a child.
    With `checkpoints` among them (a path, a URL or a CheckpointStore; or agents made with one), every agent
    writes its runs there, and the runs a dead server left are offered: `GET /v1/runs/resumable`,
    `POST /v1/runs/{run_id}/resume` (docs/durable-runs.md).
    """
    options, checkpoints = _one_checkpoint_store(orchestrator_options or {}, agents)
    catalog = Catalog(load_model(model) if agents is None else None, tools=tools, options=options, agents=agents)
    service = Service(
        catalog=catalog,
        store=Store(db, lease=lease),
        max_body_bytes=max_body_bytes,
        max_history_tokens=max_history_tokens,
        shutdown_timeout=shutdown_timeout,
        checkpoints=checkpoints,
    )
    per_minute = parse_rate(rate_limit) if isinstance(rate_limit, str) else rate_limit
    middleware = (
        [
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            )
        ]
        if cors_origins
        else []
    )
    middleware.insert(0, Middleware(AccessLog))  # outermost: every request is logged, refused ones too
    middleware.append(Middleware(WebPage))  # before the key check: the page asks for the key itself
    middleware.append(
        Middleware(
            Guard,
            keys=ApiKeys(api_keys) if api_keys is not None else None,
            limiter=RateLimiter(per_minute) if per_minute else None,
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await service.close()

    traced = tracing((orchestrator_options or {}).get("tracer_provider"))
    if traced is not None:  # outermost: the request's span covers the key check and the page too
        from decompose.serve.request_spans import RequestSpans

        middleware.insert(0, Middleware(RequestSpans, tracer=traced.tracer))
    app = Starlette(
        routes=routes(service), middleware=middleware, exception_handlers=exception_handlers, lifespan=lifespan
    )
    app.state.service = service
    return app


def routes(service: Service) -> list[Route]:
    async def list_agents(_: Request) -> Response:
        return JSONResponse({"agents": service.catalog.describe()})

    async def start_run(request: Request) -> Response:
        body = await read_json(request, service.max_body_bytes, example=RUN_EXAMPLE)
        agent, orch = service.catalog.get(optional_str(body, "agent"))
        plan = checked_plan(orch, body["plan"]) if body.get("plan") is not None else None
        question = question_of(body, example=RUN_EXAMPLE) if plan is None or body.get("question") else None
        if request.query_params.get("review", "").lower() in ("1", "true", "yes"):
            return await _for_review(service, agent, orch, question, plan)
        run_id = uuid.uuid4().hex
        if plan is not None:
            return _stream(
                service,
                agent,
                question or plan.question or "",
                run_id,
                lambda emit: orch.aexecute(plan, question=question, run_id=run_id, on_event=emit),
            )
        asked = question or ""  # question_of read it: a body without a plan has one
        return _stream(service, agent, asked, run_id, lambda emit: orch.arun(asked, on_event=emit, run_id=run_id))

    async def approve_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        review = await asyncio.to_thread(service.store.review, run_id)
        if review is None:
            raise ApiError(
                404, f"no plan awaiting approval has run id {run_id!r}", "ask for one with POST /v1/runs?review=true"
            )
        body = await read_json(request, service.max_body_bytes, example='{"plan": {"steps": [...]}} or nothing')
        agent, orch = service.catalog.get(review["agent"])
        plan = checked_plan(orch, body["plan"] if body.get("plan") is not None else review["plan"])
        if not await asyncio.to_thread(service.store.approve, run_id):
            raise ApiError(
                409, f"run {run_id} was already approved", "ask for a new plan with POST /v1/runs?review=true"
            )
        question = review["question"]
        return _stream(
            service,
            agent,
            question,
            run_id,
            lambda emit: orch.aexecute(plan, question=question, run_id=run_id, on_event=emit),
        )

    async def resumable_runs(_: Request) -> Response:
        store = _checkpoints(service)
        return JSONResponse({"runs": await asyncio.to_thread(store.resumable)})

    async def resume_run(request: Request) -> Response:
        from decompose.checkpoints import FINISHED  # SQLAlchemy: the server's store needs it already

        store, run_id = _checkpoints(service), request.path_params["run_id"]
        body = await read_json(request, service.max_body_bytes, example='{"agent": "customer-service"} or nothing')
        agent, orch = service.catalog.get(optional_str(body, "agent"))
        if orch.checkpoints is not store:
            raise ApiError(409, f"agent {agent!r} writes no checkpoints here", "resume with the agent that ran it")
        saved = await asyncio.to_thread(store.load, run_id)
        if saved is None:
            raise ApiError(404, f"no run {run_id!r} in the checkpoint store", "list them: GET /v1/runs/resumable")
        if not store.can_resume(saved.status, saved.owner):
            said = "finished" if saved.status == FINISHED else "is still running"
            raise ApiError(409, f"run {run_id} {said}; nothing to resume", "list them: GET /v1/runs/resumable")
        return _stream(service, agent, saved.question, run_id, lambda emit: orch.aresume(run_id, on_event=emit))

    return [
        Route("/v1/agents", list_agents, methods=["GET"]),
        Route("/v1/runs", start_run, methods=["POST"]),
        Route("/v1/runs/resumable", resumable_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}/approve", approve_run, methods=["POST"]),
        Route("/v1/runs/{run_id}/resume", resume_run, methods=["POST"]),
        *conversations.routes(service),
        *openai_compat.routes(service),
    ]


def _one_checkpoint_store(
    options: Mapping[str, Any], agents: Mapping[str, Orchestrator] | None
) -> tuple[dict[str, Any], CheckpointStore | None]:
    """The orchestrator options with their `checkpoints` opened once (every agent shares the store, so a run in
    flight is this server's whichever agent runs it), and that store: the options', else the given agents'."""
    options = dict(options)
    if options.get("checkpoints") is not None:
        from decompose.checkpoints import open_store

        options["checkpoints"] = open_store(options["checkpoints"])
        return options, options["checkpoints"]
    given = (getattr(agent, "checkpoints", None) for agent in (agents or {}).values())
    return options, next((store for store in given if store is not None), None)


def _checkpoints(service: Service) -> CheckpointStore:
    if service.checkpoints is None:
        raise ApiError(
            404,
            "this server keeps no checkpoints: its runs cannot be resumed",
            "start it with `decompose serve --checkpoints [PATH]`",
        )
    return service.checkpoints


class WebPage:
    """`GET /` (the web page) and `/static/NAME` (its files, a fixed set read at startup: no path reaches beyond
    them). They hold no data, so they are served without a key; everything else goes on to the API."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.files = {"/": STATIC / "index.html", **{f"/static/{f.name}": f for f in STATIC.iterdir() if f.is_file()}}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, root = scope.get("path", ""), scope.get("root_path", "")
        path = path[len(root) :] if root and path.startswith(root + "/") else path  # mounted under a prefix
        file = self.files.get(path) if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") else None
        if file is None:
            return await self.app(scope, receive, send)
        await FileResponse(file, headers=PAGE_HEADERS)(scope, receive, send)


def checked_plan(orch: Orchestrator, data: Any) -> Plan:
    """A plan from a request (its JSON form, as data or text), checked as `execute` would: 422 when invalid."""
    try:
        return orch.check_plan(data)
    except PlanError as exc:
        raise ApiError(422, f"the plan is invalid: {exc.args[0]}", exc.hint) from None


async def _for_review(
    service: Service, agent: str, orch: Orchestrator, question: str | None, plan: Plan | None
) -> Response:
    if plan is None:
        try:
            plan = await orch.aplan(question or "")  # question_of read it: a body without a plan has one
        except DecomposeError as exc:
            raise api_error_of(exc) from None
    run_id = uuid.uuid4().hex
    question = question or plan.question or ""
    await asyncio.to_thread(service.store.save_review, run_id, agent, question, plan.spec())
    return JSONResponse(
        {
            "run_id": run_id,
            "agent": agent,
            "question": question,
            "plan": plan.spec(),
            "approve": f"/v1/runs/{run_id}/approve",
        },
        status_code=201,
    )


def _stream(
    service: Service,
    agent: str,
    question: str,
    run_id: str,
    start: Callable[[Callable[[Event], None]], Coroutine[Any, Any, Result]],
) -> Response:
    """Start the run (`start(on_event)` makes its coroutine) and stream it: `run`, the events, `result`."""
    feed = RunFeed()

    async def run() -> None:
        await settle(feed, start(feed.emit), question, run_id=run_id, agent=agent)

    service.start(run())
    return event_stream(run_frames(feed, ("run", {"id": run_id, "agent": agent, "question": question})))
