"""Plans: steps, references to earlier answers, validation. Pure data, no I/O.

A step's question or string argument may contain `{n}` (step n's answer) or `{n.field}` (a field of a
structured answer). References imply dependencies. Only `{digits}` and `{digits.name}` are references, so a
user's `{` or `}` elsewhere is left alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from decompose.errors import PlanError

_PATH = r"(?:\.[A-Za-z_]\w*|\.\d+)*"
# `{n}` / `{n.field}` stands for step n's answer; a doubled `{{n}}` is the literal text `{n}` (as in str.format).
REFERENCE = re.compile(r"(?<!\{)\{(\d+)(" + _PATH + r")\}(?!\})")
_REFERENCE_OR_ESCAPED = re.compile(r"\{\{(\d+" + _PATH + r")\}\}|" + REFERENCE.pattern)

PLAN_FIELDS = ("id", "question", "depends_on", "tool", "args", "kind")

StepStatus = Literal["pending", "running", "done", "failed", "skipped", "awaiting"]
# How a step without a tool is answered: by the run's solver ("model"), or by a program the model writes and
# the restricted interpreter runs ("program", see decompose.program).
StepKind = Literal["model", "program"]


class Step(BaseModel):
    """One sub-question. The first six fields are the plan (what to do). The rest is what happened, a copy of the
    run's state (`decompose.run_state`): during a run only `step_state.RunRecord` writes them, from the state that
    `run_state.apply` alone changes; they stay on `Step` so that a `Result`'s plan reads as before
    (`result.plan.steps[0].answer`)."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1)  # a reference {n} is never negative
    question: str
    depends_on: list[int] = Field(default_factory=list)
    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    kind: StepKind = "model"

    status: StepStatus = "pending"
    answer: Any = None
    error: str | None = None
    attempts: int = 0  # tries of its model or tool calls: 1, plus one per retry announced for it
    model: str | None = None
    elapsed: float | None = None
    vote: dict[str, float] | None = None
    sources: list[dict[str, Any]] | None = None  # passages retrieved for it: [{"id", "score"}]
    program: str | None = None  # a program step's program (the last one run, also when it failed)
    program_output: str | None = None  # what that program printed

    @field_validator("id", "depends_on", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        # JSON's true would pass as the id 1.
        if isinstance(value, bool) or isinstance(value, list) and any(isinstance(v, bool) for v in value):
            raise ValueError("must be a step number, not true/false")
        return value

    def references(self) -> set[int]:
        """Step ids this step's question and arguments refer to."""
        return references_in(self.question, self.args)

    def spec(self) -> dict[str, Any]:
        """The plan-level fields only, as in the plan's JSON form."""
        out: dict[str, Any] = {"id": self.id, "question": self.question, "depends_on": self.depends_on}
        if self.tool:
            out["tool"] = self.tool
            out["args"] = self.args
        if self.kind != "model":
            out["kind"] = self.kind
        return out


@dataclass(frozen=True)
class Solved:
    """What a step's work returns — its answer and how it was reached — for the run to record on the step (a
    solver or the tool runner never writes the step itself)."""

    answer: Any
    model: str | None = None  # the model that answered (a fallback's name when the primary failed)
    vote: dict[str, float] | None = None  # self-consistency: answer -> votes
    sources: list[dict[str, Any]] | None = None  # passages retrieved for the step
    args: dict[str, Any] | None = None  # the arguments a tool was called with, when the model corrected the plan's
    program: str | None = None  # a program step's program
    program_output: str | None = None  # what it printed


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[Step]
    question: str | None = None  # the question the plan answers, when known

    @property
    def by_id(self) -> dict[int, Step]:
        return {s.id: s for s in self.steps}

    def step(self, step_id: int) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def spec(self) -> dict[str, Any]:
        """The plan's JSON form as data: `{"question": ..., "steps": [...]}`, no runtime state."""
        data: dict[str, Any] = {"question": self.question} if self.question else {}
        data["steps"] = [s.spec() for s in self.steps]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.spec(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, max_steps: int = 20) -> Plan:
        """Parse and validate the JSON form `{"steps": [...]}`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}", hint='write {"steps": [...]}') from exc
        return cls.from_data(data, max_steps=max_steps)

    @classmethod
    def from_data(cls, data: Any, *, max_steps: int = 20) -> Plan:
        if isinstance(data, list):
            data = {"steps": data}
        if not isinstance(data, dict) or "steps" not in data:
            raise PlanError('plan must be an object with a "steps" list', hint='write {"steps": [...]}')
        steps = data["steps"]
        if not isinstance(steps, list):
            raise PlanError('"steps" must be a list of steps')
        cleaned = []
        for i, raw in enumerate(steps, 1):
            if not isinstance(raw, dict):
                raise PlanError(f"plan step {i} is not an object", hint='each step is {"id": .., "question": ..}')
            # Keep only the plan's own fields: runtime state never comes from outside.
            step = {k: v for k, v in raw.items() if k in PLAN_FIELDS and v is not None}
            step.setdefault("id", i)
            cleaned.append(step)
        parsed = []
        for i, step in enumerate(cleaned, 1):
            try:
                parsed.append(Step.model_validate(step))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                hint = (
                    '"kind" is "model" (the default) or "program"'
                    if first["loc"][0] == "kind"
                    else "each step needs an integer id and a question"
                )
                raise PlanError(f"plan step {i}, field {where!r}: {first['msg']}", hint=hint) from None
        plan = cls(steps=parsed, question=data.get("question"))
        plan.validate_plan(max_steps=max_steps)
        return plan

    def validate_plan(self, *, max_steps: int = 20) -> Plan:
        """Check the plan before anything runs; add dependencies implied by references."""
        if not self.steps:
            raise PlanError("plan has no steps", hint="a plan needs at least one step")
        if len(self.steps) > max_steps:
            raise PlanError(
                f"plan has {len(self.steps)} steps, more than max_steps={max_steps}",
                hint="merge steps or raise max_steps",
            )
        ids = [s.id for s in self.steps]
        seen: set[int] = set()
        for s in self.steps:
            if s.id in seen:
                raise PlanError(f"step id {s.id} is used twice", hint="give every step its own id")
            seen.add(s.id)
        span = _describe_ids(ids)
        for s in self.steps:
            if not s.question.strip():
                raise PlanError(f"step {s.id} has an empty question")
            if s.tool and s.kind == "program":
                raise PlanError(
                    f'step {s.id} has both a tool and "kind": "program"',
                    hint="a step calls a tool or runs a program: drop one of the two",
                )
            refs = s.references()
            for dep in set(s.depends_on) | refs:
                if dep == s.id:
                    raise PlanError(f"step {s.id} depends on itself", hint="a step can only use earlier answers")
                if dep not in seen:
                    raise PlanError(
                        f"step {s.id} refers to {{{dep}}}, which does not exist; steps are {span}",
                        hint=f"for the literal text {{{dep}}}, write {{{{{dep}}}}}",
                    )
            s.depends_on = sorted(set(s.depends_on) | refs)
        cycle = _find_cycle({s.id: s.depends_on for s in self.steps})
        if cycle:
            path = " → ".join(str(i) for i in cycle)
            raise PlanError(f"plan has a cycle: {path}", hint="steps must form a DAG; break the loop")
        return self

    def final_steps(self) -> list[Step]:
        """Steps nothing else depends on: their answers are what synthesis needs most."""
        used = {d for s in self.steps for d in s.depends_on}
        return [s for s in self.steps if s.id not in used]


def append_steps(plan: Plan, extra: Plan) -> list[Step]:
    """Add `extra`'s steps after `plan`'s, renumbered past its last id (references and dependencies with them);
    returns the added steps. Used by replanning: both plans then show as one."""
    offset = max((s.id for s in plan.steps), default=0)

    def shift(text: str) -> str:
        return REFERENCE.sub(lambda m: f"{{{int(m.group(1)) + offset}{m.group(2)}}}", text)

    added = [
        Step(
            id=s.id + offset,
            question=shift(s.question),
            depends_on=[d + offset for d in s.depends_on],
            tool=s.tool,
            args=_map_strings(s.args, shift),
            kind=s.kind,
        )
        for s in extra.steps
    ]
    plan.steps.extend(added)
    return added


def known_answers(plan: Plan) -> dict[str, Any]:
    """The done model steps' answers, by their resolved question's key: what a replan need not ask again."""
    answers = {s.id: s.answer for s in plan.steps if s.status == "done"}
    known: dict[str, Any] = {}
    for step in plan.steps:
        if step.status == "done" and not step.tool and step.references() <= answers.keys():
            known[question_key(resolve_text(step.question, answers))] = step.answer
    return known


def _map_strings(value: Any, change: Any) -> Any:
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return change(value) if isinstance(value, str) else value


def resolve_text(text: str, answers: dict[int, Any], *, known_only: bool = False) -> str:
    """Replace `{n}` / `{n.field}` in text by the answers' string forms. With `known_only`, a reference whose
    answer (or field) is not known yet stays as written instead of raising, and so does an escaped `{{n}}` (so
    the two are not confused): a step as it can be shown while its run goes on ("When was {1} born?" becomes
    "When was James Cameron born?" once step 1 is done)."""

    def replace(m: re.Match) -> str:
        if m.group(1) is not None:  # escaped: the literal text
            return m.group(0) if known_only else "{" + m.group(1) + "}"
        try:
            return _to_text(_lookup(answers, int(m.group(2)), m.group(3)))
        except PlanError:
            if known_only:
                return m.group(0)
            raise

    return _REFERENCE_OR_ESCAPED.sub(replace, text)


def keep_literal(data: Any, question: str) -> Any:
    """In a model-written plan, the `{n}` forms that the user's question itself contains are that text, not
    references (a question about `x^{2}` or `'{0}'.format(5)`): escape them in every step."""
    literal = {m.group(0) for m in REFERENCE.finditer(question)}
    steps = data.get("steps") if isinstance(data, dict) else data
    if not literal or not isinstance(steps, list):
        return data

    def escape(text: str) -> str:
        return REFERENCE.sub(lambda m: _escaped(m) if m.group(0) in literal else m.group(0), text)

    for step in steps:
        if isinstance(step, dict):
            if isinstance(step.get("question"), str):
                step["question"] = escape(step["question"])
            if "args" in step:
                step["args"] = _map_strings(step["args"], escape)
    return data


def escape_references(text: str) -> str:
    """Text whose `{n}` forms are literal (a user's own question): `x^{2}` → `x^{{2}}`, which resolves back
    to `x^{2}` and is never taken for a reference."""
    return REFERENCE.sub(_escaped, text)


def _escaped(reference: re.Match) -> str:
    return "{" + reference.group(0) + "}"


def resolve_args(args: Any, answers: dict[int, Any]) -> Any:
    """Resolve references in tool arguments; a string that is exactly one reference gets the raw value."""
    if isinstance(args, dict):
        return {k: resolve_args(v, answers) for k, v in args.items()}
    if isinstance(args, list):
        return [resolve_args(v, answers) for v in args]
    if isinstance(args, str):
        whole = REFERENCE.fullmatch(args.strip())
        if whole:
            return _lookup(answers, int(whole.group(1)), whole.group(2))
        return resolve_text(args, answers)
    return args


def _lookup(answers: dict[int, Any], step_id: int, path: str) -> Any:
    if step_id not in answers:
        raise PlanError(
            f"{{{step_id}}} refers to step {step_id}, which has no answer here",
            hint=f"write {{{{{step_id}}}}} for the literal text {{{step_id}}}",
        )
    value = answers[step_id]
    for name in filter(None, path.split(".")):
        value = _field(value, name, step_id)
    return value


def _field(value: Any, name: str, step_id: int) -> Any:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict) and name in value:
        return value[name]
    if isinstance(value, (list, tuple)) and name.isdigit() and int(name) < len(value):
        return value[int(name)]
    if hasattr(value, name) and not isinstance(value, (str, int, float)):
        return getattr(value, name)
    raise PlanError(f"step {step_id}'s answer has no field {name!r}", hint=f"fields available: {_fields_of(value)}")


def _fields_of(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(map(str, value)) or "none"
    return f"none (the answer is a {type(value).__name__})"


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:  # 511.0 reads 511, as people write it (and as the answer then repeats it)
        return json.dumps(plain_numbers(value), ensure_ascii=False, default=str)
    except TypeError:
        return str(value)


def plain_numbers(value: Any) -> Any:
    """Whole floats as ints, in any nesting of dicts and lists."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_numbers(v) for v in value]
    return value


def references_in(question: Any, args: Any) -> set[int]:
    """Step ids that a question and arguments (any nesting of dicts and lists) refer to as `{n}` / `{n.field}`."""
    texts = [question, *arg_values(args)]
    return {int(m.group(1)) for text in texts if isinstance(text, str) for m in REFERENCE.finditer(text)}


def arg_values(value: Any):
    """The values inside tool arguments: every leaf of nested dicts and lists, None left out."""
    if isinstance(value, dict):
        for v in value.values():
            yield from arg_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from arg_values(v)
    elif value is not None:
        yield value


def _describe_ids(ids: list[int]) -> str:
    ordered = sorted(ids)
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 1:
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(map(str, ordered))


def _find_cycle(graph: dict[int, list[int]]) -> list[int] | None:
    """Return one cycle as a list of ids (first id repeated at the end), or None."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = finished
    path: list[int] = []

    def visit(node: int) -> list[int] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


# Question identity: a step that merely repeats the question, or one asked again by a replan.
NON_WORD = re.compile(r"[^a-z0-9]+")


def question_key(text: str) -> str:
    """A question without case, punctuation or spacing: equal keys mean one question repeated."""
    return NON_WORD.sub(" ", text.lower()).strip()


def same_question(a: str, b: str) -> bool:
    return question_key(a) == question_key(b)
