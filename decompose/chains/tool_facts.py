"""The answer may not contradict what the tools found: a yes/no verdict (refund_eligibility's `eligible`) or a
status (an order's `status`). A yes/no question gets the tool's verdict; in any other answer, a sentence that says
otherwise about the same thing is replaced by the tool's own statement. Whatever the model: a weak one guesses
"Yes" for an order in transit, a capable one calls a shipped order "pending"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool

from decompose.chains.answer_form import SENTENCE_END, AnswerForm
from decompose.plan import Plan, Step, resolve_args
from decompose.scoring import said_yes, tool_verdict
from decompose.tools.guards import identifiers_of, request_of
from decompose.tools.runner import has_side_effects

VERDICT = "verdict"  # tool metadata: {"topic": regex of the words about it, "yes": sentence, "no": sentence}
RECEIPT = "receipt"  # tool metadata: the sentence that tells the user a write was done ("Ticket {ticket_id} …")

# An order's states as people write them.
STATUS_WORDS = {
    "processing": r"processing|pending|being prepared|not (?:yet )?(?:been )?shipped",
    "shipped": r"shipped|in transit|on (?:its|the) way|out for delivery|dispatched",
    "delivered": r"delivered|arrived",
    "cancelled": r"cancell?ed",
}
_NEGATED_STATE = re.compile(
    r"\b(?:not|n't|never|yet to be|once it(?: has| is)?|until it(?: has| is)?|when it(?: has"
    r"| is)?|after it(?: has| is)?)\s+(?:yet\s+|been\s+|be\s+)*\w+",
    re.IGNORECASE,
)
_NEGATIVE = re.compile(
    r"\b(?:no|not|cannot|can ?not|can't|isn't|won't|unable|ineligible|outside|too late)\b|n't\b", re.IGNORECASE
)
_POSITIVE = re.compile(r"\b(?:yes|can|eligible|refundable|within|allowed|able)\b", re.IGNORECASE)
# A sentence that says an action was done: "we have opened a ticket", "I've issued the refund", "was refunded".
_DONE_VERBS = r"(?:opened|issued|created|processed|made|refunded|filed|submitted|raised|logged|initiated|credited)"
_DONE = re.compile(
    rf"\b(?:have|has|'ve|was|were|been|is now|are now)\s+(?:\w+\s+){{0,2}}?{_DONE_VERBS}\b|"
    rf"\b(?:i|we)\s+(?:\w+\s+)?{_DONE_VERBS}\b",
    re.IGNORECASE,
)


def declare_verdict(tool: BaseTool, *, topic: str, yes: str, no: str) -> BaseTool:
    """How a tool's yes/no result is spoken of: `topic`, the words of a sentence about it (a regex); `yes` and
    `no`, the sentences that state it (`{field}` takes a field of the result or an argument)."""
    re.compile(topic)
    tool.metadata = {**(tool.metadata or {}), VERDICT: {"topic": topic, "yes": yes, "no": no}}
    return tool


def declare_receipt(tool: BaseTool, sentence: str) -> BaseTool:
    """How a side-effecting tool's done call is told to the user (`{field}` takes a field of the result or an
    argument): a reply that leaves out the new record's id gets this sentence."""
    tool.metadata = {**(tool.metadata or {}), RECEIPT: sentence}
    return tool


@dataclass(frozen=True)
class ToolFact:
    kind: str  # "verdict", "status" or "receipt"
    value: Any  # the verdict (bool) or the status word
    key: str | None  # the thing it is about, as the answer would name it (an order id), lowercased
    statement: str  # the tool's own sentence for it
    topic: re.Pattern | None = None  # verdicts: the words of a sentence about it
    reason: str | None = None


def tool_facts(plan: Plan, tools: Mapping[str, BaseTool]) -> list[ToolFact]:
    """The verdicts and statuses the plan's done tool steps found."""
    answers = {s.id: s.answer for s in plan.steps if s.status == "done"}
    facts = []
    for step in plan.steps:
        if step.status != "done" or not step.tool:
            continue
        facts += _facts_of(step, tools.get(step.tool), _args(step, answers))
    return facts


def _args(step: Step, answers: dict[int, Any]) -> dict[str, Any]:
    try:
        return resolve_args(step.args, answers)
    except Exception:  # noqa: BLE001 — a reference that no longer resolves: the plan's own text
        return step.args


def _facts_of(step: Step, tool: BaseTool | None, args: dict[str, Any]) -> list[ToolFact]:
    result = step.answer
    fields = {**args, **result} if isinstance(result, dict) else dict(args)
    key, subject = _subject(tool, fields)
    reason = result.get("reason") if isinstance(result, dict) and isinstance(result.get("reason"), str) else None
    facts = []
    verdict = tool_verdict(result)
    if verdict is not None:
        spoken = (tool.metadata or {}).get(VERDICT) if tool is not None else None
        words = [w for w in (step.tool or "").split("_") if len(w) > 3]
        topic = spoken["topic"] if spoken else r"\b(?:" + "|".join(map(re.escape, words or ["yes", "no"])) + ")"
        said = _fill(spoken["yes" if verdict else "no"], fields) if spoken else ("Yes" if verdict else "No")
        statement = f"{said}: {reason}." if reason else f"{said}."
        facts.append(ToolFact("verdict", verdict, key, statement, re.compile(topic, re.IGNORECASE), reason))
    receipt = (tool.metadata or {}).get(RECEIPT) if tool is not None else None
    if receipt and isinstance(result, dict):
        new_ids = [str(v) for k, v in result.items() if k.endswith("_id") and k not in args and v]
        facts.append(ToolFact("receipt", new_ids[0] if new_ids else None, key, _fill(receipt, fields)))
        return facts
    status = result.get("status") if isinstance(result, dict) else None
    if isinstance(status, str) and status.lower() in STATUS_WORDS and subject:
        facts.append(ToolFact("status", status.lower(), key, f"{subject} is {status.lower()}."))
    return facts


def _subject(tool: BaseTool | None, fields: dict[str, Any]) -> tuple[str | None, str | None]:
    """The thing a result is about: its identifier (`order_id` → "A1003") and how to name it ("Order A1003")."""
    names = [*(identifiers_of(tool) if tool is not None else ()), *(k for k in fields if k.endswith("_id"))]
    for name in names:
        value = fields.get(name)
        if isinstance(value, str) and value.strip() and "@" not in value:
            return value.strip().lower(), f"{name.removesuffix('_id').replace('_', ' ').capitalize()} {value.strip()}"
    return None, None


def _fill(template: str, fields: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(fields.get(m.group(1), m.group(0))), template)


def may_rewrite(plan: Plan, tools: Mapping[str, BaseTool]) -> bool:
    """Whether `keep_tool_facts` may rewrite a sentence of an answer to this plan: the tools found facts, or a
    write was not done (a sentence may claim it)."""
    return bool(tool_facts(plan, tools)) or bool(_unwritten(plan, tools))


def keep_tool_facts(
    answer: str, plan: Plan, form: AnswerForm, tools: Mapping[str, BaseTool], *, reply: bool = False
) -> str:
    """`answer` made consistent with the tools' verdicts and statuses (see the module's docstring). `form` is the
    question's; `reply`: the answer is a reply to a person in sentences (an agent's), which may not open with
    Yes/No."""
    answer = _no_claimed_writes(answer, plan, tools)
    facts = tool_facts(plan, tools)
    if not facts:
        return answer
    verdicts = [f for f in facts if f.kind == "verdict"]
    if form is AnswerForm.YES_NO and len(verdicts) == 1:
        verdict, said = verdicts[0], said_yes(answer)
        word = "Yes" if verdict.value else "No"
        if said == verdict.value:
            if not reply:
                return answer
        elif not reply:  # a short answer: the verdict, with the tool's reason
            return f"{word}: {verdict.reason}" if verdict.reason else word
        elif said is not None:  # a reply that opens against the tool
            answer = f"{word}. {verdict.statement}"
        elif not any(verdict.topic and verdict.topic.search(s) for s in SENTENCE_END.split(answer)):
            answer = f"{answer.rstrip()} {verdict.statement}"  # a reply that never answered the question asked
    if form is AnswerForm.YES_NO and not reply:
        return answer
    sentences = SENTENCE_END.split(answer.strip())
    kept: list[str] = []
    for sentence in sentences:
        wrong = next((f for f in facts if _contradicts(sentence, f, facts)), None)
        replacement = sentence if wrong is None else wrong.statement
        if replacement not in kept:
            kept.append(replacement)
    # A replaced sentence may have carried a right status too ("A1003 has shipped and can be returned"): a status
    # the answer spoke of and no longer states is stated.
    for fact in facts:
        spoken_of = fact.key is not None and fact.key in answer.lower()
        if fact.kind == "status" and spoken_of and fact.value not in _states(" ".join(kept)):
            kept.append(fact.statement)
    if reply:
        kept = _stated(kept, facts)
    return " ".join(kept)


# A model's refusal to help ("I'm sorry, but I can't assist with that."): no reply to a customer the tools answered.
_REFUSAL = re.compile(
    r"\b(?:can(?:no|')t|unable to|not able to) (?:assist|help)(?: you)? with (?:that|this)\b", re.IGNORECASE
)
_DETAIL = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d+\.\d{2}\b")  # the dates and sums a statement gives


def _stated(sentences: list[str], facts: list[ToolFact]) -> list[str]:
    """A reply to a person states what the tools found: each verdict (with its reason when it is a no, with its
    dates and sums when a yes), each order's status it never mentions, the id of each record a write created.
    What the reply left out is added as the tool's own sentence, and a refusal to help is dropped."""
    text = " ".join(sentences)
    # A "yes, it can be refunded" is old news once the refund is done: the receipt says what happened.
    written = {f.key for f in facts if f.kind == "receipt"}
    added = [
        f.statement
        for f in facts
        if not _conveys(text, f, facts) and not (f.kind == "verdict" and f.value and f.key in written)
    ]
    if not added:
        return sentences
    kept = [s for s in sentences if not _REFUSAL.search(s)]
    return list(dict.fromkeys([*kept, *added]))


def _conveys(text: str, fact: ToolFact, facts: list[ToolFact]) -> bool:
    lowered = text.lower()
    if fact.kind == "receipt":
        return fact.value is None or fact.value.lower() in lowered
    if fact.kind == "status":
        return fact.key is None or fact.key in lowered
    if any(detail not in text for detail in _DETAIL.findall(fact.statement)):
        return False
    about = [
        s
        for s in SENTENCE_END.split(text)
        if fact.topic
        and fact.topic.search(s)
        and (fact.key is None or fact.key in s.lower() or sum(f.kind == "verdict" for f in facts) == 1)
    ]
    polarity_right = any((not _NEGATIVE.search(s)) == fact.value for s in about)
    if fact.value or not fact.reason:
        return polarity_right
    reason_words = {w for w in re.findall(r"[a-z][a-z-]{3,}", fact.reason.split(";")[0].lower())}
    return polarity_right and sum(w in lowered for w in reason_words) * 2 >= len(reason_words)


def _contradicts(sentence: str, fact: ToolFact, facts: list[ToolFact]) -> bool:
    lowered = sentence.lower()
    if fact.key is not None and fact.key in lowered:
        about = True
    else:  # a sentence naming nothing is about the one fact of its kind, if there is one
        named = any(f.key and f.key in lowered for f in facts)
        about = not named and sum(f.kind == fact.kind for f in facts) == 1
    if not about:
        return False
    if fact.kind == "verdict":
        if fact.topic is None or not fact.topic.search(sentence):
            return False
        polarity = False if _NEGATIVE.search(sentence) else True if _POSITIVE.search(sentence) else None
        return polarity is not None and polarity != fact.value
    states = _states(sentence)
    return bool(states) and fact.value not in states


def _states(sentence: str) -> set[str]:
    """The states a sentence says something is in (not the ones it says it is not, or will be once …)."""
    text = _NEGATED_STATE.sub(" ", sentence)
    return {state for state, words in STATUS_WORDS.items() if re.search(rf"\b(?:{words})\b", text, re.IGNORECASE)}


def _no_claimed_writes(answer: str, plan: Plan, tools: Mapping[str, BaseTool]) -> str:
    """A sentence that says a side-effecting tool's action was done ("we have opened a support ticket") when no
    step of it succeeded is replaced by the tool's offer: the customer is never told of a write that did not
    happen."""
    unwritten = _unwritten(plan, tools)
    if not unwritten:
        return answer
    kept: list[str] = []
    for sentence in SENTENCE_END.split(answer.strip()):
        claimed = next(
            (
                t
                for t in unwritten
                if _DONE.search(sentence) and re.search(request_of(t)["pattern"], sentence, re.IGNORECASE)
            ),
            None,
        )
        replacement = sentence if claimed is None else request_of(claimed)["offer"]
        if replacement not in kept:
            kept.append(replacement)
    return " ".join(kept)


def _unwritten(plan: Plan, tools: Mapping[str, BaseTool]) -> list[BaseTool]:
    """The side-effecting tools no step of the plan called with success."""
    return [
        t
        for t in tools.values()
        if has_side_effects(t) and not any(s.tool == t.name and s.status == "done" for s in plan.steps)
    ]
