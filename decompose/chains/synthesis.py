"""The synthesis: an answered plan becomes the answer. What the synthesizer is shown (the sub-answers as findings
or known facts, passages for the whole question where they help), and how its reply is read: the "not enough
yet" marker that asks for a replan, and the guard that keeps a computed number the reply dropped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool

from decompose.calls import ModelCaller
from decompose.chains.answer_form import AnswerForm, answer_form
from decompose.chains.answer_line import ANSWER_LINE, final_answer_line, strip_markup
from decompose.chains.answer_stream import AnswerStream, Draft
from decompose.chains.prompts import INSUFFICIENT_MARKER, Prompts, known_facts
from decompose.chains.tool_facts import keep_tool_facts, may_rewrite
from decompose.errors import DecomposeError
from decompose.plan import Plan, Step, plain_numbers, resolve_args, resolve_text, same_question
from decompose.retrieval import passages_text, search, sources_of
from decompose.scoring import leaf_numbers, numbers_in, same_number

FINDING_CHARS = 1500  # about 400 tokens: room for a few findings in even a small model's context
INSUFFICIENT = re.compile(
    r"\W*" + re.escape(INSUFFICIENT_MARKER.rstrip(":")) + r"\W*:\W*(.*)", re.IGNORECASE | re.DOTALL
)


def findings_text(plan: Plan) -> str:
    """One line per step: its question with references filled in, and its answer (or why there is none)."""
    answers = _answers(plan)
    return "\n".join(f"{step.id}. {_finding(step, answers)}" for step in plan.steps)


def known_facts_text(plan: Plan) -> str:
    """The answered steps as the answer prompt's known facts (the failed ones are left out)."""
    answers = _answers(plan)
    return known_facts([_finding(step, answers) for step in plan.steps if step.status == "done"])


def _answers(plan: Plan) -> dict[int, Any]:
    return {s.id: s.answer for s in plan.steps if s.status == "done"}


def _finding(step: Step, answers: dict) -> str:
    try:
        question = resolve_text(step.question, answers)
    except (KeyError, DecomposeError):  # it refers to a step that failed
        question = step.question
    if step.status == "done":
        answer = _shown(resolve_text(f"{{{step.id}}}", answers))
        return f"{question}{_call(step, answers)} → {answer}"
    return f"{question} → (not available: step {step.status}: {step.error})"


def _shown(answer: str) -> str:
    """A step's answer as the synthesizer sees it: a long tool result (a 48-month amortization schedule, a year of
    prices) is cut, so the findings fit a small model's context and the answer is not drowned in rows."""
    if len(answer) <= FINDING_CHARS:
        return answer
    return f"{answer[:FINDING_CHARS]} … ({len(answer) - FINDING_CHARS} more characters not shown)"


def _call(step: Step, answers: dict) -> str:
    """How a tool step got its answer, so the synthesizer can tell a wrong call from a right one."""
    if not step.tool:
        return ""
    try:
        args = resolve_args(step.args, answers)
    except DecomposeError:
        args = step.args
    shown = ", ".join(f"{name}={value!r}" for name, value in args.items())
    return f" [{step.tool}({shown})]"


def final_answer(reply: str) -> str:
    """The synthesizer's answer: the text after its last "Answer:" line, else the whole reply."""
    return final_answer_line(reply) if ANSWER_LINE.search(reply) else reply.strip()


def insufficient_reason(reply: str) -> str | None:
    """What is missing, when the synthesizer's reply says the sub-answers are not enough; else None."""
    found = INSUFFICIENT.match(reply)
    if found is None:
        return None
    return strip_markup(found.group(1)) or "the sub-answers do not answer the question"


def computed_result(plan: Plan) -> Any:
    """The result the plan ends in: the answer of its one final step, when that step is a done tool step (a
    tool's result is exact; a model step's wording is not). None otherwise."""
    finals = plan.final_steps()
    if len(finals) != 1 or finals[0].status != "done" or not finals[0].tool:
        return None
    return finals[0].answer


def keep_computed_number(answer: str, plan: Plan, form: AnswerForm, question: str = "") -> str:
    """A number question whose plan ends in a tool's numbers: the answer must report one of them, or a number of
    its own reasoning. A reply with no number (a bare "Yes") or with only numbers copied from the question (a weak
    model's "The present value is $47000" for $47000 due in 22 years) contradicts the tool and is replaced by
    its result."""
    if form is not AnswerForm.NUMBER:
        return answer
    result = computed_result(plan)
    computed = leaf_numbers(result) if isinstance(result, (int, float, dict, list)) else []  # not a tool's prose
    if not computed:
        return answer
    said, given = numbers_in(answer), numbers_in(question)
    if any(same_number(n, c) for n in said for c in computed):
        return answer
    if any(not any(same_number(n, g) for g in given) for n in said):
        return answer  # a number the synthesizer worked out itself
    return stated(result)


def stated(result: Any) -> str:
    """A tool's result as an answer: a number as it is; a dict's fields as "name: value", joined."""
    result = plain_numbers(result)
    if isinstance(result, dict):
        return "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in result.items())
    return str(result)


@dataclass
class Synthesis:
    answer: str | None  # None when the synthesizer asked for a replan
    missing: str | None = None  # what it said is missing, when it asked for one
    sources: list[dict[str, Any]] = field(default_factory=list)  # passages the answer was shown


class Synthesizer:
    """Turns an answered plan into the answer to the question."""

    def __init__(
        self,
        prompts: Prompts,
        *,
        retriever: BaseRetriever | None,
        tools: Sequence[BaseTool] = (),
        direct_when_nothing: bool,
    ):
        self.prompts = prompts
        self.retriever = retriever
        self.tools = {t.name: t for t in tools}
        self.with_tools = bool(tools)
        self.direct_when_nothing = direct_when_nothing  # Decomposer(on_failure="direct")

    async def combine(
        self,
        plan: Plan,
        question: str,
        caller: ModelCaller,
        history: Sequence[BaseMessage] = (),
        *,
        may_replan: bool = False,
        stream: AnswerStream | None = None,
    ) -> Synthesis:
        done = [s for s in plan.steps if s.status == "done"]
        # A tool that refused or found nothing ("order 'A1099' not found") is an answer to tell the user; a plan
        # whose model steps all failed has nothing to tell.
        told = any(s.tool and s.status == "failed" for s in plan.steps)
        if not done and not told:
            if self.direct_when_nothing:  # a plan that answered nothing failed too: answer directly
                return await self.answer_directly(question, caller, history, stream=stream)
            reasons = "; ".join(f"step {s.id} {s.status}: {s.error}" for s in plan.steps)
            raise DecomposeError(
                f"no step could be answered ({reasons})",
                hint="see each step's error; Decomposer(on_failure='direct') "
                "(--on-plan-failure direct) answers the question itself",
            )
        only = plan.steps[0]
        if len(plan.steps) == 1 and only.status == "done" and same_question(only.question, question):
            # The one step asked the question itself: its answer is the answer, and a synthesis call would only
            # repeat it. A single narrower sub-question still has to be turned into an answer to the question.
            return Synthesis(resolve_text(f"{{{only.id}}}", {only.id: only.answer}))
        # A reply to a person (an agent's prompts) is written as one, and checked against the tools sentence by
        # sentence; otherwise the answer takes the form the question asks for.
        asked = answer_form(question)
        form = AnswerForm.OTHER if self.prompts.reply else asked
        # Passages for the whole question help where a step's own passages cannot: checking the values a tool
        # computed on, and weighing a yes/no. For multi-hop facts the steps' passages carry the chain and the
        # whole question's are mostly distractors (Bamboogle: 3 answers lost in 36, none gained).
        grounded = self.with_tools or form is AnswerForm.YES_NO
        passages = await search(self.retriever, question, "the final answer") if grounded else []
        insufficient = self.prompts.insufficient if may_replan else ""
        if form is AnswerForm.YES_NO:
            # Judged briefly from the sub-answers as known facts: reasoning at length talked the 1.5B model into
            # "Yes" (42 of 50 StrategyQA answers, 20 gold) where the brief answer weighs the facts.
            messages = self.prompts.synthesize_yes_no.format_messages(
                question=question,
                context=passages_text(passages) + known_facts_text(plan),
                history=list(history),
                form="\n".join(filter(None, (form.instruction, insufficient))),
            )
        else:
            messages = self.prompts.synthesize.format_messages(
                question=question,
                findings=findings_text(plan),
                context=passages_text(passages),
                history=list(history),
                form=self.prompts.reply or form.instruction,
                insufficient=insufficient,
            )

        def checked(answer: str) -> str:
            # A tool's exact result is not contradicted: its number, its yes/no verdict, a status it found.
            return keep_tool_facts(
                keep_computed_number(answer, plan, asked, question),
                plan,
                asked,
                self.tools,
                reply=bool(self.prompts.reply),
            )

        draft = None
        if stream is not None:
            draft = Draft(
                stream,
                lambda reply: checked(final_answer(reply)),
                marked=True,
                by_sentence=may_rewrite(plan, self.tools),
                may_replan=may_replan,
            )
        message, _ = await caller.invoke(messages, phase="synthesize", tokens=draft)
        reply = str(message.content).strip()
        sources = sources_of(passages)
        missing = insufficient_reason(reply)
        if missing is not None and may_replan:
            return Synthesis(None, missing, sources)
        answer = f"Could not be determined: {missing}" if missing is not None else final_answer(reply)
        return Synthesis(checked(answer), None, sources)

    async def answer_directly(
        self,
        question: str,
        caller: ModelCaller,
        history: Sequence[BaseMessage] = (),
        *,
        stream: AnswerStream | None = None,
    ) -> Synthesis:
        """The question answered in one call, with passages for it when there is a retriever."""
        passages = await search(self.retriever, question, "the final answer")
        messages = self.prompts.answer.format_messages(
            question=question,
            context=passages_text(passages),
            history=list(history),
            form=answer_form(question).instruction,
        )
        draft = None if stream is None else Draft(stream, str.strip, marked=False)
        message, _ = await caller.invoke(messages, phase="synthesize", tokens=draft)
        return Synthesis(str(message.content).strip(), None, sources_of(passages))
