"""What a tool call needs before it may run in a model-made plan: a side-effecting tool runs only when the user's
own words ask for that action (the **request gate**), and an identifier argument must come from the conversation
or a tool result, never from the model's imagination (the **grounding check**).

A tool declares what it needs in its metadata (`requires_request`, `identifier_args`); a side-effecting tool that
declares nothing is requested by the words of its name ("issue_refund" → "refund"). The gate reads the
conversation as the user wrote it: the current message, and the previous one when the agent's last answer asked
the user something back (an identifier, or "Do you want me to …?" answered "yes").

Plans a person wrote or approved (`Orchestrator.execute`) are that person's request: the gates apply only to the
plans a model makes in `Orchestrator.run`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool

from decompose.errors import ToolError
from decompose.plan import Plan, Step
from decompose.scoring import tool_verdict

REQUEST = "request"  # metadata key: {"pattern": regex of the words that ask for it, "offer": the question instead}
IDENTIFIERS = "identifiers"  # metadata key: names of the arguments that identify a customer, an order, ...

_GENERIC_VERBS = {
    "issue",
    "open",
    "create",
    "make",
    "send",
    "post",
    "put",
    "set",
    "update",
    "delete",
    "add",
    "do",
    "run",
    "call",
    "get",
    "new",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|[;\n]+")  # not the dots of an email or a price
_QUESTION_START = re.compile(
    r"^\W*(?:and|so|but|also|then|ok|okay)?\W*(?:can|could|may|might|am|is|are|do|does|did|would|will|should|was|"
    r"were|have|has|what|when|where|which|who|whom|whose|why|how)\b",
    re.IGNORECASE,
)
_ASKS_YOU = re.compile(
    r"^\W*(?:and|so|but|also|then|ok|okay)?\W*(?:can|could|would|will)\s+you\b|\bplease\b|"
    r"\b(?:i'?d like|i would like|i want|i need|i wish)\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"\b(?:don'?t|do not|doesn'?t|does not|no need|not (?:asking|looking|want|need)|never mind|"
    r"without|instead of)\b",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r",|:|\bbut\b|\band\b|\bso\b", re.IGNORECASE)
# A sum of money: with a currency sign or word, or with cents (27.50); not a count ("1 mug") or an id (A1001).
_AMOUNT = re.compile(
    r"[$€£]\s?(\d+(?:\.\d{1,2})?)|(?<![\w.])(\d+\.\d{2})(?!\w|\.\d)|"
    r"(?<![\w.])(\d+(?:\.\d{1,2})?)\s?(?:dollars?|usd|eur|euros?|gbp|pounds?)\b",
    re.IGNORECASE,
)
_AFFIRMS = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|sure|ok(?:ay)?|please do|go ahead|do it|do that|please|"
    r"that would be great|correct)\b",
    re.IGNORECASE,
)
# Identifier-looking tokens: order and customer ids (A1001, C001, TCK-12) and emails.
ID_TOKEN = re.compile(r"[^@\s,;:()<>\"']+@[^@\s,;:()<>\"']+\.\w+|\b[A-Za-z]{1,4}-?\d{3,}\b")


def requires_request(tool: BaseTool, pattern: str, offer: str, *, amount: str | None = None) -> BaseTool:
    """Declare the words that ask for this tool's action (a regex, matched case-insensitively) and the question
    the agent asks instead when nobody asked ("Do you want me to open a support ticket?"). `amount`: the argument
    that takes an amount, set to the one the request names ("please refund 27.50") when it names one."""
    re.compile(pattern)  # a bad pattern fails here, where it is written
    declared = {"pattern": pattern, "offer": offer, **({"amount": amount} if amount else {})}
    tool.metadata = {**(tool.metadata or {}), REQUEST: declared}
    return tool


def identifier_args(tool: BaseTool, *names: str) -> BaseTool:
    """Declare the arguments that identify something (an email, an order id): their values must come from the
    conversation or a tool result."""
    tool.metadata = {**(tool.metadata or {}), IDENTIFIERS: tuple(names)}
    return tool


def request_of(tool: BaseTool) -> dict[str, str]:
    declared = (tool.metadata or {}).get(REQUEST)
    if declared:
        return declared
    words = [w for w in tool.name.lower().split("_") if len(w) > 2 and w not in _GENERIC_VERBS] or [tool.name]
    action = tool.name.replace("_", " ")
    return {"pattern": r"\b(?:" + "|".join(map(re.escape, words)) + ")", "offer": f"Do you want me to {action}?"}


@dataclass
class UserWords:
    """The conversation as the gates read it: the user's messages that may ask for an action now, and every
    text a value may come from."""

    asking: list[str]  # the current message; the previous one too when the agent asked something back
    affirmed_offer: str = ""  # the agent's last questions ("Do you want me to …?") when the user said yes
    said: list[str] = field(default_factory=list)  # every user message and every earlier answer
    users: list[str] = field(default_factory=list)  # the user's own messages, the current one last

    @classmethod
    def of(cls, question: str, history: Sequence[BaseMessage] = ()) -> UserWords:
        users = [str(m.content) for m in history if isinstance(m, HumanMessage)]
        # Earlier answers, and the conversation's state (system messages: what earlier turns' tools found).
        answers = [str(m.content) for m in history if isinstance(m, (AIMessage, SystemMessage))]
        last_answer = next((str(m.content) for m in reversed(history) if isinstance(m, AIMessage)), "")
        asked = " ".join(s for s in _sentences(last_answer) if s.endswith("?"))  # what the agent asked back
        asking = ([users[-1]] if asked and users else []) + [question]
        affirmed = asked if _AFFIRMS.match(question) else ""
        return cls(asking=asking, affirmed_offer=affirmed, said=[*users, *answers, question], users=[*users, question])

    def requesting(self, pattern: str) -> list[str]:
        """The sentences that ask for the action `pattern` names: statements and "can you …"/"please" requests
        that name it, not negated; never a question about it ("can I return it?" asks whether, not to)."""
        found = re.compile(pattern, re.IGNORECASE)
        out = [s for text in self.asking for s in _sentences(text) if _asks_for(s, found)]
        if self.affirmed_offer and found.search(self.affirmed_offer):
            out.append(self.affirmed_offer)
        return out

    def contains(self, value: str, results: Iterable[Any] = ()) -> bool:
        """Whether `value` was said in the conversation or appears in a tool result (case-insensitive)."""
        needle = re.compile(r"(?<![\w@.-])" + re.escape(value.strip()) + r"(?![\w@-])", re.IGNORECASE)
        return any(needle.search(text) for text in [*self.said, *map(_text, results)])


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _asks_for(sentence: str, action: re.Pattern) -> bool:
    hit = action.search(sentence)
    # A negation counts in the action's own clause: "I don't want a refund", not "I don't need it, refund it".
    if hit is None or _NEGATED.search(_CLAUSE_BREAK.split(sentence[: hit.start()])[-1]):
        return False
    question = sentence.rstrip().endswith("?") or _QUESTION_START.match(sentence)
    return not question or bool(_ASKS_YOU.search(sentence))


class UngroundedArgument(ToolError):
    """An identifier argument that is neither in the conversation nor in a tool result: the model invented it."""

    def __init__(self, message: str, *, argument: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.argument = argument


class NotRequested(ToolError):
    """A write on another object than the one the user asked about."""


@dataclass
class Grounding:
    """A model-made plan's guard at call time: identifiers from the conversation or a tool result, and a write
    on the object the user named."""

    words: UserWords
    results: list[Any] = field(default_factory=list)  # every tool result of this run so far
    # step id -> (the offer made instead of the write, the steps it depended on)
    withheld: dict[int, tuple[str, list[int]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # identifiers refused as invented: to be asked for

    def withhold(self, steps: Iterable[Step], writes: dict[str, BaseTool]) -> dict[int, str]:
        """The steps calling a side-effecting tool (`writes`, by name) that nobody asked for, each with why,
        before anything runs."""
        found = {}
        for step in steps:
            tool = writes.get(step.tool or "")
            if tool is None:
                continue
            request = request_of(tool)
            if not self.words.requesting(request["pattern"]):
                found[step.id] = f"withheld: the user did not ask for {tool.name}"
                self.withheld[step.id] = (request["offer"], list(step.depends_on))
        return found

    def misses(self, plan: Plan, tools: Sequence[BaseTool], writes: dict[str, BaseTool]) -> str | None:
        """What a model-made plan leaves out of the user's words, said to the planner for one re-ask: an action
        the user asked for that no step takes, an id the user named that no step uses, or (for tools over
        records, which declare identifiers) no look-up at all. None when the plan covers them."""
        problems = []
        used = {step.tool for step in plan.steps}
        for tool in writes.values():
            asked = self.words.requesting(request_of(tool)["pattern"])
            if asked and tool.name not in used:
                problems.append(f"the user asked for it ({asked[0]!r}) but no step calls {tool.name}")
        if not any(identifiers_of(t) for t in tools):
            return "; ".join(problems) or None
        planned = " ".join(f"{step.question} {step.args}" for step in plan.steps).lower()
        for token in dict.fromkeys(ID_TOKEN.findall(self.words.asking[-1])):
            if "@" not in token and token.lower() not in planned:  # an email may go unused; a named order not
                problems.append(
                    f'the user named {token} but no step uses it: pass "{token}" to the tool that '
                    "takes it, not another value"
                )
        if not any(step.tool for step in plan.steps):
            problems.append(
                "no step calls a tool: look up what the user asks about with the tools (an argument "
                "the user has not given, such as their email or an order id, is left empty)"
            )
        return "; ".join(problems) or None

    def asks_user(self) -> bool:
        return bool(self.withheld or self.missing)

    def follow_ups(self, answer: str, plan: Plan | None = None) -> str:
        """The answer with what the agent must ask: the offers made instead of withheld writes (not one whose
        check said no: "Do you want me to issue the refund?" after "it cannot be refunded"), and the identifiers
        it would not invent (unless the answer already asks a question)."""
        said_no = {s.id for s in (plan.steps if plan else ()) if s.status == "done" and tool_verdict(s.answer) is False}
        extra = list(dict.fromkeys(offer for offer, after in self.withheld.values() if not said_no & set(after)))
        if self.missing and "?" not in answer:
            wanted = _spoken_all(self.missing)
            extra.insert(0, f"Could you tell me your {wanted}?")
        extra = [q for q in extra if q not in answer]
        return " ".join(filter(None, [answer.rstrip(), *extra])) if extra else answer

    def repair(self, tool: BaseTool, args: dict[str, Any]) -> dict[str, Any]:
        """Common slips with a certain repair: a whole record where its field is meant (`{1}` for
        `{1.customer_id}`), a result's field name written as the value (`"latest_order_id"`), an id copied from a
        worked example where the user gave one of its kind, and an amount other than the one the request names."""
        fixed = dict(args)
        amount_arg = request_of(tool).get("amount")
        if amount_arg and amount_arg in fixed:
            named = {
                Decimal(next(filter(None, m)))
                for s in self.words.requesting(request_of(tool)["pattern"])
                for m in _AMOUNT.findall(s)
            }
            if len(named) == 1:
                fixed[amount_arg] = f"{named.pop():.2f}"
        for name in identifiers_of(tool):
            value = fixed.get(name)
            if isinstance(value, dict):
                picked = _field_for(value, name)
                if picked is not None:
                    fixed[name] = picked
            elif isinstance(value, str) and not self.words.contains(value, self.results):
                # A field of its own kind only: `latest_order_id` is an order id, `customer_id` is not.
                in_results = [
                    r[value]
                    for r in self.results
                    if isinstance(r, dict) and isinstance(r.get(value), str) and value.endswith(name)
                ]
                # A model step's sentence around the one id it found ("The lamp is in order A2001.").
                found = {t for t in ID_TOKEN.findall(value) if self.words.contains(t, self.results)}
                # The one value of its kind the user gave (an email copied from a worked example, not theirs).
                given = {
                    t.lower(): t
                    for text in self.words.users
                    for t in ID_TOKEN.findall(text)
                    if _same_kind(value, {t.lower()})
                }
                if len(set(in_results)) == 1:
                    fixed[name] = in_results[0]
                elif len(found) == 1:
                    fixed[name] = found.pop()
                elif ID_TOKEN.fullmatch(value.strip()) and len(given) == 1:
                    fixed[name] = next(iter(given.values()))
        return fixed

    def require(self, tool: BaseTool, step: Step, args: dict[str, Any]) -> None:
        """An identifier the plan left empty, with no other identifier given: the user has not said it yet, so
        it is asked for (before the arguments are validated: a model re-asked for them would invent one)."""
        names = identifiers_of(tool)
        empty = [
            n for n in names if n in args and (args[n] is None or isinstance(args[n], str) and not args[n].strip())
        ]
        if empty and not any(isinstance(args.get(n), (str, dict)) and args[n] for n in names):
            self.missing += empty  # all of them at once: a name and a zip code are one question, not three turns
            wanted = _spoken_all(empty)
            raise UngroundedArgument(
                f"step {step.id}: {tool.name} needs the user's {wanted}",
                argument=empty[0],
                hint=f"ask the user for their {wanted}",
            )

    def check(self, tool: BaseTool, step: Step, args: dict[str, Any], *, writes: bool) -> None:
        for name in identifiers_of(tool):
            value = args.get(name)
            if isinstance(value, str) and value.strip() and not self.words.contains(value, self.results):
                self.missing.append(name)
                raise UngroundedArgument(
                    f"step {step.id}: {tool.name}'s {name} {value!r} is neither in the conversation nor in a tool "
                    "result",
                    argument=name,
                    hint=f"ask the user for their {_spoken(name)}",
                )
        if writes:
            self._on_named_object(tool, step, args)

    def _on_named_object(self, tool: BaseTool, step: Step, args: dict[str, Any]) -> None:
        """A write whose identifier differs from every one the request names is not what was asked."""
        named = {t.lower() for s in self.words.requesting(request_of(tool)["pattern"]) for t in ID_TOKEN.findall(s)}
        for name in identifiers_of(tool):
            value = args.get(name)
            if not named or not isinstance(value, str) or not ID_TOKEN.fullmatch(value.strip()):
                continue
            if value.strip().lower() not in named and _same_kind(value, named):
                raise NotRequested(
                    f"step {step.id}: the user asked about {', '.join(sorted(named))}, not {value.strip()}",
                    hint="act only on what the user named",
                )


def identifiers_of(tool: BaseTool) -> tuple[str, ...]:
    return tuple((tool.metadata or {}).get(IDENTIFIERS, ()))


def _field_for(record: dict[str, Any], name: str) -> Any:
    for key in (name, f"{name}_id", name.removesuffix("_id") + "_id", "id"):
        if isinstance(record.get(key), str):
            return record[key]
    return None


def _same_kind(value: str, named: set[str]) -> bool:
    """An email against emails, an id against ids of the same prefix letters."""

    def kind(token: str) -> str:
        return "@" if "@" in token else re.sub(r"[-\d]", "", token.lower())

    return kind(value.strip()) in {kind(t) for t in named}


def _spoken(name: str) -> str:
    return name.replace("_", " ")


def _spoken_all(names: Iterable[str]) -> str:
    """`first name, last name and zip`."""
    spoken = list(dict.fromkeys(map(_spoken, names)))
    return " and ".join(filter(None, [", ".join(spoken[:-1]), spoken[-1]]))


def _text(value: Any) -> str:
    """A tool result's values, one a line: its field names are not values ("latest_order_id" is no order id)."""
    if isinstance(value, dict):
        return "\n".join(_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(_text(v) for v in value)
    return str(value)
