"""What a conversation has learned, as structured state: the things its tools looked up (a customer, orders, with
their status and items), the one discussed last of each kind, and the last intent. Built from each turn's tool
calls and results, never from the model's prose, so "can I return it?" after "where is my latest order?" is
planned on that order. The planner sees it as one system message after the earlier turns; the tool guard counts
its values as said (they came from tools)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import SystemMessage

from decompose.plan import Plan, plain_numbers, resolve_args
from decompose.tools.guards import ID_TOKEN

# The fields worth remembering about a thing, beside its id: what a follow-up asks about.
REMEMBERED = (
    "name",
    "email",
    "status",
    "eta",
    "delivered_on",
    "total",
    "max_refundable",
    "eligible",
    "latest_order_id",
)
MAX_ENTITIES = 12  # the newest ones: a long conversation's state stays a few lines
STATE_HEADER = "What this conversation has established (from the tools; use these values, do not ask for them again):"


@dataclass
class Entity:
    kind: str  # "order", "customer": the name of its id field without "_id"
    id: str
    facts: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.facts.items())
        return f"- {self.kind} {self.id}" + (f": {shown}" if shown else "")


@dataclass
class ConversationState:
    entities: dict[str, Entity] = field(default_factory=dict)  # by lowercased id, oldest first
    last: dict[str, str] = field(default_factory=dict)  # kind -> the id discussed last
    intent: str | None = None

    def learn(self, plan: Plan | None, question: str = "", intent: str | None = None, answer: str = "") -> None:
        """Take in a turn: its done tool steps' results, and what it was about — the things its calls named, then
        the one thing of a kind its answer named, then what the user named (which wins)."""
        self.intent = intent or self.intent
        if plan is not None:
            answers = {s.id: s.answer for s in plan.steps if s.status == "done"}
            for step in plan.steps:
                if step.status != "done" or not step.tool:
                    continue
                for entity in _entities(step.answer):
                    self._add(entity)
                for kind, value in _named_in_args(_resolved(step.args, answers)):
                    self._focus(kind, value)
        answered: dict[str, set[str]] = {}
        for known in filter(None, map(self.entities.get, (t.lower() for t in ID_TOKEN.findall(answer or "")))):
            answered.setdefault(known.kind, set()).add(known.id)
        for kind, ids in answered.items():
            if len(ids) == 1:
                self._focus(kind, next(iter(ids)))
        for token in ID_TOKEN.findall(question):  # what the user names now is what they are talking about
            named = self.entities.get(token.lower())
            if named is not None:
                self._focus(named.kind, named.id)
        while len(self.entities) > MAX_ENTITIES:
            self.entities.pop(next(iter(self.entities)))

    def _add(self, entity: Entity) -> None:
        key = entity.id.lower()
        known = self.entities.pop(key, None)  # re-inserted: newest last
        if known is not None and known.kind == entity.kind:
            entity.facts = {**known.facts, **entity.facts}
        self.entities[key] = entity

    def _focus(self, kind: str, value: str) -> None:
        known = self.entities.get(value.lower())
        self.last[known.kind if known else kind] = known.id if known else value

    def message(self) -> SystemMessage | None:
        """The state as the planner reads it; None while nothing is known."""
        if not self.entities and not self.last:
            return None
        lines = [STATE_HEADER, *(e.line() for e in self.entities.values())]
        lines += [f"- the {kind} discussed last: {value}" for kind, value in self.last.items()]
        if self.intent:
            lines.append(f"- the customer's intent: {self.intent}")
        return SystemMessage(content="\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": [{"kind": e.kind, "id": e.id, "facts": e.facts} for e in self.entities.values()],
            "last": dict(self.last),
            "intent": self.intent,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ConversationState:
        state = cls()
        if not data:
            return state
        for item in data.get("entities", []):
            state.entities[str(item["id"]).lower()] = Entity(item["kind"], item["id"], dict(item.get("facts", {})))
        state.last = dict(data.get("last", {}))
        state.intent = data.get("intent")
        return state


def _resolved(args: dict[str, Any], answers: dict[int, Any]) -> dict[str, Any]:
    try:
        return resolve_args(args, answers)
    except Exception:  # noqa: BLE001 — a reference that no longer resolves: nothing to learn from it
        return {}


def _named_in_args(args: dict[str, Any]) -> list[tuple[str, str]]:
    """The (kind, id) pairs a call was about: `order_id="A1003"` → ("order", "A1003")."""
    return [
        (name.removesuffix("_id"), value.strip())
        for name, value in args.items()
        if (name.endswith("_id") or name == "customer") and isinstance(value, str) and value.strip()
    ]


def _entities(result: Any) -> list[Entity]:
    """Every record in a tool result that has an id field (`order_id`, `customer_id`), with its remembered facts."""
    found: list[Entity] = []
    if isinstance(result, list):
        for item in result:
            found += _entities(item)
        return found
    if not isinstance(result, dict):
        return found
    id_field = next(
        (
            k
            for k, v in result.items()
            if k.endswith("_id") and isinstance(v, str) and not k.startswith(("latest_", "refund_", "ticket_"))
        ),
        None,
    )
    if id_field is not None:
        facts = {k: plain_numbers(result[k]) for k in REMEMBERED if isinstance(result.get(k), (str, int, float, bool))}
        items = result.get("items")
        if isinstance(items, list):
            names = [
                i if isinstance(i, str) else f"{i.get('description')} x{i.get('quantity', 1)}"
                for i in items
                if isinstance(i, str) or isinstance(i, dict) and i.get("description")
            ]
            if names:
                facts["items"] = "; ".join(names)
        found.append(Entity(id_field.removesuffix("_id"), result[id_field], facts))
    for value in result.values():
        if isinstance(value, (list, dict)):
            found += _entities(value)
    return found
