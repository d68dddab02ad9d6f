"""`Result`: what a run returns (answer, plan with every step's state, usage, events, timing)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from decompose.approvals import ApprovalRequest
from decompose.errors import DecomposeError
from decompose.events import Event, Usage
from decompose.plan import Plan


@dataclass
class Result:
    question: str
    answer: str | None
    plan: Plan | None
    usage: Usage
    events: list[Event] = field(default_factory=list)
    elapsed: float = 0.0
    error: str | None = None  # set when the run stopped early; `answer` may still hold a partial answer
    answer_sources: list[dict[str, Any]] = field(default_factory=list)  # passages the final answer was shown
    route: dict[str, Any] | None = None  # strategy="auto": {"name", "why", "tried"}; None under other strategies
    run_id: str | None = None  # the run's id: `Orchestrator.resume(run_id)` with checkpoints
    # Calls waiting for a person (decompose/approvals.py): the run stopped without an answer until they are
    # decided with `Orchestrator.resume(run_id, decisions=...)`.
    approvals: list[ApprovalRequest] = field(default_factory=list)

    @property
    def awaiting_approval(self) -> bool:
        return bool(self.approvals)

    @classmethod
    def failed(
        cls,
        question: str | None,
        error: str | BaseException,
        *,
        plan: Plan | None = None,
        usage: Usage | None = None,
        events: list[Event] | None = None,
        elapsed: float = 0.0,
        route: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Result:
        """A run that ended without an answer, with the same keys as any other: `error` is the message, or an
        exception (Ctrl-C and cancellation read "interrupted")."""
        if isinstance(error, BaseException):
            interrupted = isinstance(error, (KeyboardInterrupt, asyncio.CancelledError))
            error = "interrupted" if interrupted else str(error)
        return cls(
            question=question or "",
            answer=None,
            plan=plan,
            usage=usage or Usage(),
            events=events or [],
            elapsed=elapsed,
            error=error,
            route=route,
            run_id=run_id,
        )

    @classmethod
    def partial(cls, exc: BaseException) -> Result | None:
        """What a run that raised `exc` had done: a `DecomposeError`'s `result`, or the Result a cancelled run
        leaves on its `CancelledError` (which must stay exactly that type for asyncio: it has no field of its
        own, so `attach_to` sets one); None when the run made none (a bad question)."""
        if isinstance(exc, DecomposeError):
            return exc.result
        found = vars(exc).get("result")
        return found if isinstance(found, Result) else None

    def attach_to(self, exc: BaseException) -> None:
        """Make this the partial result `Result.partial(exc)` finds."""
        if isinstance(exc, DecomposeError):
            exc.result = self
        else:
            vars(exc)["result"] = self

    @property
    def ok(self) -> bool:
        return self.error is None and self.answer is not None

    @property
    def citations(self) -> list[dict[str, Any]]:
        """The passages the answered steps and the final answer were shown, once each: [{"id", "score", "steps":
        [step ids], "answer": shown to the final answer}]."""
        cited: dict[str, dict[str, Any]] = {}

        def cite(source: dict[str, Any]) -> dict[str, Any]:
            entry = cited.setdefault(source["id"], {**source, "steps": [], "answer": False})
            if (source.get("score") or 0) > (entry.get("score") or 0):
                entry["score"] = source["score"]
            return entry

        for step in self.plan.steps if self.plan is not None else []:
            if step.status == "done":
                for source in step.sources or []:
                    cite(source)["steps"].append(step.id)
        for source in self.answer_sources:
            cite(source)["answer"] = True
        return list(cited.values())

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form (documented in the README)."""
        steps = []
        if self.plan is not None:
            for s in self.plan.steps:
                steps.append(
                    {
                        **s.spec(),
                        "status": s.status,
                        "answer": s.answer,
                        "error": s.error,
                        "attempts": s.attempts,
                        "model": s.model,
                        "elapsed": s.elapsed,
                        "vote": s.vote,
                        "sources": s.sources,
                        "program": s.program,
                        "program_output": s.program_output,
                    }
                )
        return {
            "run_id": self.run_id,
            "question": self.question,
            "answer": self.answer,
            "ok": self.ok,
            "error": self.error,
            "elapsed": round(self.elapsed, 4),
            "route": self.route,
            "awaiting_approval": self.awaiting_approval,
            "approvals": [a.to_dict() for a in self.approvals],
            "steps": steps,
            "citations": self.citations,
            "usage": self.usage.to_dict(),
            "events": [e.to_dict() for e in self.events],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)
