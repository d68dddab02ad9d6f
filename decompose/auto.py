"""`strategy="auto"`: per question, how to answer it — one call (direct), chain of thought (cot), a program
(program), one retrieval and one call (retrieval), or the decomposition (decompose).

A cascade. The question's form, the numbers it states, the documents and the tools (never anything else) give the
candidates to try, cheapest first; a candidate is accepted when its answer has the form the question asks for (a
number, a Yes/No), or with `verify=True` only when two candidates agree. When none is accepted, or when no cheap
candidate fits the question, the question is decomposed as usual. Every candidate's calls go through the run's
`ModelCaller`, counted under the phase "route".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool

from decompose.calls import ModelCaller
from decompose.chains.answer_form import AnswerForm, answer_form
from decompose.chains.prompts import Prompts
from decompose.errors import ProgramError
from decompose.plan import Solved, Step, escape_references
from decompose.retrieval import search, sources_of
from decompose.scoring import leaf_numbers, normalize_answer, said_yes, same_number
from decompose.solvers import ChainOfThoughtSolver, DirectSolver, ProgramSolver, Solver, StepContext
from decompose.tools.runner import has_side_effects

NUMBER_WORDS = re.compile(
    r"\b(\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|forty|fifty|hundred|thousand|million|half|twice|double|triple|dozens?|"
    r"thirds?|quarters?)\b",
    re.IGNORECASE,
)
# Forms a computation never asks for: a program or a chain of thought has nothing to compute for them.
NOT_COMPUTED = (AnswerForm.YES_NO, AnswerForm.PERSON, AnswerForm.PLACE, AnswerForm.DATE)


@dataclass
class Route:
    """The route a question took and why; `tried` holds each candidate's answer (or why it gave none)."""

    name: str
    why: str
    tried: dict[str, str] = field(default_factory=dict)
    solved: Solved | None = None  # the accepted candidate's answer; None when the question is decomposed

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "why": self.why, "tried": dict(self.tried)}


@dataclass(frozen=True)
class Candidates:
    """The cheap candidates for a question, in the order they are tried, and why (empty: decompose)."""

    names: tuple[str, ...]
    why: str
    form: AnswerForm


def candidates(
    question: str, *, documents: bool, tools: Sequence[BaseTool] = (), history: bool = False, verify: bool = False
) -> Candidates:
    """Which cheap routes may answer `question`, from its form, the numbers it states, the documents and the
    tools, after what was measured on the capable model (README, "strategy='auto'"): word problems by chain of
    thought (a program next), yes/no with documents by one retrieval, other questions over documents (multi-hop)
    by decomposing."""
    form = answer_form(question)
    if any(has_side_effects(t) for t in tools):
        return Candidates((), "the tools have side effects: a second candidate would run a write again", form)
    if history:
        return Candidates((), "a later turn of a conversation: the one-call routes do not see earlier turns", form)
    if form is AnswerForm.YES_NO and documents:
        return Candidates(
            ("retrieval", "direct") if verify else ("retrieval",), "a yes/no question with documents", form
        )
    if form is AnswerForm.YES_NO and not tools:
        return Candidates(("direct", "cot"), "a yes/no question", form)
    if not documents and form not in NOT_COMPUTED and len(NUMBER_WORDS.findall(question)) >= 2:
        return Candidates(("cot", "program"), "a computation on the numbers the question states", form)
    if documents:
        return Candidates((), "a question over documents: each step retrieves for its own hop", form)
    if tools:
        return Candidates((), "the answer may need the tools", form)
    return Candidates((), f"a question of form {form.value}: decomposed", form)


def usable(answer: Any, form: AnswerForm) -> bool:
    """Whether an answer has the form asked for: a Yes/No for a yes/no question, a number for a computation."""
    if form is AnswerForm.YES_NO:
        return said_yes(str(answer)) is not None
    if form not in NOT_COMPUTED:
        return bool(leaf_numbers(answer))
    return bool(str(answer).strip())


def same_answer(a: Any, b: Any, form: AnswerForm) -> bool:
    """Two candidates agree: the same Yes/No, the same last number (up to rounding), else the same normalised
    text."""
    if form is AnswerForm.YES_NO:
        yes = said_yes(str(a))
        return yes is not None and yes == said_yes(str(b))
    numbers_a, numbers_b = leaf_numbers(a), leaf_numbers(b)
    if numbers_a and numbers_b:
        return same_number(numbers_a[-1], numbers_b[-1])
    return normalize_answer(str(a)) == normalize_answer(str(b))


class AutoStrategy:
    """`strategy="auto"` (or `AutoStrategy(verify=True)`): choose per question how to answer it (see the module
    doc). A decomposition's steps are answered directly. `verify=True` accepts a cheap answer only when two
    candidates agree (more calls: a second candidate on every question)."""

    def __init__(self, *, verify: bool = False):
        self.verify = verify

    async def choose(
        self,
        question: str,
        *,
        caller: ModelCaller,
        prompts: Prompts,
        retriever: BaseRetriever | None,
        program: ProgramSolver,
        tools: Sequence[BaseTool] = (),
        history: bool = False,
    ) -> Route:
        found = candidates(question, documents=retriever is not None, tools=tools, history=history, verify=self.verify)
        if not found.names:
            return Route("decompose", found.why)
        tried: dict[str, str] = {}
        usable_so_far: list[tuple[str, Solved]] = []
        for name in found.names:
            try:
                solved = await self._try(name, question, caller, prompts, retriever, program)
            except ProgramError as exc:
                tried[name] = f"failed: {exc.args[0]}"
                continue
            tried[name] = str(solved.answer)
            if not usable(solved.answer, found.form):
                continue
            if not self.verify:
                return Route(name, f"{found.why}: {name} answered {_short(solved.answer)}", tried, solved)
            agreeing = next(
                (first for first in usable_so_far if same_answer(first[1].answer, solved.answer, found.form)), None
            )
            if agreeing is not None:
                return Route(
                    agreeing[0],
                    f"{found.why}: {agreeing[0]} and {name} agreed on {_short(agreeing[1].answer)}",
                    tried,
                    agreeing[1],
                )
            usable_so_far.append((name, solved))
        said = ", ".join(f"{name} {_short(answer)}" for name, answer in tried.items())
        verdict = "no agreement" if self.verify and len(usable_so_far) > 1 else "no usable answer"
        return Route("decompose", f"{found.why}: {verdict} ({said}), decomposed", tried)

    async def _try(
        self,
        name: str,
        question: str,
        caller: ModelCaller,
        prompts: Prompts,
        retriever: BaseRetriever | None,
        program: ProgramSolver,
    ) -> Solved:
        passages = await search(retriever, question, "the retrieval route") if name == "retrieval" else []
        routed = cast(ModelCaller, _RouteCalls(caller))  # a ModelCaller to the solvers: the calls they make
        ctx = StepContext(
            step=Step(id=1, question=escape_references(question)),
            question=question,
            facts=[],
            caller=routed,
            prompts=prompts,
            passages=passages,
        )
        solvers: dict[str, Solver] = {
            "direct": DirectSolver(),
            "retrieval": DirectSolver(),
            "cot": ChainOfThoughtSolver(),
            "program": program,
        }
        solver = solvers[name]
        solved = await solver.solve(ctx)
        return replace(solved, sources=sources_of(passages)) if name == "retrieval" else solved


class _RouteCalls:
    """The candidates' calls, counted under the phase "route" and no plan step: a decomposition that follows has
    steps of its own."""

    def __init__(self, caller: ModelCaller):
        self.caller = caller

    async def invoke(self, input: Any, *, phase: str, step_id: int | None = None, **kwargs: Any) -> tuple[Any, str]:
        return await self.caller.invoke(input, phase="route", **kwargs)


def _short(answer: Any, limit: int = 60) -> str:
    text = " ".join(str(answer).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
