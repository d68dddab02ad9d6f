"""`create_app(...)`: the HTTP service — agents, streamed runs with optional plan review and tool approvals,
stored conversations and an OpenAI-compatible chat endpoint — as a Starlette ASGI app. `decompose serve` runs it
under uvicorn; mount it in your own app to serve the agents there (enter its lifespan in yours so a shutdown ends
its runs cleanly)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from decompose.checkpoints import AWAITING, RUNNING, CheckpointStore
from decompose.models import load_model
from decompose.orchestrator import Orchestrator
from decompose.serve import conversations, openai_compat, reviews
from decompose.serve.approvals import routes as approvals_routes
from decompose.serve.approvals import stream_run
from decompose.serve.bodies import optional_str, question_of, read_json
from decompose.serve.catalog import Catalog
from decompose.serve.errors import ApiError, exception_handlers
from decompose.serve.logs import AccessLog
from decompose.serve.reviews import checked_plan, for_review, review_target
from decompose.serve.security import ApiKeys, Guard, RateLimiter, parse_rate
from decompose.serve.service import Service
from decompose.serve.store import DAY, Store
from decompose.telemetry import tracing

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
    approvals: bool = True,
    approval_ttl: float = DAY,
    review_ttl: float = DAY,
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
    The agents' runs are checkpointed in the same database (or in `checkpoints` among the options: a path, a URL
    or a CheckpointStore; or the given agents' own store): a run whose tool call waits for a person ends awaiting
    approval, decided with POST /v1/runs/{id}/decisions, and the runs a dead server left are offered
    (`GET /v1/runs/resumable`, `POST /v1/runs/{run_id}/resume`; docs/durable-runs.md). approvals: the ready
    agents' consequential calls wait (customer service: refunds above 100 dollars); approval_ttl: seconds a call
    waits before its run expires; review_ttl: the same for a plan awaiting review.
    """
    store = Store(db, lease=lease, review_ttl=review_ttl)
    options, checkpoints = _one_checkpoint_store(orchestrator_options or {}, agents)
    if checkpoints is None:  # one store for every agent's runs, in the server's own database: any replica resumes
        checkpoints = options["checkpoints"] = CheckpointStore(store.url, approval_ttl=approval_ttl)
    catalog = Catalog(
        load_model(model) if agents is None else None,
        tools=tools,
        options=options,
        agents=agents,
        approvals=approvals,
    )
    service = Service(
        catalog=catalog,
        store=store,
        checkpoints=checkpoints,
        max_body_bytes=max_body_bytes,
        max_history_tokens=max_history_tokens,
        shutdown_timeout=shutdown_timeout,
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
        review = request.query_params.get("review", "").lower() in ("1", "true", "yes")
        if review:  # a plan for review may be a conversation's next turn
            agent, orch, conversation_id = await review_target(service, body)
        else:
            agent, orch = service.catalog.get(optional_str(body, "agent"))
        plan = checked_plan(orch, body["plan"]) if body.get("plan") is not None else None
        question = question_of(body, example=RUN_EXAMPLE) if plan is None or body.get("question") else None
        if review:
            return await for_review(service, agent, orch, question, plan, conversation_id)
        run_id = uuid.uuid4().hex
        if plan is not None:
            return stream_run(
                service,
                agent,
                question or plan.question or "",
                run_id,
                lambda emit: orch.aexecute(plan, question=question, run_id=run_id, on_event=emit),
            )
        asked = question or ""  # question_of read it: a body without a plan has one
        return stream_run(service, agent, asked, run_id, lambda emit: orch.arun(asked, on_event=emit, run_id=run_id))

    async def resumable_runs(_: Request) -> Response:
        return JSONResponse({"runs": await asyncio.to_thread(service.checkpoints.resumable)})

    async def resume_run(request: Request) -> Response:
        store, run_id = service.checkpoints, request.path_params["run_id"]
        body = await read_json(request, service.max_body_bytes, example='{"agent": "customer-service"} or nothing')
        agent, orch = service.catalog.get(optional_str(body, "agent"))
        if orch.checkpoints is not store:
            raise ApiError(409, f"agent {agent!r} writes no checkpoints here", "resume with the agent that ran it")
        saved = await asyncio.to_thread(store.load, run_id)
        if saved is None:
            raise ApiError(404, f"no run {run_id!r} in the checkpoint store", "list them: GET /v1/runs/resumable")
        if not store.can_resume(saved.status, saved.owner):
            if saved.status == AWAITING:
                raise ApiError(409, f"run {run_id} waits for approval", f"decide it: POST /v1/runs/{run_id}/decisions")
            said = "is still running" if saved.status == RUNNING else saved.status
            raise ApiError(409, f"run {run_id} {said}; nothing to resume", "list them: GET /v1/runs/resumable")
        return stream_run(service, agent, saved.question, run_id, lambda emit: orch.aresume(run_id, on_event=emit))

    return [
        Route("/v1/agents", list_agents, methods=["GET"]),
        Route("/v1/runs", start_run, methods=["POST"]),
        Route("/v1/runs/resumable", resumable_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}/resume", resume_run, methods=["POST"]),
        *reviews.routes(service),
        *approvals_routes(service),
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
