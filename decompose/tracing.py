"""OpenTelemetry spans for a run: imported only once tracing is on (`decompose/telemetry.py` decides).

A run is a tree of spans:

    invoke_agent decompose          the run (a child of the caller's current span: an application's, serve's request)
    ├─ route / decompose            phases, in order (decompose again for a replan)
    │  └─ chat MODEL                a model call (GenAI semantic conventions), one span per model tried
    ├─ solve
    │  └─ step N                    each plan step, while it runs
    │     ├─ chat MODEL
    │     └─ execute_tool NAME
    └─ synthesize
       └─ chat MODEL

The step spans follow the run's typed events (`on_event`, fed by the run's record), so they open and close exactly
when the live view's steps do; a `Retried` event becomes a `retry` span event on the call it retried (else its step,
else its phase) and a model fallback or a salvaged plan a `fallback` or `plan_fallback` event. The spans are given
their parents explicitly (steps run in tasks of their own); a model or tool call's span is the current span while
it runs, so an HTTP client's own instrumentation nests under it. Questions, answers, tool arguments and results
are recorded only with `content` on: they may hold personal data.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from decompose.events import (
    ApprovalRequested,
    Event,
    IntentDetected,
    PlanFallback,
    PlanReady,
    Retried,
    RouteChosen,
    StepFailed,
    StepFinished,
    StepSkipped,
    StepStarted,
)
from decompose.models import chat_model_of

if TYPE_CHECKING:
    from decompose.result import Result

T = TypeVar("T")
MAX_TEXT = 4000  # a recorded question, answer or tool result longer than this is cut: a span is not a document


class Tracing:
    """An Orchestrator's tracer, and whether content goes on its spans."""

    def __init__(self, provider: Any, *, content: bool, from_environment: bool = False):
        self.provider = provider
        self.tracer = provider.get_tracer("decompose", _version())
        self.content = content
        self.from_environment = from_environment
        self._requests: list[tuple[Runnable, dict[str, Any]]] = []  # each model's request attributes, found once

    def request_attributes(self, model: Runnable, name: str) -> dict[str, Any]:
        for known, attributes in self._requests:  # by identity: chat models are unhashable
            if known is model:
                return attributes
        self._requests.append((model, _request_attributes(model, name)))
        return self._requests[-1][1]

    def __reduce__(self) -> Any:
        # On a Ray worker the Orchestrator traces as the worker's environment says: a provider's exporter threads
        # cannot travel (one the application built stops the Orchestrator from travelling at all).
        from decompose.telemetry import tracing

        return tracing, (None, self.content)

    def run(self, run_id: str) -> RunTrace:
        return RunTrace(self, run_id)


class RunTrace:
    """The spans of one run."""

    def __init__(self, tracing: Tracing, run_id: str):
        self.tracing = tracing
        self.tracer = tracing.tracer
        self.content = tracing.content
        self.run_id = run_id
        self.root: Span | None = None
        self.phase_span: Span | None = None
        self.steps: dict[int, Span] = {}
        self.calls: set[Span] = set()  # model and tool calls in flight: where their retries are recorded

    @contextlib.contextmanager
    def run(self, question: str) -> Iterator[Span]:
        """The run's span, current while the run lasts; its parent is the caller's current span."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "decompose",
            "decompose.run.id": self.run_id,
        }
        if self.content:
            attributes["decompose.question"] = _text(question)
        with self.tracer.start_as_current_span("invoke_agent decompose", attributes=attributes) as span:
            self.root = span
            try:
                yield span
            finally:
                for step_id in list(self.steps):  # cancelled mid-step: no step span is left open
                    self._end_step(step_id, error="the run ended before the step did")

    def finish(self, result: Result) -> None:
        """What the run's span says of its result: usage, the route, an error the partial result carries."""
        if self.root is None:
            return
        usage = result.usage
        self.root.set_attributes(
            {
                "decompose.usage.input_tokens": usage.input_tokens,
                "decompose.usage.output_tokens": usage.output_tokens,
                "decompose.usage.model_calls": usage.model_calls,
            }
        )
        if self.content and result.answer is not None:
            self.root.set_attribute("decompose.answer", _text(result.answer))
        if result.error:
            self.root.set_status(Status(StatusCode.ERROR, result.error))

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.tracer.start_as_current_span(
            name, context=self._context(self.root), attributes={"decompose.phase": name}
        ) as span:
            self.phase_span = span
            try:
                yield
            finally:
                self.phase_span = None

    def on_event(self, event: Event) -> None:
        """A run event, as spans: a step's span opens and closes with it; a retry or fallback is a span event."""
        match event:
            case StepStarted():
                attributes: dict[str, Any] = {"decompose.step.id": event.step_id}
                if event.tool:
                    attributes["decompose.step.tool"] = event.tool
                if self.content:
                    attributes["decompose.step.question"] = _text(event.question)
                self.steps[event.step_id] = self.tracer.start_span(
                    f"step {event.step_id}", context=self._context(self.phase_span or self.root), attributes=attributes
                )
            case StepFinished():
                span = self.steps.get(event.step_id)
                if span is not None:
                    if event.model:
                        span.set_attribute("decompose.step.model", event.model)
                    if self.content:
                        span.set_attribute("decompose.step.answer", _text(event.answer))
                    self._end_step(event.step_id)
            case StepFailed():
                self._end_step(event.step_id, error=event.error)
            case ApprovalRequested():  # the call waits for a person: this run's span of the step ends here
                span = self.steps.get(event.step_id)
                if span is not None:
                    span.add_event(
                        "approval_requested", {"gen_ai.tool.name": event.tool, "decompose.reason": event.reason}
                    )
                    self._end_step(event.step_id)
            case StepSkipped():  # never ran: a span of no length says so, where the step sits in the tree
                span = self.tracer.start_span(
                    f"step {event.step_id}",
                    context=self._context(self.phase_span or self.root),
                    attributes={"decompose.step.id": event.step_id, "decompose.step.skipped": event.reason},
                )
                span.end(end_time=getattr(span, "start_time", None))  # an SDK span's start; None: now
            case Retried():
                attributes = {
                    "decompose.retry.kind": event.kind,
                    "decompose.retry.attempt": event.attempt,
                    "decompose.retry.reason": event.reason,
                    "decompose.retry.wait": event.wait,
                    "decompose.phase": event.phase,
                }
                self._event_target(event.step_id).add_event("retry", attributes)
            case PlanFallback():
                (self.phase_span or self.root or trace.INVALID_SPAN).add_event(
                    "plan_fallback", {"decompose.fallback.kind": event.kind, "decompose.fallback.reason": event.reason}
                )
            case PlanReady():
                if self.root is not None:
                    self.root.set_attribute("decompose.plan.steps", len(event.plan.get("steps", [])))
            case RouteChosen():
                if self.root is not None:
                    self.root.set_attribute("decompose.route", event.name)
            case IntentDetected():
                if self.root is not None:
                    self.root.set_attribute("decompose.intent", event.intent)

    def model_attempts(
        self,
        attempt: Callable[[Runnable], Awaitable[T]],
        *,
        phase: str,
        step_id: int | None,
        name_of: Callable[[Runnable], str],
    ) -> Callable[[Runnable], Awaitable[T]]:
        """`attempt` (one model's try at a call, its retries included) in a span per model tried; a model tried
        after another failed carries a `fallback` event naming it and its failure."""
        failed: list[tuple[str, BaseException]] = []

        async def traced(model: Runnable) -> T:
            name = name_of(model)
            attributes = {**self.tracing.request_attributes(model, name), "decompose.phase": phase}
            if step_id is not None:
                attributes["decompose.step.id"] = step_id
            with self._call_span(f"chat {name}", step_id, SpanKind.CLIENT, attributes) as span:
                if failed:
                    before, error = failed[-1]
                    span.add_event(
                        "fallback",
                        {
                            "decompose.fallback.from": before,
                            "decompose.fallback.reason": str(error),
                            "error.type": type(error).__qualname__,
                        },
                    )
                try:
                    output = await attempt(model)
                except Exception as exc:
                    failed.append((name, exc))
                    span.set_attribute("error.type", type(exc).__qualname__)
                    raise
                span.set_attributes(_response_attributes(output))
                return output

        return traced

    async def tool_call(self, call: Awaitable[T], tool: BaseTool, args: dict[str, Any], step_id: int) -> T:
        """A tool's call (its retries included) in a span; its arguments and result only with content on."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool.name,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": f"{self.run_id}:{step_id}",
            "decompose.step.id": step_id,
        }
        if tool.description:
            attributes["gen_ai.tool.description"] = _text(tool.description)
        if self.content:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(args, default=str, ensure_ascii=False)
        with self._call_span(f"execute_tool {tool.name}", step_id, SpanKind.INTERNAL, attributes) as span:
            try:
                result = await call
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            if self.content:
                span.set_attribute("gen_ai.tool.call.result", _text(result))
            return result

    @contextlib.contextmanager
    def _call_span(self, name: str, step_id: int | None, kind: SpanKind, attributes: dict[str, Any]) -> Iterator[Span]:
        parent = self.steps.get(step_id) if step_id is not None else None
        with self.tracer.start_as_current_span(
            name, context=self._context(parent or self.phase_span or self.root), kind=kind, attributes=attributes
        ) as span:
            self.calls.add(span)
            try:
                yield span
            finally:
                self.calls.discard(span)

    def _event_target(self, step_id: int | None) -> Span:
        """Where a retry is recorded: the call it retried (the current span), else its step, else its phase."""
        current = trace.get_current_span()
        if current in self.calls:
            return current
        step = self.steps.get(step_id) if step_id is not None else None
        return step or self.phase_span or self.root or trace.INVALID_SPAN

    def _end_step(self, step_id: int, error: str | None = None) -> None:
        span = self.steps.pop(step_id, None)
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    @staticmethod
    def _context(parent: Span | None) -> Context | None:
        return None if parent is None else trace.set_span_in_context(parent)


def _request_attributes(model: Runnable, name: str) -> dict[str, Any]:
    """The GenAI request attributes of a chat span: operation, provider, model, temperature."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": name}
    chat_model = chat_model_of(model)
    params: dict[str, Any] = {}
    try:  # LangChain's own description of the call (what LangSmith reads)
        params = dict(chat_model._get_ls_params()) if chat_model is not None else {}
    except Exception:
        pass
    provider = params.get("ls_provider")
    if provider:
        # gen_ai.provider.name replaced gen_ai.system; older backends (and their dashboards) still read the latter
        attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = str(provider)
    if isinstance(params.get("ls_temperature"), int | float):
        attributes["gen_ai.request.temperature"] = float(params["ls_temperature"])
    if isinstance(params.get("ls_max_tokens"), int):
        attributes["gen_ai.request.max_tokens"] = params["ls_max_tokens"]
    return attributes


def _response_attributes(output: Any) -> dict[str, Any]:
    """The GenAI response attributes from a reply: tokens, finish reason, the model that answered."""
    message = output if isinstance(output, AIMessage) else output.get("raw") if isinstance(output, dict) else None
    if not isinstance(message, AIMessage):
        return {}
    attributes: dict[str, Any] = {}
    usage: dict[str, Any] = dict(message.usage_metadata or {})
    if "input_tokens" in usage:
        attributes["gen_ai.usage.input_tokens"] = int(usage["input_tokens"] or 0)
    if "output_tokens" in usage:
        attributes["gen_ai.usage.output_tokens"] = int(usage["output_tokens"] or 0)
    meta = message.response_metadata or {}
    reason = meta.get("finish_reason") or meta.get("stop_reason")
    if reason:
        attributes["gen_ai.response.finish_reasons"] = [str(reason)]
    if meta.get("model_name"):
        attributes["gen_ai.response.model"] = str(meta["model_name"])
    if isinstance(meta.get("id"), str):
        attributes["gen_ai.response.id"] = meta["id"]
    return attributes


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _version() -> str:
    try:
        return version("decompose-agents")
    except PackageNotFoundError:  # run from a source checkout
        return "0"
