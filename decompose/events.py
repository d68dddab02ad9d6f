"""Typed events and token usage: the single stream the CLI, callbacks, traces and the server's stream read.

The events are a discriminated union (`RunEvent`): each is a frozen dataclass whose JSON form (`to_dict`) names
it under `"type"`, and `Event.from_dict` turns that form back into the same event, so a `--trace` line or a
server-sent event is the event itself. Code that tells events apart matches on their classes; the type name is
only the wire form. How an event changes a run's state is `decompose.run_state.apply`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from langchain_core.messages import AIMessage

# Every event type by its wire name: filled as each class is defined.
EVENT_TYPES: dict[str, type[Event]] = {}


@dataclass(frozen=True)
class Event:
    t: float = field(default_factory=time.monotonic, kw_only=True)

    type: ClassVar[str] = "Event"  # the discriminator: the class's name, in the JSON form under "type"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type = cls.__name__
        EVENT_TYPES[cls.type] = cls

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunEvent:
        """The event whose `to_dict()` is `data` (a trace line, a server-sent event's data): `Event.from_dict(
        e.to_dict()) == e`. An unknown type or a missing or unknown field is a `ValueError` that names it."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValueError('an event is a JSON object with a "type", e.g. {"type": "Answered", "answer": "42"}')
        kind = EVENT_TYPES.get(data["type"])
        if kind is None:
            raise ValueError(f"unknown event type {data['type']!r}; the types are {', '.join(EVENT_TYPES)}")
        if cls is not Event and not issubclass(kind, cls):
            raise ValueError(f"{data['type']} is not a {cls.__name__}")
        fields = {f.name for f in dataclasses.fields(kind)}
        values = {k: v for k, v in data.items() if k != "type"}
        unknown = sorted(values.keys() - fields)
        if unknown:
            raise ValueError(f"{data['type']} has no field {unknown[0]!r}; its fields are {', '.join(sorted(fields))}")
        try:
            return kind(**values)  # type: ignore[return-value]  # EVENT_TYPES holds RunEvent's classes only
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"{data['type']}: {exc}") from None


@dataclass(frozen=True)
class PlanReady(Event):
    plan: dict[str, Any]  # the plan's JSON form: events stay plain data
    replan: int = 0  # 0 for the first plan; n when the n-th replan added steps (the plan holds all of them)


@dataclass(frozen=True)
class PlanFallback(Event):
    """The plan about to run is not one the model wrote: `kind` "salvaged" (its last plan with the unusable steps
    dropped) or "direct" (no usable plan, `Decomposer(on_failure="direct")`: the question as the one step).
    Emitted before that plan's `PlanReady`; `reason` is the last problem with the model's plan."""

    kind: str
    reason: str


@dataclass(frozen=True)
class StepStarted(Event):
    step_id: int
    question: str
    tool: str | None = None


@dataclass(frozen=True)
class StepFinished(Event):
    step_id: int
    answer: Any
    elapsed: float
    model: str | None = None
    usage: dict[str, int] | None = None  # this step's model tokens: {"input", "output", "calls"}
    sources: list[dict[str, Any]] | None = None  # passages it was shown: [{"id", "score"}]
    program: str | None = None  # a program step's program
    program_output: str | None = None  # what it printed
    vote: dict[str, float] | None = None  # self-consistency: answer -> votes
    args: dict[str, Any] | None = None  # a tool step's arguments when the model corrected the plan's


@dataclass(frozen=True)
class StepFailed(Event):
    step_id: int
    error: str
    program: str | None = None  # a program step's failed program
    program_output: str | None = None
    elapsed: float | None = None  # seconds since it started


@dataclass(frozen=True)
class StepSkipped(Event):
    step_id: int
    reason: str


@dataclass(frozen=True)
class ApprovalRequested(Event):
    """A tool call waits for a person (decompose/approvals.py): the step is `awaiting` until the run is resumed
    with a decision; `reason` says why it needs one."""

    step_id: int
    tool: str
    args: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Retried(Event):
    phase: str  # decompose / solve / synthesize
    attempt: int
    reason: str
    wait: float
    step_id: int | None = None
    kind: str = "transport"  # the retry rule's kind: transport (HTTP, timeout), parse (a reply re-asked), tool


@dataclass(frozen=True)
class IntentDetected(Event):
    """A routed turn's first event: what the intent router decided (see `decompose.intents`)."""

    intent: str
    confidence: float | None  # a trained router's probability; None when a model only named its choice
    router: str  # "zero-shot:<model>" or "trained:<model>"
    route: str | None = None  # the route the turn took (its tools and instructions)
    error: str | None = None  # why the fallback intent was given, if it was


@dataclass(frozen=True)
class RouteChosen(Event):
    """`strategy="auto"`: how the question is answered (direct, cot, program, retrieval or decompose), why, and
    what each candidate tried answered; before the plan."""

    name: str
    why: str
    tried: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answered(Event):
    answer: str


@dataclass
class TokenCount:
    input: int = 0
    output: int = 0
    calls: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output

    def add(self, message: AIMessage | None) -> None:
        """Count one call, with the tokens the server reported for it."""
        self.calls += 1
        meta = getattr(message, "usage_metadata", None) or {}
        self.input += int(meta.get("input_tokens", 0) or 0)
        self.output += int(meta.get("output_tokens", 0) or 0)

    def to_dict(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "calls": self.calls}


@dataclass
class Usage:
    """Tokens in/out per phase (route, decompose, solve, synthesize), model calls, retries. Calls answered from the
    model-call cache are not model calls and their tokens are not counted here: `cached` counts them, with the
    tokens their stored replies took when they were made (what the cache saved). `cost`: USD of the model calls
    (`decompose.pricing`), None once a call went to an unpriced model; a cache hit costs nothing."""

    phases: dict[str, TokenCount] = field(default_factory=dict)
    transport_retries: int = 0
    parse_retries: int = 0
    cached: TokenCount = field(default_factory=TokenCount)
    cost: float | None = 0.0

    def add(self, phase: str, message: AIMessage | None, cost: float | None = 0.0) -> None:
        self.phases.setdefault(phase, TokenCount()).add(message)
        self.cost = None if self.cost is None or cost is None else self.cost + cost

    @property
    def input_tokens(self) -> int:
        return sum(c.input for c in self.phases.values())

    @property
    def output_tokens(self) -> int:
        return sum(c.output for c in self.phases.values())

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def model_calls(self) -> int:
        return sum(c.calls for c in self.phases.values())

    @property
    def cache_hits(self) -> int:
        return self.cached.calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "model_calls": self.model_calls,
            "transport_retries": self.transport_retries,
            "parse_retries": self.parse_retries,
            "cache_hits": self.cache_hits,
            "cached_tokens": self.cached.total,
            "cost": self.cost,
            "phases": {k: v.to_dict() for k, v in self.phases.items()},
        }


# The union of every event a run emits; `decompose.run_state.apply` matches on it.
RunEvent = (
    PlanReady
    | PlanFallback
    | StepStarted
    | StepFinished
    | StepFailed
    | StepSkipped
    | ApprovalRequested
    | Retried
    | IntentDetected
    | RouteChosen
    | Answered
)

Emit = Callable[[Event], None]
