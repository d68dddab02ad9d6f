"""The decompose chain: question → validated Plan, re-asking the model with the error when its plan is unusable."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableWithFallbacks
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.configurable import DynamicRunnable
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, create_model

from decompose.calls import ModelCaller
from decompose.chains.parsing import extract_plan_data
from decompose.chains.plan_grammar import decodes_under_grammar, typed_plan_schema
from decompose.chains.prompts import PROMPT_NAME, Prompts, compact_prompt, tool_example_messages
from decompose.errors import ConfigError, ModelError, PlanError
from decompose.events import Emit, PlanFallback
from decompose.models import chat_model_of, planner_of
from decompose.plan import REFERENCE, Plan, arg_values, keep_literal, question_key, references_in
from decompose.retry import (
    STRUCTURED_OUTPUT_DOWNGRADE,
    RetryState,
    StructuredOutputRefused,
    UnusableReply,
    plan_reask,
    retry_events,
    retrying,
)
from decompose.transport_errors import error_reason


def plan_schema(tool_names: Sequence[str], max_steps: int) -> type[BaseModel]:
    """The plan as the model writes it: the schema for structured output and grammar-constrained decoding.

    Without tools the steps have no tool fields (a weak model then cannot invent tools); with tools, `tool` is
    an enum of their names. Length caps let a grammar-constrained decoder always finish. A program step's `kind`
    is not offered: given the field, the 1.5B model wrote `"kind": "program"` on tool steps (plans written as text
    may still use it).
    """
    return _plan_schema(tuple(tool_names), max_steps)


@functools.lru_cache(maxsize=64)  # one class per shape: pydantic takes milliseconds to build one, per Orchestrator
def _plan_schema(tool_names: tuple[str, ...], max_steps: int) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "id": (int, ...),
        "question": (str, Field(max_length=300)),
        "depends_on": (list[int], Field(default_factory=list, max_length=10)),
    }
    if tool_names:
        fields["tool"] = (Literal[tuple(tool_names)] | None, None)
        fields["args"] = (dict[str, Any], Field(default_factory=dict))
    step = create_model("PlanStep", **fields)
    # `step` is a class made at run time, which a static checker cannot take as a type
    return create_model("PlanSpec", steps=(list[step], Field(min_length=1, max_length=max_steps)))  # type: ignore[valid-type]


def plan_schema_for(model: Any, tools: Sequence[BaseTool], max_steps: int) -> type[BaseModel] | dict:
    """The schema `model` is asked to write a plan under: the typed one where it decodes under a grammar."""
    if tools and decodes_under_grammar(model):
        return typed_plan_schema(tools, max_steps)
    return plan_schema([t.name for t in tools], max_steps)


class Decomposer:
    """Makes plans. Its settings are the user's: `Orchestrator(decomposer=Decomposer(max_steps=5))`. What it plans
    with — the prompts, the tools, whether documents answer question steps — comes from the Orchestrator that
    uses it, through `configured`, so one Decomposer can serve several Orchestrators."""

    def __init__(
        self,
        prompts: Prompts | None = None,
        tools: Sequence[BaseTool] = (),
        *,
        max_steps: int = 10,
        max_retries: int = 2,
        structured_output: bool | None = None,
        on_failure: Literal["raise", "direct"] = "raise",
        max_replans: int = 0,
        documents: bool = False,
    ):
        if max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {max_steps}")
        if max_retries < 0:
            raise ConfigError(f"max_retries (plan re-asks) must be 0 or more, got {max_retries}")
        if max_replans < 0:
            raise ConfigError(f"max_replans must be 0 or more, got {max_replans}")
        if on_failure not in ("raise", "direct"):
            raise ConfigError(
                f"on_failure must be 'raise' or 'direct', got {on_failure!r}",
                hint="'direct' answers the question in one step when no plan can be made",
            )
        self.max_steps = max_steps
        self.max_retries = max_retries
        self.structured_output = structured_output
        self.on_failure = on_failure  # "direct": a plan that cannot be made becomes one step asking the question
        self.max_replans = max_replans  # new plans when the synthesis judges the sub-answers insufficient
        self._use(prompts or Prompts(), tools, documents)

    def configured(self, prompts: Prompts, tools: Sequence[BaseTool], *, documents: bool) -> Decomposer:
        """A copy with these settings that plans with `prompts` and `tools`."""
        made = copy.copy(self)
        made._use(prompts, tools, documents)
        return made

    def _use(self, prompts: Prompts, tools: Sequence[BaseTool], documents: bool) -> None:
        self.prompts = prompts
        self.tools = {t.name: t for t in tools}
        self.schema = plan_schema(list(self.tools), self.max_steps)
        self.__dict__.pop("typed_schema", None)  # built again for these tools, when a local model first plans
        self.documents = documents  # a retriever answers question steps: tool values must come from them
        self.tool_examples = tool_example_messages(tools, documents=documents)
        # What a plan must not replay (see `copies_an_example`); read once: ~0.1 ms a plan otherwise.
        self.example_questions = worked_example_questions([*prompts.decompose.messages, *self.tool_examples])
        # The models whose server rejected structured output, compared by identity (chat models are unhashable).
        self._refused_structured: list[Runnable] = []

    @functools.cached_property
    def typed_schema(self) -> dict[str, Any] | None:
        """The plan schema a grammar-constrained local model decodes under (None without tools)."""
        return typed_plan_schema(list(self.tools.values()), self.max_steps) if self.tools else None

    async def aplan(
        self,
        question: str,
        caller: ModelCaller,
        emit: Emit,
        history: Sequence = (),
        critique: Callable[[Plan], str | None] | None = None,
    ) -> Plan:
        """A plan for `question`. `critique` (the tool guard's `misses`) names what a valid plan leaves out of
        the user's words; such a plan is asked for again once, and kept when the next one is no better."""
        values = {
            "question": question,
            "max_steps": self.max_steps,
            "tool_rules": self._tool_rules(),
            "tool_examples": self.tool_examples,
            "history": list(history),
        }
        # A model fine-tuned by `decompose train` is asked with the compact prompt it learned on.
        prompt = trained_prompt(caller.models, self.tools.values()) or self.prompts.decompose
        examples = self.example_questions if prompt is self.prompts.decompose else {}  # the compact one shows none
        last_data: Any = None  # the last reply that parsed: what salvage works from
        criticised: Plan | None = None  # a valid plan the critique sent back: kept if no better one comes

        async def ask(state: RetryState) -> Plan:
            nonlocal last_data, criticised
            repair = []
            if state.failures:  # only an unusable reply is re-asked: show the model its reply and the problem
                unusable = state.failures[-1]
                repair = [
                    AIMessage(content=getattr(unusable, "reply", "") or "(empty)"),
                    HumanMessage(content=self.prompts.repair.format(error=str(unusable))),
                ]
            text, data = await self._ask(prompt.format_messages(**values, repair=repair), caller, emit)
            try:
                if data is None:
                    data = extract_plan_data(text)
                last_data = data
                plan = self._validated(data, question, examples)
            except PlanError as exc:
                raise UnusableReply(text, str(exc)) from exc
            problem = critique(plan) if critique is not None and criticised is None else None
            if problem:
                criticised = plan
                raise UnusableReply(text, problem)
            return plan

        def salvage(state: RetryState) -> Plan:
            failure = state.failures[-1]
            if not isinstance(failure, UnusableReply):
                raise failure  # the model call itself failed
            if criticised is not None:  # the re-ask brought no better plan: the valid one stands
                return criticised
            salvaged = drop_unusable_steps(without_copied_steps(last_data, question, examples), question)
            if salvaged is not None:
                try:
                    plan = self._validated(salvaged, question, examples)
                except PlanError:
                    pass
                else:
                    emit(PlanFallback(kind="salvaged", reason=str(failure)))
                    return plan
            raise PlanError(
                f"the model did not write a usable plan in {state.attempt_number} tries; last problem: {failure}",
                hint="use a stronger model, raise Decomposer(max_retries=...), or allow a direct answer with "
                "Decomposer(on_failure='direct') (--on-plan-failure direct)",
            )

        announce = retry_events(emit, caller.usage, "decompose")
        return await retrying(plan_reask(self.max_retries), ask, before_sleep=announce, give_up=salvage)

    def _validated(self, data: Any, question: str, examples: dict[str, str]) -> Plan:
        plan = Plan.from_data(tidy_dependencies(keep_literal(data, question)), max_steps=self.max_steps)
        self.check_tools(plan)
        copied = [step for step in plan.steps if copies_an_example(step.question, question, examples)]
        if copied:
            listed = ", ".join(str(step.id) for step in copied)
            raise PlanError(
                f"step{'s' if len(copied) > 1 else ''} {listed} cop{'y' if len(copied) > 1 else 'ies'} "
                f"the worked example for {examples[question_key(copied[0].question)]!r} "
                f"({copied[0].question!r}), which is another question",
                hint="plan only the question asked; the examples show the form of a plan",
            )
        plan.question = question
        if self.documents:
            plan = ask_invented_tool_calls(plan, question)
        return drop_echo_steps(plan, question)

    async def _ask(self, messages: list, caller: ModelCaller, emit: Emit) -> tuple[str, Any]:
        """Ask for a plan; return (raw text, parsed data or None when the text still needs parsing). A model is
        asked through its planner (`models.planner_of`: a local model's decomposer adapter), under structured
        output unless that is off; a server that refuses structured output is asked again in plain text, under
        the `STRUCTURED_OUTPUT_DOWNGRADE` rule, and not asked for it again."""
        if self.structured_output is False:
            return await self._ask_plain(messages, caller)

        async def attempt(state: RetryState) -> tuple[str, Any]:
            if state.failures:  # the server refused structured output
                return await self._ask_plain(messages, caller)
            try:
                output, _ = await caller.invoke(messages, phase="decompose", build=self._structured, key="plan")
            except ModelError as exc:
                if _output_problem(exc):  # cut off at the token limit, or unparseable: worth a re-ask
                    return f"(unusable reply: {exc})", None
                if self.structured_output or not _server_refused(exc):  # insisted on, or the server is down
                    raise
                self._refused_structured.extend(m for m in caller.models if not self._refused(m))
                raise StructuredOutputRefused(f"the server refused structured output: {exc.args[0]}") from exc
            if isinstance(output, dict):  # a structured reply: {"raw", "parsed", "parsing_error"}
                parsed = output.get("parsed")
                return _text(output.get("raw")), parsed.model_dump() if isinstance(parsed, BaseModel) else parsed
            return _text(output), None

        return await retrying(
            STRUCTURED_OUTPUT_DOWNGRADE, attempt, before_sleep=retry_events(emit, caller.usage, "decompose")
        )

    async def _ask_plain(self, messages: list, caller: ModelCaller) -> tuple[str, Any]:
        message, _ = await caller.invoke(messages, phase="decompose", build=planner_of, key="planner")
        return _text(message), None

    def _refused(self, model: Runnable) -> bool:
        return any(refused is model for refused in self._refused_structured)

    def _structured(self, model: Runnable) -> Runnable:
        planner = planner_of(model)  # a local model with a decomposer adapter plans with it, answers without it
        if self._refused(model):
            return planner
        schema = self.typed_schema if self.typed_schema and decodes_under_grammar(planner) else self.schema
        return structured_plan_output(planner, schema) or planner

    def _tool_rules(self) -> str:
        if not self.tools:
            return self.prompts.no_tool_rules
        lines = []
        for tool in self.tools.values():
            args = ", ".join(f"{name}: {_type_name(spec)}" for name, spec in tool.args.items())
            lines.append(f"- {tool.name}({args}): {tool.description.strip().splitlines()[0]}")
        rules = self.prompts.tool_rules.format(tools="\n".join(lines))
        return rules + "\n" + self.prompts.document_rules if self.documents else rules

    def check_tools(self, plan: Plan) -> None:
        for step in plan.steps:
            if step.tool and step.tool not in self.tools:
                known = ", ".join(self.tools) or "none"
                raise PlanError(
                    f"step {step.id} uses tool {step.tool!r}, which does not exist; tools: {known}",
                    hint="use one of the listed tools, or no tool",
                )


def structured_plan_output(model: Runnable, schema: type[BaseModel] | dict) -> Runnable | None:
    """`model.with_structured_output(schema, include_raw=True)`, also for a chat model wrapped as `load_model`
    allows; None when the chat model has no structured output. A binding (`bind`, `with_config`, `with_retry`)
    keeps its config and retries but not its call kwargs, which cannot pass the parser to reach the model; a
    fallback chain falls back to each fallback's structured output, or its plain reply; a configurable model
    answers with its default (a plan is then not asked of a configured alternative)."""
    if isinstance(model, BaseChatModel):
        return model.with_structured_output(schema, include_raw=True) if supports_structured_output(model) else None
    if isinstance(model, RunnableBindingBase):
        inner = structured_plan_output(model.bound, schema)
        return None if inner is None else model.model_copy(update={"bound": inner, "kwargs": {}})
    if isinstance(model, RunnableWithFallbacks):
        primary = structured_plan_output(model.runnable, schema)
        fallbacks = [structured_plan_output(m, schema) or m for m in model.fallbacks]
        return None if primary is None else model.model_copy(update={"runnable": primary, "fallbacks": fallbacks})
    if isinstance(model, DynamicRunnable):
        return structured_plan_output(model.default, schema)
    return None


def supports_structured_output(model: BaseChatModel) -> bool:
    """True when the model class implements structured output (directly or through tool calling)."""
    cls = type(model)
    return (
        cls.with_structured_output is not BaseChatModel.with_structured_output
        or cls.bind_tools is not BaseChatModel.bind_tools
    )


def ask_invented_tool_calls(plan: Plan, question: str) -> Plan:
    """With documents, a tool call that takes no step's result and holds a value the question does not (the
    planner never sees the documents, so "2019 * 1000000" or "sum(sales_data)" is made up) is asked as its
    question instead, answered from the documents."""
    given = set(_TOKEN.findall(question.lower()))
    for step in plan.steps:
        if not step.tool or references_in("", step.args):
            continue
        values = [str(v) for v in arg_values(step.args) if not isinstance(v, bool)]  # a flag is a choice, not data
        if any(token not in given for v in values for token in _TOKEN.findall(v.lower())):
            step.tool, step.args = None, {}
    return plan


_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z_]\w*")


def worked_example_questions(messages: Iterable[Any]) -> dict[str, str]:
    """The questions of the worked plans a planner prompt shows (a user turn, then the plan as the model's turn),
    by `question_key`, each mapped to the example's question."""
    found: dict[str, str] = {}
    asked = None
    for message in messages:
        if isinstance(message, HumanMessage) and isinstance(message.content, str):
            asked = message.content
        elif isinstance(message, AIMessage) and asked is not None:
            try:
                data = extract_plan_data(str(message.content))
            except PlanError:
                continue
            steps = data.get("steps") if isinstance(data, dict) else None
            found[question_key(asked)] = asked
            for step in steps if isinstance(steps, list) else ():
                if isinstance(step, dict) and isinstance(step.get("question"), str):
                    found.setdefault(question_key(step["question"]), asked)
    return found


# What makes an example's step its own: a number, an email, or a name (a capitalised word past the first).
_PARTICULAR = re.compile(r"[^\s@]+@[^\s@?]+\.\w+|\d+(?:\.\d+)?|(?<=\s)[A-Z][A-Za-z]+")


def copies_an_example(step_question: str, question: str, examples: dict[str, str]) -> bool:
    """True when a step repeats a worked example's question or step word for word, and names a number or a name
    the question being planned does not hold: a weak model replaying the examples ("How tall is the Eiffel
    Tower?" in a plan about total assets). A generic step such as "Which is larger, {1} or {2}?" is no copy."""
    if question_key(step_question) not in examples:
        return False
    given = set(_TOKEN.findall(question.lower()))
    return any(
        word.lower() not in (question.lower() if "@" in word else given)
        for word in _PARTICULAR.findall(REFERENCE.sub(" ", step_question))
    )


def without_copied_steps(data: Any, question: str, examples: dict[str, str]) -> Any:
    """The plan's steps minus those that copy a worked example (steps that use them go with them in
    `drop_unusable_steps`, which asks the question itself when nothing is left)."""
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list):
        return data
    kept = [
        step
        for step in steps
        if not (
            isinstance(step, dict)
            and isinstance(step.get("question"), str)
            and copies_an_example(step["question"], question, examples)
        )
    ]
    return {"steps": kept}


def drop_echo_steps(plan: Plan, question: str) -> Plan:
    """Remove steps that merely repeat the whole question or an earlier step (weak models do both); synthesis
    answers the whole question anyway. Steps others depend on, and tool steps, are kept."""
    if len(plan.steps) < 2:
        return plan
    used = {d for s in plan.steps for d in s.depends_on}
    seen = {question_key(question)}
    kept = []
    for step in plan.steps:
        key = question_key(step.question)
        if step.tool or step.id in used or key not in seen:
            kept.append(step)
        seen.add(key)
    plan.steps = kept or plan.steps[:1]  # all echoes: one step asking the question itself
    return plan


def drop_unusable_steps(data: Any, question: str) -> dict[str, Any] | None:
    """The last resort for a plan whose re-asks did not help: keep the steps whose references all point to
    earlier kept steps, drop the rest (a weak model writes `{1}` inside step 1, or copies an example's `{1} or
    {2}`). When no step is left, the question itself is the one step: the model did write a plan, only its
    references were unusable. None when `data` is not a list of steps at all."""
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not any(isinstance(step, dict) for step in steps):
        return None
    kept: list[dict[str, Any]] = []
    kept_ids: set[str] = set()
    for position, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            continue
        refs = {str(ref) for ref in references_in(step.get("question"), step.get("args"))}
        if refs <= kept_ids:  # compared as text: weak models mix 1 and "1"
            kept.append(step)
            kept_ids.add(str(step.get("id", position)))
    return {"steps": kept or [{"id": 1, "question": question}]}


def tidy_dependencies(data: Any) -> Any:
    """Drop `depends_on` entries a model cannot have meant: itself, unknown ids, or later steps (models write
    steps in order). References written as {n} in the text are left alone: a bad one is still an error."""
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list):
        return data
    earlier: set[str] = set()  # as text: weak models mix 1 and "1"
    for step in steps:
        if isinstance(step, dict):
            deps = step.get("depends_on")
            if isinstance(deps, list):
                step["depends_on"] = [d for d in deps if str(d) in earlier]
            earlier.add(str(step.get("id")))
    return data


def _server_refused(exc: ModelError) -> bool:
    """True when the server answered with an HTTP error (it may not support structured output), as opposed to
    being unreachable or timing out, where asking again in another format cannot help."""
    cause = exc.__cause__  # through an `AllModelsFailed`, the last model's error to what the server said
    while isinstance(cause, ModelError):
        cause = cause.__cause__
    return cause is not None and error_reason(cause).startswith("HTTP")


def _output_problem(exc: BaseException) -> bool:
    """True when a structured call failed because of what the model wrote, not because the server refused."""
    cause: BaseException | None = exc
    while cause is not None:
        if type(cause).__name__ in ("LengthFinishReasonError", "OutputParserException", "ValidationError"):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _type_name(spec: dict[str, Any]) -> str:
    """A JSON-schema type in a word or two: 'string', 'number|string', 'array'."""
    if "type" in spec:
        return str(spec["type"])
    kinds = [str(o.get("type")) for o in spec.get("anyOf", []) if o.get("type") not in (None, "null")]
    return "|".join(dict.fromkeys(kinds)) or "any"


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return content if isinstance(content, str) else ""


def trained_prompt(models: Sequence[Any], tools: Iterable[BaseTool]) -> ChatPromptTemplate | None:
    """The compact prompt when the first model carries a decomposer adapter trained on it; None otherwise."""
    chat = chat_model_of(planner_of(models[0])) if models else None
    return compact_prompt(tools) if getattr(chat, "plan_prompt", None) == PROMPT_NAME else None
