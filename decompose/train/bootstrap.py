"""`decompose train --bootstrap`: a teacher model plans and runs questions over your tools; the traces that check
out become the student's training rows (DSPy's BootstrapFinetune, on the project's own plans).

Every question is run through a real Orchestrator with the teacher (fresh tools per question, so one question's
writes never change another's), and its trace is judged: kept when the plan validates, every step ran, and the
answer (or the tool calls) agrees with the question's gold where the question has one; otherwise dropped with a
reason. Traces are appended to a JSON-lines file as they finish, and a question already traced there is not
asked again: an interrupted or extended run costs only the new questions. The kept traces are written as
training rows (`data.Example`, the format `decompose train FILE.jsonl` reads).

Questions come from a JSONL file (`{"question", "answer"?, "calls"?}`) or are written by the teacher
(`generate_questions`: varied wordings, lengths, typos, several needs at once, questions the tools cannot
answer), saved beside the traces so a rerun asks the same ones.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool

from decompose.errors import ConfigError, DecomposeError, ModelError, PlanError
from decompose.events import PlanFallback
from decompose.plan import question_key
from decompose.scoring import normalize_answer, numbers_in, same_number
from decompose.train.data import Example, TrainDataError, check_row, write_examples
from decompose.train.prompt import tool_signature
from decompose.train.score import normal_value, tool_calls

QUESTION_HINT = 'each line is {"question": "...", "answer": "key figure or phrase"?, "calls": [{"tool", "args"}]?}'
KEPT = "kept"
REASONS = ("invalid plan", "run error", "wrong tool calls", "wrong answer")  # why a trace is dropped


@dataclass(frozen=True)
class Question:
    question: str
    answer: str | None = None  # a figure or phrase the final answer must hold
    calls: tuple[tuple[str, Any], ...] | None = None  # the tool calls the plan must make, in order ((tool, args))

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"question": self.question}
        if self.answer is not None:
            row["answer"] = self.answer
        if self.calls is not None:
            row["calls"] = [{"tool": t, "args": a} for t, a in self.calls]
        return row


def read_questions(path: str | Path) -> list[Question]:
    """The questions of a JSONL file, each checked; TrainDataError names the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise TrainDataError(
            f"questions file {path} does not exist", hint="pass a JSONL of questions, or --generate N to write them"
        )
    questions = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                questions.append(_question(line, f"{path}:{number}"))
    if not questions:
        raise TrainDataError(f"questions file {path} holds no questions", hint=QUESTION_HINT)
    return questions


def _question(line: str, where: str) -> Question:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainDataError(f"{where} is not JSON ({exc.msg})", hint=QUESTION_HINT) from None
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
        raise TrainDataError(f'{where}: needs a non-empty "question" string', hint=QUESTION_HINT)
    calls = row.get("calls")
    if calls is not None and not (
        isinstance(calls, list) and all(isinstance(c, dict) and isinstance(c.get("tool"), str) for c in calls)
    ):
        raise TrainDataError(f'{where}: "calls" must be a list of {{"tool", "args"}}', hint=QUESTION_HINT)
    answer = row.get("answer")
    return Question(
        row["question"].strip(),
        None if answer is None else str(answer),
        None if calls is None else tuple((c["tool"], c.get("args") or {}) for c in calls),
    )


def write_questions(path: Path, questions: Sequence[Question]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(q.to_row(), ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")


# --- questions written by the teacher ------------------------------------------------------------------------

GENERATE_SYSTEM = """You write test questions for an assistant that answers with these tools:
{tools}

Write {n} questions its users would send, one per line, nothing else on the line. Vary them: short and long,
formal and casual, some with typos, some asking two or three things in one message, a few the tools cannot
answer at all. Use concrete names, ids and numbers, as a real user would.{examples}"""


def generate_questions(
    teacher: Any,
    tools: Sequence[BaseTool],
    n: int,
    *,
    have: Sequence[Question] = (),
    examples: Sequence[str] = (),
    rounds: int = 8,
    seed: int = 0,
) -> list[Question]:
    """`have` and up to `n - len(have)` new questions written by the teacher, no question twice (case, spacing
    and punctuation aside). `examples`: questions that show the teacher the names and ids the tools know. Asks in
    batches of at most 20, for at most `rounds` batches."""
    questions = list(have)
    seen = {question_key(q.question) for q in questions}
    listing = "\n".join(f"- {tool_signature(t)}: {(t.description or '').splitlines()[0]}" for t in tools)
    shown = "".join(f"\n- {e}" for e in examples)
    shown = f"\n\nQuestions like these (the names and ids in them exist):{shown}" if shown else ""
    rng = random.Random(seed)
    for _ in range(rounds):
        if len(questions) >= n:
            break
        want = min(20, n - len(questions))
        messages = [
            SystemMessage(GENERATE_SYSTEM.format(tools=listing, n=want, examples=shown)),
            HumanMessage(f"Batch {rng.randint(1, 10**6)}: write {want} new questions."),
        ]
        for line in str(teacher.invoke(messages).content).splitlines():
            text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().strip('"').strip()
            if len(text) >= 8 and (key := question_key(text)) and key not in seen and len(questions) < n:
                seen.add(key)
                questions.append(Question(text))
    return questions


# --- traces ----------------------------------------------------------------------------------------------------


@dataclass
class BootstrapReport:
    questions: int
    traced: int  # questions traced by this run (the rest were in the trace file already)
    kept: int
    dropped: dict[str, int]  # reason -> traces
    traces: str
    train_rows: str  # the kept traces as training rows
    train: Any = None  # the student's TrainReport, when it was trained
    examples: list[Example] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("train", "examples")}
        data["train"] = self.train.to_dict() if self.train is not None else None
        return data


def judge(question: Question, result: Any, tools: Sequence[BaseTool]) -> tuple[str, str | None]:
    """(KEPT or the reason the trace is dropped, what went wrong)."""
    if result.plan is None or any(isinstance(e, PlanFallback) for e in result.events):
        return "invalid plan", str(result.error or "the teacher wrote no usable plan")
    steps = result.plan.spec()["steps"]
    try:
        check_row(
            {"question": question.question, "plan": {"steps": steps}, "tools": [t.name for t in tools]},
            {t.name: t for t in tools},
            where="plan",
        )
    except DecomposeError as exc:
        return "invalid plan", str(exc)
    failed = [s for s in result.plan.steps if s.status != "done"]
    if result.error is not None or failed:
        return "run error", str(result.error or f"step {failed[0].id} {failed[0].status}: {failed[0].error}")
    if question.calls is not None and tool_calls(steps) != [(t, normal_value(a)) for t, a in question.calls]:
        return "wrong tool calls", f"made {[(s['tool'], s.get('args')) for s in steps if s.get('tool')]}"
    if question.answer is not None and not holds(result.answer or "", question.answer):
        return "wrong answer", f"the answer does not hold {question.answer!r}"
    return KEPT, None


def holds(answer: str, key: str) -> bool:
    """`answer` states `key`: a number as a number (up to rounding), else the phrase, case and punctuation aside."""
    figures = numbers_in(key)
    if figures and normalize_answer(key).replace(" ", "").replace(".", "").isdigit():
        return any(same_number(n, figures[0]) for n in numbers_in(answer))
    return f" {normalize_answer(key)} " in f" {normalize_answer(answer)} "


def read_traces(path: Path) -> dict[str, dict[str, Any]]:
    """The traces of an earlier run by question key (a torn last line, from a killed run, is asked again)."""
    traces: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                trace = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(trace, dict) and isinstance(trace.get("question"), str):
                traces[question_key(trace["question"])] = trace
    return traces


async def abootstrap(
    make_orchestrator: Callable[[], Any],
    questions: Sequence[Question],
    traces: str | Path,
    *,
    concurrency: int = 4,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> BootstrapReport:
    """Trace every question not yet in `traces` with an Orchestrator from `make_orchestrator()` (the teacher's,
    with fresh tools), append each trace as it finishes, and judge them all."""
    path = Path(traces)
    path.parent.mkdir(parents=True, exist_ok=True)
    unique: dict[str, Question] = {}
    for question in questions:  # a question asked twice is traced once
        unique.setdefault(question_key(question.question), question)
    questions = list(unique.values())
    done = read_traces(path)
    todo = [q for q in questions if question_key(q.question) not in done]
    gate = asyncio.Semaphore(concurrency)

    async def one(question: Question) -> None:
        async with gate:
            orchestrator = make_orchestrator()
            try:
                result = await orchestrator.arun(question.question)
                verdict = judge(question, result, orchestrator.tools)
            except (ConfigError, ModelError):
                raise  # the teacher is unreachable or misconfigured: nothing is learned, a rerun asks again
            except DecomposeError as exc:  # the run failed: its partial result tells what the teacher did
                result = exc.result
                verdict = ("invalid plan" if isinstance(exc, PlanError) else "run error", str(exc))
            _append(path, _trace(question, result, orchestrator.tools, verdict), done, progress)

    await asyncio.gather(*(one(q) for q in todo))
    chosen = [done[question_key(q.question)] for q in questions]
    kept = [t for t in chosen if t["kept"]]
    examples = [Example(t["question"], _plan(t), t["tools"], "bootstrap") for t in kept]
    rows = path.with_name(path.stem + "-train.jsonl")
    write_examples(rows, examples)
    return BootstrapReport(
        questions=len(questions),
        traced=len(todo),
        kept=len(kept),
        dropped=dict(Counter(t["reason"] for t in chosen if not t["kept"])),
        traces=str(path),
        train_rows=str(rows),
        examples=examples,
    )


def _trace(question: Question, result: Any, tools: Sequence[BaseTool], verdict: tuple[str, str | None]) -> dict:
    reason, problem = verdict
    return {
        **question.to_row(),
        "kept": reason == KEPT,
        "reason": reason,
        "problem": problem,
        "plan": {"steps": result.plan.spec()["steps"]} if result is not None and result.plan is not None else None,
        "tools": [t.name for t in tools],
        "reply": result.answer if result is not None else None,
    }


def _append(path: Path, trace: dict, done: dict, progress: Callable[[dict[str, Any]], None] | None) -> None:
    with path.open("a", encoding="utf-8") as out:  # one write a line: a killed run leaves at most a torn last line
        out.write(json.dumps(trace, ensure_ascii=False, default=str) + "\n")
    done[question_key(trace["question"])] = trace
    if progress:
        progress(trace)


def _plan(trace: dict) -> Any:
    from decompose.plan import Plan

    return Plan.from_data(trace["plan"])


def bootstrap(make_orchestrator: Callable[[], Any], questions: Sequence[Question], traces: str | Path, **kw: Any):
    """`abootstrap` from synchronous code."""
    from decompose.sync import run_sync

    return run_sync(abootstrap(make_orchestrator, questions, traces, **kw))


def load_teacher(spec: str, timeout: float | None = None) -> Any:
    """The teacher from any model spec; one that does not load is a ConfigError naming `--teacher`. `timeout`:
    seconds an `openai:` server may take to answer one call (a busy shared server queues calls)."""
    from decompose.models import load_model

    options: dict[str, Any] = {"timeout": timeout} if timeout and spec.startswith("openai:") else {}
    try:
        return load_model(spec, **options)
    except DecomposeError as exc:
        raise ConfigError(f"--teacher {spec}: {exc.args[0]}", hint=exc.hint or "give any model spec") from None
