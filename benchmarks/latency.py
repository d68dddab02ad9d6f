"""Latency benchmark: the same decompose → solve → combine work done by four systems, one simulated model.

    python benchmarks/latency.py            # median of 5 runs per cell
    python benchmarks/latency.py --quick    # fewer runs, for a fast look
    python benchmarks/latency.py --checkpoints   # ours with and without checkpoints= (width 16), median of 15

Systems: (1) `decompose.Orchestrator`; (2) the seed's sequential LangChain chain (decompose, answer each
sub-question, combine: `prompt | llm | StrOutputParser()` run one after another with `.invoke`); (3) plain
LangChain `.batch`, one batch per dependency level of a JSON plan; (4) LlamaIndex `SubQuestionQueryEngine`
(`use_async=True`). Every model call goes to one `ScriptedChatModel` that sleeps a fixed latency per call (the
sub-question steps may sleep longer: see `SimModel`). Critical path = decompose call + longest dependency chain of
step calls + combine call, i.e. the least wall time any system could take. Every system may run as many calls at
once as the scenario is wide.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

import langchain_core  # noqa: E402
from langchain_core.messages import BaseMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from pydantic import Field  # noqa: E402

import decompose  # noqa: E402
from decompose import Decomposer, Orchestrator, ScriptedChatModel  # noqa: E402
from decompose.models.scripted import _text, asks_for_plan, asks_to_combine  # noqa: E402

QUESTION = "Compare the items and summarise what they have in common."
SPLIT = "one sub-question per line"  # marks the seed's (and LlamaIndex's) decompose prompt
TAG = re.compile(r"\[s(\d+)\]")  # every step's question carries its tag, [s1] ...


# ----- scenarios -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    latency: float  # seconds per call: decompose, combine, and steps without their own
    steps: tuple[tuple[float | None, tuple[int, ...]], ...]  # per step (1..n): (own latency or None, depends_on)

    def step_latency(self, i: int) -> float:
        own = self.steps[i - 1][0]
        return self.latency if own is None else own

    def critical_path(self) -> float:
        finish: dict[int, float] = {}
        for i, (_, deps) in enumerate(self.steps, 1):
            finish[i] = max((finish[d] for d in deps), default=0.0) + self.step_latency(i)
        return self.latency + max(finish.values()) + self.latency

    def questions(self) -> list[str]:
        return [
            f"[s{i}] What is item {i}?" + "".join(f" Use {{{d}}}." for d in deps)
            for i, (_, deps) in enumerate(self.steps, 1)
        ]

    def plan_json(self) -> str:
        return json.dumps(
            {
                "steps": [
                    {"id": i, "question": q, "depends_on": list(self.steps[i - 1][1])}
                    for i, q in enumerate(self.questions(), 1)
                ]
            }
        )

    def scaled(self, k: float) -> Scenario:
        return Scenario(self.name, self.latency * k, tuple((None if s is None else s * k, d) for s, d in self.steps))


def scenarios(scale: float) -> list[Scenario]:
    return [
        s.scaled(scale)
        for s in (
            Scenario("width 4 @ 100 ms", 0.100, ((None, ()),) * 4),
            Scenario("width 16 @ 50 ms", 0.050, ((None, ()),) * 16),
            Scenario("uneven: A→B 100 ms, C 300 ms", 0.100, ((None, ()), (None, (1,)), (0.300, ()))),
        )
    ]


OVERHEAD = Scenario("overhead: width 4 @ 0 ms", 0.0, ((None, ()),) * 4)


class SimModel(ScriptedChatModel):
    """The one simulated model: sleeps `latency` per call, or a step's own latency (found by its [sN] tag)."""

    step_latency: dict[int, float] = Field(default_factory=dict)

    def _delay(self, messages: list[BaseMessage]) -> float:
        if asks_for_plan(messages) or SPLIT in _text(messages[0]) or asks_to_combine(messages):
            return self.latency
        tags = TAG.findall(_text(messages[-1]))  # the last tag is the step's own (earlier ones are facts)
        return self.step_latency.get(int(tags[-1]), self.latency) if tags else self.latency

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if delay := self._delay(messages):
            time.sleep(delay)
        return self._result(*self._reply(messages, kwargs))

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if delay := self._delay(messages):
            await asyncio.sleep(delay)
        return self._result(*self._reply(messages, kwargs))


def make_model(sc: Scenario) -> SimModel:
    return SimModel(
        latency=sc.latency,
        step_latency={i: sc.step_latency(i) for i in range(1, len(sc.steps) + 1)},
        rules=[
            (asks_for_plan, sc.plan_json()),
            (lambda m: SPLIT in _text(m[0]), "\n".join(sc.questions())),
            (asks_to_combine, "They are all items."),
        ],
        default="an item",
    )


# ----- the four systems: each is  build(model, scenario) -> run()  ----------------------------------------------


def build_ours(model: SimModel, sc: Scenario) -> Callable[[], Any]:
    orch = Orchestrator(model, max_concurrency=len(sc.steps), decomposer=Decomposer(max_steps=max(10, len(sc.steps))))
    return lambda: orch.run(QUESTION)


ANSWER = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "Question: {question}")])
COMBINE = ChatPromptTemplate.from_messages(
    [("human", "Original question: {question}\n\nSub-questions and answers:\n{answers}\n\nFinal answer:")]
)


def build_seed(model: SimModel, sc: Scenario) -> Callable[[], Any]:
    decompose_chain = (
        ChatPromptTemplate.from_messages(
            [("system", f"Split the question into simpler sub-questions, {SPLIT}."), ("human", "{question}")]
        )
        | model
        | StrOutputParser()
    )
    answer_chain, combine_chain = ANSWER | model | StrOutputParser(), COMBINE | model | StrOutputParser()

    def run() -> str:
        subs = [line.strip() for line in decompose_chain.invoke({"question": QUESTION}).splitlines() if line.strip()]
        answers = [answer_chain.invoke({"question": q}) for q in subs]
        found = "\n".join(f"{q} → {a}" for q, a in zip(subs, answers))
        return combine_chain.invoke({"question": QUESTION, "answers": found})

    return run


def build_batch(model: SimModel, sc: Scenario) -> Callable[[], Any]:
    plan_chain = (
        ChatPromptTemplate.from_messages(
            [
                (
                    "system",
                    'Split the question into sub-questions. Reply with JSON: {{"steps": [{{"id": 1, "question": '
                    '"...", "depends_on": []}}]}}; write {{n}} for the answer of step n.',
                ),
                ("human", "{question}"),
            ]
        )
        | model
        | StrOutputParser()
    )
    answer_chain, combine_chain = ANSWER | model | StrOutputParser(), COMBINE | model | StrOutputParser()
    config = {"max_concurrency": len(sc.steps)}

    def run() -> str:
        steps = {s["id"]: s for s in json.loads(plan_chain.invoke({"question": QUESTION}))["steps"]}
        answers: dict[int, str] = {}
        while len(answers) < len(steps):  # one .batch per dependency level
            level = [i for i, s in steps.items() if i not in answers and set(s["depends_on"]) <= answers.keys()]
            qs = [re.sub(r"\{(\d+)\}", lambda m: answers[int(m[1])], steps[i]["question"]) for i in level]
            answers.update(zip(level, answer_chain.batch([{"question": q} for q in qs], config=config)))
        found = "\n".join(f"{steps[i]['question']} → {a}" for i, a in sorted(answers.items()))
        return combine_chain.invoke({"question": QUESTION, "answers": found})

    return run


def build_llamaindex(model: SimModel, sc: Scenario) -> Callable[[], Any]:
    from llama_index.core import PromptTemplate, get_response_synthesizer
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.query_engine import CustomQueryEngine, SubQuestionQueryEngine
    from llama_index.core.question_gen.types import BaseQuestionGenerator, SubQuestion
    from llama_index.core.tools import QueryEngineTool

    class SimLLM(CustomLLM):  # a LlamaIndex LLM answering through the same LangChain model
        lc: Any = None

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="sim")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            return CompletionResponse(text=self.lc.invoke(prompt).content)

        @llm_completion_callback()
        async def acomplete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            return CompletionResponse(text=(await self.lc.ainvoke(prompt)).content)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any):
            yield self.complete(prompt)

    class FixedQuestions(BaseQuestionGenerator):  # one decompose call (its latency counts), fixed sub-questions
        def __init__(self, llm: SimLLM, questions: list[str]):
            self.llm, self.questions = llm, questions

        def _get_prompts(self) -> dict:
            return {}

        def _update_prompts(self, prompts: dict) -> None:
            pass

        def generate(self, tools, query):
            self.llm.complete(f"Split the question, {SPLIT}: {query.query_str}")
            return [SubQuestion(sub_question=q, tool_name="sim") for q in self.questions]

        async def agenerate(self, tools, query):
            await self.llm.acomplete(f"Split the question, {SPLIT}: {query.query_str}")
            return [SubQuestion(sub_question=q, tool_name="sim") for q in self.questions]

    class SimEngine(CustomQueryEngine):
        llm: Any

        def custom_query(self, query_str: str) -> str:
            return self.llm.complete(query_str).text

        async def acustom_query(self, query_str: str) -> str:
            return (await self.llm.acomplete(query_str)).text

    llm = SimLLM(lc=model)
    tool = QueryEngineTool.from_defaults(SimEngine(llm=llm), name="sim", description="answers sub-questions")
    synth = get_response_synthesizer(
        llm=llm,
        response_mode="compact",
        use_async=True,
        text_qa_template=PromptTemplate(
            "Original question: {query_str}\n\nSub-questions and answers:\n{context_str}\n\nFinal answer:"
        ),
    )
    engine = SubQuestionQueryEngine(FixedQuestions(llm, sc.questions()), synth, [tool], verbose=False, use_async=True)
    return lambda: asyncio.run(engine.aquery(QUESTION))


SYSTEMS: dict[str, tuple[Callable[[SimModel, Scenario], Callable[[], Any]], str]] = {
    "decompose (ours)": (build_ours, "DAG: a step starts when its dependencies finish"),
    "seed chain": (build_seed, "sequential (cannot run steps at once)"),
    "LangChain .batch": (build_batch, "one .batch per dependency level"),
    "LlamaIndex SubQuestion": (build_llamaindex, "all at once (no dependencies: B runs without A's answer)"),
}


# ----- measuring ------------------------------------------------------------------------------------------------


def wall_ms(run: Callable[[], Any], repeats: int, per_sample: int = 1) -> float:
    """Median over `repeats` samples of the mean wall time of `per_sample` runs, in ms (after one warm-up run)."""
    run()
    samples = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        for _ in range(per_sample):
            run()
        samples.append((time.perf_counter() - started) * 1000 / per_sample)
    return statistics.median(samples)


def checkpoint_overhead(scale: float, repeats: int) -> dict[str, float]:
    """Ours on the width-16 scenario with and without `checkpoints=` (a fresh SQLite file), runs alternated so
    that both see the same load: the median seconds of each and the difference."""
    import tempfile

    sc = next(s for s in scenarios(scale) if s.name.startswith("width 16"))
    with tempfile.TemporaryDirectory() as folder:
        orch = Orchestrator(
            make_model(sc), max_concurrency=len(sc.steps), decomposer=Decomposer(max_steps=max(10, len(sc.steps)))
        )
        runs = {"without": orch, "with": orch.replace(checkpoints=str(Path(folder) / "checkpoints.sqlite3"))}
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for o in runs.values():
            o.run(QUESTION)  # warm-up (the store's first open too)
        for _ in range(repeats):
            for name, o in runs.items():
                gc.collect()
                started = time.perf_counter()
                o.run(QUESTION)
                samples[name].append(time.perf_counter() - started)
    without, with_ = statistics.median(samples["without"]), statistics.median(samples["with"])
    print(f"{sc.name}, median of {repeats}, alternated: {without:.3f} s without checkpoints, {with_:.3f} s with")
    print(f"checkpoint overhead: {(with_ / without - 1) * 100:+.1f} %")
    return {"without": without, "with": with_}


def versions() -> str:
    from importlib.metadata import version

    return (
        f"Python {platform.python_version()} ({platform.machine()}), decompose {decompose.__version__}, "
        f"langchain-core {langchain_core.__version__}, llama-index-core {version('llama-index-core')}, "
        f"pydantic {version('pydantic')}"
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 samples per cell and fewer overhead runs")
    parser.add_argument("--repeats", type=int, default=None, help="samples per cell (median; default 5)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every simulated latency")
    parser.add_argument(
        "--checkpoints", action="store_true", help="only ours, width 16, with and without checkpoints= (median of 15)"
    )
    args = parser.parse_args(argv)
    if args.checkpoints:
        print(versions())
        overhead = checkpoint_overhead(args.scale, args.repeats or 15)
        return [{"system": "decompose (ours)", "scenario": "checkpoints", **overhead}]
    repeats = args.repeats or (2 if args.quick else 5)
    per_sample = 10 if args.quick else 100  # zero-latency runs per overhead sample
    print(versions())
    print(
        f"median of {repeats} samples per cell; every system calls one simulated model"
        + (f"; latencies × {args.scale:g}" if args.scale != 1.0 else "")
        + "\n"
    )

    rows: list[dict[str, Any]] = []
    for sc in scenarios(args.scale):
        for system, (build, how) in SYSTEMS.items():
            ms, cp = wall_ms(build(make_model(sc), sc), repeats), sc.critical_path() * 1000
            rows.append(
                {"system": system, "scenario": sc.name, "wall_ms": ms, "cp_ms": cp, "ratio": ms / cp, "how": how}
            )
    for system, (build, how) in SYSTEMS.items():
        ms = wall_ms(build(make_model(OVERHEAD), OVERHEAD), repeats, per_sample)
        rows.append(
            {"system": system, "scenario": OVERHEAD.name, "wall_ms": ms, "cp_ms": 0.0, "ratio": None, "how": how}
        )

    head = f"{'system':<24} {'scenario':<30} {'wall ms':>9} {'crit. path ms':>14} {'ratio':>7}"
    print(head + "\n" + "-" * len(head))
    for i, r in enumerate(rows):
        if i and r["scenario"] != rows[i - 1]["scenario"]:
            print()
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "—"
        print(f"{r['system']:<24} {r['scenario']:<30} {r['wall_ms']:>9.2f} {r['cp_ms']:>14.1f} {ratio:>7}")
    print("\nHow each system runs the steps (the overhead rows: ms per run, model answering at once):")
    for system, (_, how) in SYSTEMS.items():
        print(f"  {system:<24} {how}")
    print()
    ours = [r for r in rows if r["system"] == "decompose (ours)"]
    for r in ours[:-1]:
        verdict = "PASS" if r["ratio"] <= 1.05 else "FAIL"
        print(f"{verdict}  ours ≤ 1.05× critical path, {r['scenario']}: {r['ratio']:.3f}×")
    seed = next(r for r in rows if r["system"] == "seed chain" and r["scenario"] == OVERHEAD.name)
    less = seed["wall_ms"] / ours[-1]["wall_ms"]
    print(
        f"{'PASS' if less >= 6 else 'FAIL'}  overhead per run ≥ 6× less than the seed chain: "
        f"{seed['wall_ms']:.2f} ms vs ours {ours[-1]['wall_ms']:.2f} ms = {less:.1f}× less"
    )
    return rows


if __name__ == "__main__":
    main()
