"""`Result`: what a run returns (answer, plan with every step's state, usage, events, timing)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def ok(self) -> bool:
        return self.error is None and self.answer is not None

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form (documented in the README)."""
        steps = []
        if self.plan is not None:
            for s in self.plan.steps:
                steps.append({**s.spec(), "status": s.status, "answer": s.answer, "error": s.error,
                              "attempts": s.attempts, "model": s.model, "elapsed": s.elapsed, "vote": s.vote})
        return {
            "question": self.question,
            "answer": self.answer,
            "ok": self.ok,
            "error": self.error,
            "elapsed": round(self.elapsed, 4),
            "steps": steps,
            "usage": self.usage.to_dict(),
            "events": [e.to_dict() for e in self.events],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)
