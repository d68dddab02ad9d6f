"""What the synthesizer is shown, and how its reply is read: the sub-answers as text, the "not enough yet" marker
that asks for a replan, and the guard that keeps a computed number the reply dropped."""

from __future__ import annotations

import re

from decompose.chains.answer_form import AnswerForm
from decompose.chains.prompts import INSUFFICIENT_MARKER
from decompose.errors import DecomposeError
from decompose.plan import Plan, Step, resolve_args, resolve_text
from decompose.chains.answer_line import ANSWER_LINE, final_answer_line, strip_markup
from decompose.scoring import NUMBER

INSUFFICIENT = re.compile(r"\W*" + re.escape(INSUFFICIENT_MARKER.rstrip(":")) + r"\W*:\W*(.*)",
                          re.IGNORECASE | re.DOTALL)


def findings_text(plan: Plan) -> str:
    """One line per step: its question with references filled in, and its answer (or why there is none)."""
    answers = {s.id: s.answer for s in plan.steps if s.status == "done"}
    return "\n".join(f"{step.id}. {_finding(step, answers)}" for step in plan.steps)


def known_facts_text(plan: Plan) -> str:
    """The answered steps as the answer prompt's known facts (the failed ones are left out)."""
    answers = {s.id: s.answer for s in plan.steps if s.status == "done"}
    lines = [_finding(step, answers) for step in plan.steps if step.status == "done"]
    return "Known facts:\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" if lines else ""


def _finding(step: Step, answers: dict) -> str:
    try:
        question = resolve_text(step.question, answers)
    except (KeyError, DecomposeError):  # it refers to a step that failed
        question = step.question
    if step.status == "done":
        return f"{question}{_call(step, answers)} → {resolve_text('{%d}' % step.id, answers)}"
    return f"{question} → (not available: step {step.status}: {step.error})"


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


def computed_number(plan: Plan) -> int | float | None:
    """The number the plan ends in: the answer of its one final step, when that step is a done tool step (a
    calculator's result is exact; a model step's wording is not)."""
    finals = plan.final_steps()
    if len(finals) != 1 or finals[0].status != "done" or not finals[0].tool:
        return None
    value = finals[0].answer
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def keep_computed_number(answer: str, plan: Plan, form: AnswerForm) -> str:
    """A number question whose plan ends in a computed number: the answer must carry a number. A reply with none
    (a bare "Yes", "The answer is above") is replaced by the computed one."""
    if form is not AnswerForm.NUMBER:
        return answer
    value = computed_number(plan)
    if value is None or NUMBER.search(answer):
        return answer
    return str(value)
