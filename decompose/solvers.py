"""How one model step is answered: directly, by chain-of-thought, by self-consistency, by decomposing it again, or
by a program the model writes.

A solver gets a `StepContext` (the step, its resolved question, the facts it depends on, the model caller) and
returns the step's answer — a plain value, or `Solved` with how it was reached (the model, a vote). It never writes
the step: the run records what it returns. Tool steps never reach a solver: the tool runner answers them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from decompose.calls import ModelCaller
from decompose.chains.answer_form import answer_form
from decompose.chains.answer_line import final_answer_line
from decompose.chains.code_block import program_code
from decompose.chains.prompts import Prompts, known_facts
from decompose.errors import ConfigError, ProgramError
from decompose.plan import Solved, Step
from decompose.program import ProgramRun, run_program
from decompose.retrieval import passages_text
from decompose.scoring import normalize_answer


@dataclass
class StepContext:
    step: Step
    question: str  # the step's question with references resolved
    facts: list[tuple[str, str]]  # (question, answer) of the steps it depends on
    caller: ModelCaller
    prompts: Prompts
    depth: int = 0
    # Plans and answers a sub-question one level deeper (set by the orchestrator, used by RecursiveSolver).
    recurse: Callable[[str, int], Awaitable[str]] | None = field(default=None, repr=False)

    passages: list[Document] = field(default_factory=list)  # retrieved for this step's question

    def context_text(self) -> str:
        # Only the facts: weak models given the whole question tend to answer it instead of the step.
        return passages_text(self.passages) + known_facts([f"{q} → {a}" for q, a in self.facts])

    def values(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "context": self.context_text(),
            "form": answer_form(self.question).instruction,
        }


class Solver(Protocol):
    async def solve(self, ctx: StepContext) -> Solved | Any: ...


class DirectSolver:
    """One model call with the answer prompt."""

    async def solve(self, ctx: StepContext) -> Solved:
        message, model = await ctx.caller.invoke(
            ctx.prompts.answer.format_messages(**ctx.values()), phase="solve", step_id=ctx.step.id
        )
        return Solved(str(message.content).strip(), model=model)


class ChainOfThoughtSolver:
    """Reason first, then keep only the line after 'Answer:'."""

    async def solve(self, ctx: StepContext) -> Solved:
        message, model = await ctx.caller.invoke(
            ctx.prompts.cot.format_messages(**ctx.values()), phase="solve", step_id=ctx.step.id
        )
        return Solved(final_answer_line(str(message.content)), model=model)


class SelfConsistencySolver:
    """K chain-of-thought samples at temperature > 0, then a vote: a = argmax_a Σ_k P(a | q, r_k).

    P(a | q, r_k) is 1 for the answer sample k concludes and 0 otherwise, i.e. a majority vote over normalised
    answers; the vote is returned with the answer (and recorded as `step.vote`). Ties go to the answer reached
    first.
    """

    def __init__(self, samples: int = 5, temperature: float = 0.7):
        if samples < 1:
            raise ConfigError(f"self-consistency needs at least one sample, got samples={samples}")
        if temperature <= 0:
            raise ConfigError(
                f"self-consistency samples need a temperature above 0, got {temperature}",
                hint="at temperature 0 every sample is the same: use strategy='cot'",
            )
        self.samples = samples
        self.temperature = temperature

    async def solve(self, ctx: StepContext) -> Solved:
        messages = ctx.prompts.cot.format_messages(**ctx.values())
        replies = await asyncio.gather(
            *(
                ctx.caller.invoke(
                    messages,
                    phase="solve",
                    step_id=ctx.step.id,
                    build=lambda m: m.bind(temperature=self.temperature),
                    key=("sample", self.temperature),
                )
                for _ in range(self.samples)
            )
        )
        answers = [final_answer_line(str(message.content)) for message, _ in replies]
        votes: dict[str, float] = {}
        first_form: dict[str, str] = {}
        for answer in answers:
            key = normalize_answer(answer)
            votes[key] = votes.get(key, 0.0) + 1.0
            first_form.setdefault(key, answer)
        winner = max(votes, key=lambda k: (votes[k], -list(first_form).index(k)))
        return Solved(first_form[winner], model=replies[0][1], vote=dict(votes))


class RecursiveSolver:
    """Decompose the step again (a sub-plan) until `max_depth`; below that, answer directly."""

    def __init__(self, max_depth: int = 2, leaf: Solver | None = None):
        if max_depth < 1:
            raise ConfigError(f"max_depth must be at least 1, got {max_depth}")
        self.max_depth = max_depth
        self.leaf = leaf or DirectSolver()

    async def solve(self, ctx: StepContext) -> Any:
        if ctx.recurse is None or ctx.depth + 1 >= self.max_depth:
            return await self.leaf.solve(ctx)
        question = ctx.question
        if ctx.facts:
            question = ctx.context_text() + question
        return await ctx.recurse(question, ctx.depth + 1)


class ProgramSolver:
    """The model writes a short Python program whose variable `answer` is the step's answer (program-of-thought);
    `decompose.program` runs it in a restricted interpreter in a child process, under `timeout` seconds and
    `memory_mb` of memory. A program that fails is shown to the model once, with its error, for a repair; when
    the repair fails too, the step fails with that error. The program and what it printed are recorded on the
    step. Plan steps with `"kind": "program"` are answered by this solver whatever the run's strategy."""

    def __init__(self, timeout: float = 5.0, memory_mb: int = 256):
        if not timeout > 0:
            raise ConfigError(f"a program's timeout must be above 0 seconds, got {timeout}")
        if memory_mb < 64:
            raise ConfigError(
                f"a program's memory_mb must be at least 64 (the interpreter needs about 40 MB), got {memory_mb}"
            )
        self.timeout = timeout
        self.memory_mb = memory_mb

    async def solve(self, ctx: StepContext) -> Solved:
        messages = ctx.prompts.program.format_messages(**ctx.values())
        reply, model = await ctx.caller.invoke(messages, phase="solve", step_id=ctx.step.id)
        code = program_code(str(reply.content))
        try:
            run = await self._run(code)
        except ProgramError as exc:
            repair = [
                *messages,
                AIMessage(content=str(reply.content)),
                HumanMessage(content=ctx.prompts.program_repair.format(error=exc)),
            ]
            reply, model = await ctx.caller.invoke(repair, phase="solve", step_id=ctx.step.id)
            code = program_code(str(reply.content))
            try:
                run = await self._run(code)
            except ProgramError as again:
                raise ProgramError(
                    f"the repaired program failed too: {again.args[0]}",
                    hint=again.hint,
                    program=again.program,
                    output=again.output,
                ) from None
        return Solved(run.answer, model=model, program=code, program_output=run.output)

    async def _run(self, code: str) -> ProgramRun:
        return await run_program(code, timeout=self.timeout, memory_mb=self.memory_mb)


STRATEGIES: dict[str, Callable[..., Solver]] = {
    "direct": DirectSolver,
    "cot": ChainOfThoughtSolver,
    "self_consistency": SelfConsistencySolver,
    "recursive": RecursiveSolver,
    "program": ProgramSolver,
}
