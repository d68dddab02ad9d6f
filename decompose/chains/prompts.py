"""Default prompt templates. They are data: pass your own `Prompts(...)` to the Orchestrator to override any.

Every variable (question, tools, facts, ...) is filled in as a template *value*, never spliced into the
template string, so braces in a user's question are harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

DECOMPOSE_SYSTEM = """You split a question into a short plan of simpler sub-questions that together answer it.
Reply with JSON only, in this form:
{{"steps": [{{"id": 1, "question": "...", "depends_on": []}},
            {{"id": 2, "question": "... {{1}} ...", "depends_on": [1]}}]}}
Rules:
- At most {max_steps} steps; use as few as the question needs. A simple question gets one step.
- Each step asks ONE thing that is simpler than the whole question. Do not repeat the question itself.
- Write {{n}} in a later step to use the answer of step n, and list n in depends_on.
- Steps that do not depend on each other are answered at the same time.
{tool_rules}"""

TOOL_RULES = """- A step may call a tool instead of asking a question: add "tool": "<name>" and "args": {{...}} \
matching the tool's arguments. An argument may be "{{n}}" to pass step n's result.
Tools:
{tools}"""

NO_TOOL_RULES = "- No tools are available: every step is a question."

REPAIR = "That plan could not be used: {error}\nReply with the corrected plan as JSON only."

ANSWER_SYSTEM = """Answer the question briefly and precisely: a short phrase, a number or a sentence.
Use the known facts when they help. Do not explain unless asked."""

ANSWER_HUMAN = """{context}Question: {question}"""

COT_SYSTEM = """Think step by step, briefly. Then give the final answer on a last line that starts with "Answer:"."""

SYNTHESIZE_SYSTEM = """You combine the answers to sub-questions into one final answer to the original question.
Answer directly and briefly. If a sub-answer is missing, say what could not be found and answer as well as the
rest allows."""

SYNTHESIZE_HUMAN = """Original question: {question}

Sub-questions and answers:
{findings}

Final answer:"""


def _decompose() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [("system", DECOMPOSE_SYSTEM), ("human", "{question}"), MessagesPlaceholder("repair", optional=True)]
    )


def _answer(system: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages([("system", system), ("human", ANSWER_HUMAN)])


@dataclass
class Prompts:
    """The four templates. Variables: decompose {question, max_steps, tool_rules, repair};
    answer/cot {question, context}; synthesize {question, findings}."""

    decompose: ChatPromptTemplate = field(default_factory=_decompose)
    answer: ChatPromptTemplate = field(default_factory=lambda: _answer(ANSWER_SYSTEM))
    cot: ChatPromptTemplate = field(default_factory=lambda: _answer(COT_SYSTEM))
    synthesize: ChatPromptTemplate = field(
        default_factory=lambda: ChatPromptTemplate.from_messages(
            [("system", SYNTHESIZE_SYSTEM), ("human", SYNTHESIZE_HUMAN)]
        )
    )
    tool_rules: str = TOOL_RULES
    no_tool_rules: str = NO_TOOL_RULES
    repair: str = REPAIR
