"""Default prompt templates. They are data: pass your own `Prompts(...)` to the Orchestrator to override any.

Every variable (question, tools, facts, ...) is filled in as a template *value*, never spliced into the
template string, so braces in a user's question are harmless.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.tools import BaseTool

from decompose.tool_schema import call_schema

DECOMPOSE_SYSTEM = """You split a question into a short plan of simpler sub-questions that together answer it.
Reply with JSON only, in this form:
{{"steps": [{{"id": 1, "question": "...", "depends_on": []}},
            {{"id": 2, "question": "... {{1}} ...", "depends_on": [1]}}]}}
Rules:
- At most {max_steps} steps; use as few as the question needs. A simple question gets one step.
- Each step asks ONE thing that is simpler than the whole question. Do not repeat the question itself.
- Write {{n}} in a later step to use the answer of step n, and list n in depends_on.
- Steps that do not depend on each other are answered at the same time.
- The last step answers the whole question from the earlier steps' answers.
{tool_rules}"""

# Worked examples, shown as earlier chat turns: small models copy the pattern (and stop echoing the question).
EXAMPLES: list[tuple[str, list[tuple[str, list[int]]]]] = [
    (
        "Which is taller, the Eiffel Tower or Big Ben?",
        [("How tall is the Eiffel Tower?", []), ("How tall is Big Ben?", []), ("Which is larger, {1} or {2}?", [1, 2])],
    ),
    (
        "How many people live in the country where the Colosseum stands?",
        [("In which country is the Colosseum?", []), ("How many people live in {1}?", [1])],
    ),
    (
        "Tom has 4 boxes of 6 eggs and eats 5 eggs. How many eggs are left?",
        [("How many eggs are in 4 boxes of 6 eggs?", []), ("What is {1} minus 5?", [1])],
    ),
]

TOOL_RULES = """- A step may call a tool instead of asking a question: add "tool": "<name>" and "args": {{...}} \
matching the tool's arguments. An argument may be "{{n}}" to pass step n's result.
Tools:
{tools}"""

NO_TOOL_RULES = "- No tools are available: every step is a question."

# With documents the planner sees only the question: a tool call it writes can only hold invented values.
DOCUMENT_RULES = """- The documents are not shown to you: get each value from them with a question step (no tool), \
then pass it to a tool as "{{n}}"."""

REPAIR = "That plan could not be used: {error}\nReply with the corrected plan as JSON only."

ANSWER_SYSTEM = """Answer the question briefly and precisely. Use the passages and known facts when they help: \
the known facts are correct. Do not explain unless asked."""

ANSWER_HUMAN = """{context}Question: {question}
{form}"""

COT_SYSTEM = """Answer the question. Use the passages and known facts when they help: the known facts are \
correct. Think step by step, briefly, then give the final answer on a last line that starts with "Answer:"."""

# The answer's form is about the Answer line only: said plainly after the question, "not a sentence" would
# talk a model out of reasoning at all.
COT_HUMAN = """{context}Question: {question}
Think step by step first. Then end with a last line "Answer: ..." (on that line: {form})"""

# A program step (strategy "program", or a plan step with "kind": "program"): the model writes the computation.
PROGRAM_SYSTEM = """Answer the question by writing a short Python program that computes the answer. Use the \
passages and known facts when they help: the known facts are correct; write the values you need into the program.
Rules:
- Store the final result in a variable named `answer` (a number, text or a list). `print` is for notes only.
- Use plain Python: arithmetic, loops, functions, comprehensions, and the modules math, decimal, fractions and \
datetime (`import math` works). No other imports, no files, no network.
Reply with the program in one ```python block and nothing else."""

PROGRAM_HUMAN = """{context}Question: {question}
The answer's form: {form}"""

# The one repair of a program that failed: the model sees its program (its earlier reply) and this.
PROGRAM_REPAIR = "That program failed: {error}\nReply with the corrected program in one ```python block."

SYNTHESIZE_SYSTEM = """You combine the answers to sub-questions into one final answer to the original question.
The sub-answers were worked out one at a time; a tool's result is exact for the call shown. Check in a sentence \
or two that the steps fit the question (the right numbers and operations, nothing left out). If they do, keep \
the last step's result; if a step is wrong, correct it. If the sub-answers are not enough, say what could not \
be found and answer as well as the rest allows. End with a last line "Answer: <the answer alone>": a name, \
number, date or short phrase, not a sentence."""

SYNTHESIZE_HUMAN = """{context}Original question: {question}

Sub-questions and answers:
{findings}
{insufficient}
{form}"""

# A tool step whose arguments do not fit the tool's schema: one re-ask (see ToolRunner).
TOOL_ARGS_SYSTEM = "You fix tool arguments. Reply with one JSON object of arguments only."
TOOL_ARGS_HUMAN = """Task: {task}
Tool: {tool} — {description}
Argument schema: {schema}
Arguments given: {args}
Problem: {problem}
Corrected arguments:"""

# Yes/no questions are judged briefly from the sub-answers, given as known facts (see Synthesizer.combine).
SYNTHESIZE_YES_NO_HUMAN = """{context}Original question: {question}
{form}"""

# Shown only while a replan is still allowed: the marker tells the orchestrator to plan again.
INSUFFICIENT_MARKER = "INSUFFICIENT:"
INSUFFICIENT = (
    f"If these answers are not enough to answer the original question, reply only with "
    f'"{INSUFFICIENT_MARKER} <what is still missing>".'
)

# The second plan after an insufficient first one: what was learned comes with the question.
REPLAN_HUMAN = """{question}

Already known (do not ask these again):
{findings}
Still missing: {missing}"""


def _template(system: str, human: str, *, examples: list | None = None, repair: bool = False) -> ChatPromptTemplate:
    # Worked examples (ours, then those the tools bring), then earlier turns of a conversation ("history"), then
    # the current question.
    messages: list = [("system", system)]
    for question, steps in examples or []:
        plan = {"steps": [{"id": i, "question": q, "depends_on": d} for i, (q, d) in enumerate(steps, 1)]}
        # Messages, not templates: constant text is then neither parsed nor formatted on every call.
        messages += [HumanMessage(content=question), AIMessage(content=json.dumps(plan))]
    if examples:
        messages.append(MessagesPlaceholder("tool_examples", optional=True))
    messages += [MessagesPlaceholder("history", optional=True), ("human", human)]
    if repair:
        messages.append(MessagesPlaceholder("repair", optional=True))
    return ChatPromptTemplate.from_messages(messages)


def tool_example_messages(tools, *, documents: bool = False) -> list:
    """Worked plans the tools bring (`tool.metadata["plan_examples"]`: a list of `{"question": ..., "steps":
    [...]}`; with documents, `"document_plan_examples"` as well), as chat turns: a small model copies a tool call
    it has seen far more readily than one described."""
    keys = ("plan_examples", "document_plan_examples") if documents else ("plan_examples",)
    messages: list = []
    for tool in tools:
        for example in (e for key in keys for e in (tool.metadata or {}).get(key, ())):
            messages += [
                HumanMessage(content=example["question"]),
                AIMessage(content=json.dumps({"steps": example["steps"]})),
            ]
    return messages


def known_facts(lines: list[str]) -> str:
    """The "Known facts:" block of an answer prompt, one fact per line ("question → answer"); empty without any."""
    return "Known facts:\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" if lines else ""


def _literal(text: str) -> str:
    """Text used as part of a template, with its braces escaped."""
    return text.replace("{", "{{").replace("}", "}}")


def _decompose(system: str) -> ChatPromptTemplate:
    return _template(system, "{question}", examples=EXAMPLES, repair=True)


@dataclass
class Prompts:
    """The seven templates. Variables: decompose {question, max_steps, tool_rules, tool_examples, history, repair};
    answer/cot/program {question, context, form}; synthesize {question, context, findings, history, form, insufficient};
    synthesize_yes_no {question, context, history, form} (the sub-answers are in `context` as known facts);
    tool_args {task, tool, description, schema, args, problem} (the re-ask for a tool call's bad arguments);
    `program_repair` {error} follows a program step's failed program.
    `context` holds retrieved passages; `form` is the answer's shape read from the question (see `answer_form`),
    followed for yes/no by the replan instruction; `insufficient` is that instruction, empty when no replan is
    left. Build your own with
    `Prompts(decompose=ChatPromptTemplate(...))`, or prefix every system prompt with `Prompts.with_instructions`."""

    decompose: ChatPromptTemplate = field(default_factory=lambda: _decompose(DECOMPOSE_SYSTEM))
    answer: ChatPromptTemplate = field(default_factory=lambda: _template(ANSWER_SYSTEM, ANSWER_HUMAN))
    cot: ChatPromptTemplate = field(default_factory=lambda: _template(COT_SYSTEM, COT_HUMAN))
    program: ChatPromptTemplate = field(default_factory=lambda: _template(PROGRAM_SYSTEM, PROGRAM_HUMAN))
    synthesize: ChatPromptTemplate = field(default_factory=lambda: _template(SYNTHESIZE_SYSTEM, SYNTHESIZE_HUMAN))
    synthesize_yes_no: ChatPromptTemplate = field(
        default_factory=lambda: _template(ANSWER_SYSTEM, SYNTHESIZE_YES_NO_HUMAN)
    )
    tool_args: ChatPromptTemplate = field(
        default_factory=lambda: ChatPromptTemplate.from_messages(
            [("system", TOOL_ARGS_SYSTEM), ("human", TOOL_ARGS_HUMAN)]
        )
    )
    tool_rules: str = TOOL_RULES
    no_tool_rules: str = NO_TOOL_RULES
    document_rules: str = DOCUMENT_RULES
    repair: str = REPAIR
    program_repair: str = PROGRAM_REPAIR
    insufficient: str = INSUFFICIENT
    replan: str = REPLAN_HUMAN
    # How the final answer is written when it goes to a person rather than to a program: None (the default) is a
    # short answer in the form the question asks for; an agent's prompts ask for a full reply.
    reply: str | None = None

    @classmethod
    def with_instructions(cls, instructions: str, *, reply: str | None = None) -> Prompts:
        """Default prompts with `instructions` (an agent's role and policy) before each system prompt; `reply`, how
        the final answer is written (see the field)."""
        prefix = _literal(instructions.strip()) + "\n\n"
        return cls(
            decompose=_decompose(prefix + DECOMPOSE_SYSTEM),
            answer=_template(prefix + ANSWER_SYSTEM, ANSWER_HUMAN),
            cot=_template(prefix + COT_SYSTEM, COT_HUMAN),
            program=_template(prefix + PROGRAM_SYSTEM, PROGRAM_HUMAN),
            synthesize=_template(prefix + SYNTHESIZE_SYSTEM, SYNTHESIZE_HUMAN),
            synthesize_yes_no=_template(prefix + ANSWER_SYSTEM, SYNTHESIZE_YES_NO_HUMAN),
            reply=reply,
        )


# ----- the compact prompt of a trained decomposer -------------------------------------------------------------
# Not a `Prompts` field: a fine-tuned model must be asked exactly what it was taught (`decompose train` uses these
# functions to build its training rows), so it cannot be overridden; a new wording is a new PROMPT_NAME.

# The name an adapter records (see `sft.write_adapter_info`): a model loaded with it gets this prompt.
PROMPT_NAME = "compact-v1"

COMPACT_SYSTEM = "Split the question into steps and reply with the plan as JSON."
COMPACT_NO_TOOLS = "No tools."


def tool_signature(tool: BaseTool) -> str:
    """`name(arg, optional_arg?)`: what a step's `tool` and `args` must fit, in a few tokens."""
    schema = call_schema(tool)
    if isinstance(schema, dict):  # a JSON-schema tool
        required = set(schema.get("required", []))
        names = list(schema.get("properties", {}))
    else:
        required = {name for name, spec in schema.model_fields.items() if spec.is_required()}
        names = list(schema.model_fields)
    return f"{tool.name}({', '.join(n if n in required else n + '?' for n in names)})"


def system_text(tools: Iterable[BaseTool]) -> str:
    signatures = [tool_signature(t) for t in tools]
    return COMPACT_SYSTEM + "\n" + ("Tools: " + "; ".join(signatures) if signatures else COMPACT_NO_TOOLS)


def compact_prompt(tools: Iterable[BaseTool]) -> ChatPromptTemplate:
    """The prompt as a template of `question` (and an optional `repair` turn, for the Decomposer's re-asks).
    Other variables the Decomposer passes (rules, examples, history) are not used: the model learned them."""
    system = system_text(tools).replace("{", "{{").replace("}", "}}")
    return ChatPromptTemplate.from_messages(
        [("system", system), ("human", "{question}"), MessagesPlaceholder("repair", optional=True)]
    )


def compact_messages(question: str, tools: Iterable[BaseTool]) -> list[BaseMessage]:
    """The messages a trained decomposer sees for `question`: in training and at inference."""
    return compact_prompt(tools).format_messages(question=question)
