"""Answer quality: does decomposing give better answers than answering directly, or than the peers, on one model?

    python benchmarks/quality.py                                   # every dataset and system, the tuning rows 1-50
    python benchmarks/quality.py --datasets gsm8k --systems direct cot react --rows 51-250   # report rows
    python benchmarks/quality.py --table-only --rows 51-end         # the table from the stored records, no model
    python benchmarks/quality.py --model smollm2                    # the embedded model instead

By default the capable model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, see `capable_model.py`) is fetched, checked
and served on 127.0.0.1; `--base-url` reuses a server already running, `--gguf PATH` serves a GGUF on disk,
`--model SPEC` takes any model spec. Greedy decoding for every row. Data is read in place from `--data` (default
`../shared/data`, beside the project); nothing is copied.

Rows: `--rows A-B` (1-based, inclusive; `A-end` for the last row allowed). Rows 1-50 tune prompts, rows 51 on
are reported. Rows past a dataset's ceiling (GSM8K and TAT-QA 250, StrategyQA 200) are held out for a final
check and never read: asking for them is refused.

Per-row records go to `benchmarks/results/<model>/<dataset>-<system>.jsonl` (`--out`; compact, committed):
rows already there are not run again, and stored predictions are scored again when read.

Datasets: gsm8k (calculator), bamboogle (Bamboogle-with-facts) and strategyqa (dev), both with BM25 retrieval
over one corpus of every Bamboogle fact and every StrategyQA fact (train and dev: thousands of passages, most of
them distractors), and tatqa (each question's table and paragraphs are its documents; calculator).

Systems: direct (bare answer), cot (reason, then "Answer:"), retrieval (retrieve with the whole question, answer
once), majority (the tuning rows' most frequent gold, on yes/no datasets; no model), react (LangGraph's ReAct
agent with the same tools as ours), ours (decompose → solve with tools / retrieval → synthesize), llamaindex
(`SubQuestionQueryEngine` with the same retriever and model), seed (the seed's sequential chain: split into
lines, answer each, combine), program (program of thought on a one-step plan), auto (ours with
strategy="auto": per question one of direct, cot, program, retrieval or decomposing; the route is recorded per row).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from react_peer import react_agent  # noqa: E402
from text_tool_calls import read_tool_calls  # noqa: E402

from decompose import Decomposer, Orchestrator, PlanFallback, PlanReady  # noqa: E402
from decompose.chains.answer_form import answer_form  # noqa: E402
from decompose.chains.answer_line import final_answer_line  # noqa: E402
from decompose.plan import escape_references  # noqa: E402
from decompose.retrieval import LocalDocsRetriever, passages_text  # noqa: E402
from decompose.retry import RetryPolicy  # noqa: E402
from decompose.scoring import answer_match, exact_match, normalize_answer, token_f1  # noqa: E402
from decompose.tools.calculator import calculator_tools  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ["direct", "cot", "retrieval", "majority", "react", "ours", "auto", "llamaindex", "seed", "program"]
PLANNERS = ("ours", "auto")  # systems that decompose (auto: when no cheaper route answers)
NO_MODEL = {"majority"}
DATASETS = ["gsm8k", "bamboogle", "strategyqa", "tatqa"]
TUNING_ROWS = 50  # rows 1-50 tune prompts; rows from 51 on are the ones reported
# The last row of each file that may ever be read: the rows after it are kept for a final check. Bamboogle has
# no ceiling (its rows 51-end are the report set). HotpotQA is not a dataset here yet (its file holds no
# passages); its ceiling is fixed now so that no run reads past it later.
CEILING = {"gsm8k": 250, "tatqa": 250, "strategyqa": 200, "hotpotqa": 1000}
# Errors of transport, ours' (ModelError) or a peer's straight from the OpenAI client: such rows are run again.
TRANSPORT = re.compile(r"ModelError|APIConnectionError|APITimeoutError|InternalServerError")
REACT_STEPS = 12  # LangGraph supersteps: at most six model calls between five tool rounds
PATIENT = RetryPolicy(max_total=None)
YES_NO_START = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


@dataclass
class Row:
    id: str
    question: str
    gold: list[str]
    docs: list[tuple[str, str]] | None = None  # per-question documents (TAT-QA)


@dataclass
class Dataset:
    name: str
    rows: list[Row]
    tools: bool = False
    corpus: list[tuple[str, str]] | None = None  # shared documents
    k: int = 3  # passages per query
    retrievers: dict[str, LocalDocsRetriever] = field(default_factory=dict)
    majority: str | None = None  # the tuning rows' most frequent gold, where the golds are classes
    first: int = 1  # the 1-based number of rows[0] in its file

    @property
    def has_docs(self) -> bool:
        return self.corpus is not None or any(r.docs for r in self.rows)

    def retriever(self, row: Row) -> LocalDocsRetriever | None:
        docs = row.docs if row.docs else self.corpus
        if docs is None:
            return None
        key = row.id if row.docs else "corpus"
        if key not in self.retrievers:
            self.retrievers[key] = LocalDocsRetriever.from_texts(docs, k=self.k)
        return self.retrievers[key]


# ----- data ----------------------------------------------------------------------------------------------------


def _jsonl(path: Path, stop: int | None = None) -> list[dict[str, Any]]:
    """The first `stop` rows (all when None): the lines after them are not even read."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in itertools.islice((ln for ln in lines if ln.strip()), stop)]


def parse_rows(text: str) -> tuple[int, int | None]:
    """`A-B` (1-based, inclusive) or `A-end` → (A, B or None)."""
    found = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+|end)\s*", text)
    if not found or int(found[1]) < 1 or (found[2] != "end" and int(found[2]) < int(found[1])):
        raise argparse.ArgumentTypeError(f"rows must be A-B (1-based, inclusive, e.g. 51-250) or A-end, got {text!r}")
    return int(found[1]), None if found[2] == "end" else int(found[2])


def row_span(name: str, rows: tuple[int, int | None]) -> tuple[int, int | None]:
    """The rows of `name` to read, `end` being its ceiling; refuses any row past the ceiling."""
    first, last = rows
    ceiling = CEILING.get(name)
    if ceiling is None:
        return first, last
    if (last or ceiling) > ceiling or first > ceiling:
        raise SystemExit(
            f"{name} rows past {ceiling} are held out for the final check and never read: "
            f"ask for rows up to {ceiling} (e.g. --rows {min(first, TUNING_ROWS + 1)}-{ceiling})"
        )
    return first, last or ceiling


def majority_answer(rows: list[Row]) -> str | None:
    """The most frequent gold of these rows when every gold is yes/no; None elsewhere (the commonest of 50
    numbers or names is no baseline)."""
    golds = [normalize_answer(row.gold[0]) for row in rows]
    if not golds or not set(golds) <= {"yes", "no"}:
        return None
    return Counter(golds).most_common(1)[0][0].capitalize()


def fact_corpus(data: Path) -> list[tuple[str, str]]:
    corpus: list[tuple[str, str]] = []
    for row in _jsonl(data / "eval" / "bamboogle_with_facts.jsonl"):
        corpus += [(f"{row['id']}-f{i}", row[f"fact{i}"]) for i in (1, 2) if row.get(f"fact{i}")]
    for split, path in (
        ("train", data / "train" / "strategyqa_train.jsonl"),
        ("dev", data / "eval" / "strategyqa_dev.jsonl"),
    ):
        for row in _jsonl(path):
            corpus += [(f"sqa-{split}-{row['qid']}-f{i}", fact) for i, fact in enumerate(row.get("facts", []), 1)]
    return corpus


def load_dataset(name: str, data: Path, rows: tuple[int, int | None], corpus_cache: dict) -> Dataset:
    """Rows `rows` (1-based, inclusive, within the ceiling) of dataset `name`, and its majority answer."""
    first, last = row_span(name, rows)
    dataset = _read_rows(name, data, last, corpus_cache)
    tuning = (
        dataset.rows[:TUNING_ROWS]
        if (last or TUNING_ROWS) >= TUNING_ROWS
        else _read_rows(name, data, TUNING_ROWS, corpus_cache).rows
    )
    dataset.majority = majority_answer(tuning)
    dataset.rows, dataset.first = dataset.rows[first - 1 :], first
    return dataset


def _read_rows(name: str, data: Path, stop: int | None, corpus_cache: dict) -> Dataset:
    """The first `stop` rows of `name` (all when None)."""
    if name == "gsm8k":
        rows = [
            Row(f"gsm8k-{i}", r["question"], [r["answer"].rsplit("####", 1)[1].strip()])
            for i, r in enumerate(_jsonl(data / "eval" / "gsm8k_test.jsonl", stop))
        ]
        return Dataset(name, rows, tools=True)
    if name in ("bamboogle", "strategyqa"):
        if "facts" not in corpus_cache:
            corpus_cache["facts"] = fact_corpus(data)
        corpus = corpus_cache["facts"]
        if name == "bamboogle":
            raw = _jsonl(data / "eval" / "bamboogle_with_facts.jsonl", stop)
            rows = [Row(r["id"], r["question"], [str(r["answer"])]) for r in raw]
        else:
            raw = _jsonl(data / "eval" / "strategyqa_dev.jsonl", stop)
            rows = [Row(r["qid"], r["question"], ["yes" if r["answer"] else "no"]) for r in raw]
        return Dataset(name, rows, corpus=corpus)
    if name == "tatqa":
        rows = []
        for doc in json.loads((data / "eval" / "tatqa_dataset_dev.json").read_text(encoding="utf-8")):
            table = "\n".join(" | ".join(cell for cell in line) for line in doc["table"]["table"])
            docs = [(f"table-{doc['table']['uid'][:8]}", table)]
            docs += [(f"para-{p['order']}", p["text"]) for p in doc["paragraphs"]]
            for q in doc["questions"]:
                if stop is not None and len(rows) >= stop:
                    break
                answer = q["answer"]
                golds = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
                if len(golds) > 1:  # a multi-span answer: all spans in one string
                    golds = [", ".join(golds)]
                rows.append(Row(q["uid"], q["question"], golds, docs=docs))
        # A question's own table and paragraphs are few: show most of them (the table is usually needed).
        return Dataset(name, rows, tools=True, k=5)
    raise SystemExit(f"unknown dataset {name!r}; use: {', '.join(DATASETS)}")


# ----- systems -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    answer: str | None
    plan: str | None = None  # planning systems: "model" (its own plan), "salvaged", "direct" (fallback), "failed"
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    steps: list[list[Any]] | None = None  # ours: [tool, question, answer] per step, trimmed: why a row changed
    route: dict[str, Any] | None = None  # auto: the route the question took
    cache_hits: int = 0  # of `calls`, those answered from --cache (no model call made)


def tools_of(system: str, dataset: Dataset) -> str:
    """What a system may use on a dataset, for the table: none / calculator / retrieval / calculator+retrieval."""
    used = []
    if system == "program":
        used.append("code")  # it writes and runs its own program
    if dataset.tools and system in ("ours", "auto", "react"):
        used.append("calculator")
    if dataset.has_docs and system in ("retrieval", "ours", "auto", "react", "llamaindex", "program"):
        used.append("retrieval")
    return "+".join(used) or "none"


class Counting:
    """Model calls made outside the Orchestrator (the peers), with their token usage."""

    def __init__(self, model: Any):
        self.model = model
        self.calls = self.input_tokens = self.output_tokens = 0

    def count(self, message: AIMessage) -> AIMessage:
        self.calls += 1
        usage = message.usage_metadata or {}
        self.input_tokens += usage.get("input_tokens", 0)
        self.output_tokens += usage.get("output_tokens", 0)
        return message

    async def ask(self, prompt: str, system: str | None = None) -> str:
        messages = ([SystemMessage(content=system)] if system else []) + [HumanMessage(content=prompt)]
        return str(self.count(await self.model.ainvoke(messages)).content).strip()

    def outcome(self, answer: str | None, plan: str | None = None, error: str | None = None) -> Outcome:
        return Outcome(answer, plan, self.calls, self.input_tokens, self.output_tokens, error)


def plan_origin(result: Any) -> str:
    """Whose plan ran: the model's own, salvaged (steps dropped) or the direct fallback, read from the events
    before the first `PlanReady`; "failed" when no plan ran."""
    if result.plan is None:
        return "failed"
    for event in result.events:
        if isinstance(event, PlanReady):
            break
        if isinstance(event, PlanFallback):
            return event.kind
    return "model"


def orchestrator_system(name: str, replans: int, cache: Any = None) -> Callable:
    async def run(model: Any, dataset: Dataset, row: Row) -> Outcome:
        plans = name in PLANNERS
        retriever = dataset.retriever(row) if plans or name in ("retrieval", "program") else None
        tools = calculator_tools() if dataset.tools and plans else []
        strategy = name if name in ("cot", "program", "auto") else "direct"
        # A local CPU server queues requests past its slots: a call may wait long, and that is not a failure.
        orch = Orchestrator(
            model,
            tools=tools,
            retriever=retriever,
            strategy=strategy,
            retry=PATIENT,
            decomposer=Decomposer(max_replans=replans if plans else 0, on_failure="direct"),
            cache=cache,
        )
        if plans:
            result = await orch.arun(row.question)
        else:  # one step that asks the question itself: answered once, no synthesis
            step = {"id": 1, "question": escape_references(row.question)}
            result = await orch.aexecute({"steps": [step]}, question=row.question)
        usage = result.usage
        steps = None
        if plans and result.plan:
            steps = [
                [s.tool, _trim(s.question, 120), _trim(None if s.answer is None else str(s.answer), 120)]
                for s in result.plan.steps
            ]
        decomposed = plans and (result.route is None or result.route.get("name") == "decompose")
        # The table shows what the system asks of a model, whether the cache or the model answered it: a run
        # from the cache gives the same table; the calls made are printed below it.
        return Outcome(
            result.answer,
            plan_origin(result) if decomposed else None,
            usage.model_calls + usage.cache_hits,
            usage.input_tokens + usage.cached.input,
            usage.output_tokens + usage.cached.output,
            result.error,
            steps,
            result.route,
            usage.cache_hits,
        )

    return run


async def majority_system(model: Any, dataset: Dataset, row: Row) -> Outcome:
    """The tuning rows' most frequent gold, whatever the question: the floor a model must beat."""
    return Outcome(dataset.majority)


REACT_SYSTEM = """Answer the question. Use the tools rather than your memory or mental arithmetic: {uses}. Call \
one tool, read its result, then go on. When you know the answer, end with a last line "Answer: ..." (on that line: \
{form})"""
TOOL_USES = {"calculator": "the calculator for any arithmetic", "search": "search to look facts up in the documents"}


def search_tool(retriever: LocalDocsRetriever) -> Any:
    from langchain_core.tools import tool

    @tool(
        description="Search the documents (passages of facts, or the question's own table and paragraphs); "
        "returns the passages that match the query best."
    )
    def search(query: str) -> str:
        return passages_text(retriever.invoke(query)).strip() or "(no passage found)"

    return search


async def react_system(model: Any, dataset: Dataset, row: Row) -> Outcome:
    """LangGraph's prebuilt ReAct agent over the same model, with ours' calculator (datasets with tools) and a
    search tool over the same BM25 retriever (datasets with documents)."""
    from langchain_core.runnables import RunnableLambda
    from langgraph.errors import GraphRecursionError

    counting = Counting(model)
    retriever = dataset.retriever(row)
    tools = (calculator_tools() if dataset.tools else []) + ([search_tool(retriever)] if retriever else [])
    names = {t.name for t in tools}
    llm = model.bind_tools(tools) | RunnableLambda(lambda m: counting.count(read_tool_calls(m, names)))
    prompt = REACT_SYSTEM.format(
        uses=", ".join(TOOL_USES[t.name] for t in tools), form=answer_form(row.question).instruction
    )
    agent = react_agent(llm, tools, prompt)
    try:
        state = await agent.ainvoke(
            {"messages": [HumanMessage(content=row.question)]}, {"recursion_limit": REACT_STEPS}
        )
    except GraphRecursionError:
        return counting.outcome(None, error=f"no answer within {REACT_STEPS} agent steps")
    return counting.outcome(final_answer_line(str(state["messages"][-1].content)))


SEED_SPLIT = "Split the question into simpler sub-questions, one sub-question per line."
SEED_COMBINE = "Original question: {question}\n\nSub-questions and answers:\n{answers}\n\nFinal answer:"


async def seed_system(model: Any, dataset: Dataset, row: Row) -> Outcome:
    """The seed's chain, sequential: split into lines, answer each line, combine."""
    counting = Counting(model)
    lines = [ln.strip() for ln in (await counting.ask(row.question, SEED_SPLIT)).splitlines() if ln.strip()]
    answers = []
    for sub in lines[:10]:
        answers.append(f"{sub} → {await counting.ask('Question: ' + sub, 'Answer briefly.')}")
    answer = await counting.ask(SEED_COMBINE.format(question=row.question, answers="\n".join(answers)))
    return counting.outcome(answer, "model" if lines else "failed")


async def llamaindex_system(model: Any, dataset: Dataset, row: Row) -> Outcome:
    """LlamaIndex `SubQuestionQueryEngine` on the same model: its own question generator (JSON sub-questions, each
    naming a tool), one query engine per tool, its response synthesizer. With documents, the one tool is a
    `RetrieverQueryEngine` over the same BM25 retriever; without, a query engine that asks the model."""
    from llama_index.core import Settings
    from llama_index.core.query_engine import CustomQueryEngine, RetrieverQueryEngine, SubQuestionQueryEngine
    from llama_index.core.question_gen import LLMQuestionGenerator
    from llama_index.core.tools import QueryEngineTool, ToolMetadata

    counting = Counting(model)
    llm = _llamaindex_llm(counting)
    Settings.llm = llm  # nothing may fall back to LlamaIndex's default OpenAI model
    retriever = dataset.retriever(row)
    if retriever is not None:
        engine = RetrieverQueryEngine.from_args(_llamaindex_retriever(retriever), llm=llm)
        meta = ToolMetadata(name="documents", description="Passages of facts; answers factual questions.")
    else:

        class AskModel(CustomQueryEngine):
            async def acustom_query(self, query_str: str) -> str:
                return await counting.ask("Question: " + query_str, "Answer briefly.")

            def custom_query(self, query_str: str) -> str:
                raise NotImplementedError("async only")

        engine = AskModel()
        meta = ToolMetadata(name="solver", description="Answers a simple question or does a small calculation.")
    sqe = SubQuestionQueryEngine.from_defaults(
        query_engine_tools=[QueryEngineTool(engine, meta)],
        llm=llm,
        question_gen=LLMQuestionGenerator.from_defaults(llm=llm),
        use_async=True,
        verbose=False,
    )
    try:
        response = await sqe.aquery(row.question)
    except Exception as exc:  # its question generator's JSON did not parse, etc.: a failed row, as for ours
        return counting.outcome(None, "failed", f"{type(exc).__name__}: {str(exc)[:200]}")
    return counting.outcome(str(response).strip(), "model")


def _llamaindex_llm(counting: Counting) -> Any:
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata

    class SameModel(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=8192, num_output=512, model_name="same-model")

        async def acomplete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            return CompletionResponse(text=await counting.ask(prompt))

        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            raise NotImplementedError("async only")

        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any):
            raise NotImplementedError("async only")

    return SameModel()


def _llamaindex_retriever(retriever: LocalDocsRetriever) -> Any:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    class Same(BaseRetriever):
        def _retrieve(self, query_bundle: Any) -> list:
            return [
                NodeWithScore(node=TextNode(text=d.page_content, id_=d.metadata["id"]), score=d.metadata.get("score"))
                for d in retriever.invoke(query_bundle.query_str)
            ]

    return Same()


# ----- running and scoring ------------------------------------------------------------------------------------


def _scores(answer: str | None, row: Row) -> dict[str, Any]:
    wrong_type = bool(answer and YES_NO_START.match(answer)) and not any(
        normalize_answer(g) in ("yes", "no") for g in row.gold
    )
    return {
        "match": max(answer_match(answer, g) for g in row.gold) if answer else 0.0,
        "em": max(exact_match(answer, g) for g in row.gold) if answer else 0.0,
        "f1": round(max(token_f1(answer, g) for g in row.gold), 4) if answer else 0.0,
        "wrong_type": wrong_type,
    }


def _trim(text: str | None, most: int) -> str | None:
    """At most about `most` characters, its start and end kept: answer match reads the first yes/no word and
    the last number."""
    if text is None or len(text) <= most:
        return text
    return text[: most // 2] + " … " + text[-(most // 2) :]


def score_record(row: Row, outcome: Outcome, elapsed: float) -> dict[str, Any]:
    """The compact record committed under benchmarks/results: scored on the prediction as stored."""
    prediction = _trim(outcome.answer, 400)
    return {
        "id": row.id,
        "prediction": prediction,
        "gold": row.gold,
        **_scores(prediction, row),
        **({"plan": outcome.plan} if outcome.plan is not None else {}),
        "error": _trim(outcome.error, 200),
        "calls": outcome.calls,
        **({"cache_hits": outcome.cache_hits} if outcome.cache_hits else {}),
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "elapsed": round(elapsed, 1),
        **({"steps": outcome.steps} if outcome.steps is not None else {}),
        **({"route": outcome.route} if outcome.route is not None else {}),
    }


def not_run(record: dict[str, Any]) -> bool:
    """A row whose model was never reached (the server was down: no call succeeded) or that failed in transport."""
    return bool(record["error"]) and (record["calls"] == 0 or bool(TRANSPORT.search(str(record["error"]))))


def stored_records(dataset: Dataset, out: Path) -> dict[str, dict[str, Any]]:
    """The records of `out` for this dataset's rows, scored again (a scoring fix reaches rows already run); a
    later record of a row wins."""
    golds = {row.id: row for row in dataset.rows}
    return {
        r["id"]: {**r, **_scores(r["prediction"], golds[r["id"]])}
        for r in (_jsonl(out) if out.exists() else [])
        if r["id"] in golds
    }


async def run_cell(
    model: Any, dataset: Dataset, system: str, run: Callable, out: Path, concurrency: int
) -> list[dict[str, Any]]:
    done = stored_records(dataset, out)
    # Rows that failed in transport (the server was down or overloaded) say nothing about quality: run again.
    todo = [row for row in dataset.rows if row.id not in done or not_run(done[row.id])]
    slots = asyncio.Semaphore(concurrency)
    finished: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as report:

        async def one(row: Row) -> None:
            async with slots:
                started = time.monotonic()
                try:
                    outcome = await run(model, dataset, row)
                except Exception as exc:  # a row that crashes is a failed row, never a lost one
                    outcome = Outcome(None, error=f"{type(exc).__name__}: {str(exc)[:200]}")
                record = score_record(row, outcome, time.monotonic() - started)
                done[row.id] = record
                report.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                report.flush()
                finished.append(row.id)
                print(
                    f"  {dataset.name}/{system} {len(finished)}/{len(todo)} {row.id}: "
                    f"match={record['match']:g} {str(record['prediction'])[:60]!r}",
                    file=sys.stderr,
                    flush=True,
                )

        await asyncio.gather(*(one(row) for row in todo))
    return [done[row.id] for row in dataset.rows if row.id in done]


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records) or 1
    plans = Counter(r["plan"] for r in records if "plan" in r)
    return {
        "rows": len(records),
        "match": sum(r["match"] for r in records) / n,
        "em": sum(r["em"] for r in records) / n,
        "f1": sum(r["f1"] for r in records) / n,
        # only plans the model wrote itself count as valid; salvaged and fallback plans have their own columns
        "valid_plans": f"{plans['model']}/{sum(plans.values())}" if plans else "—",
        "salvaged": plans["salvaged"] if plans else "—",
        "fallbacks": plans["direct"] if plans else "—",
        "wrong_type": sum(r["wrong_type"] for r in records),
        "errors": sum(bool(r["error"]) for r in records),
        "calls": sum(r["calls"] for r in records),
        "tokens": sum(r["input_tokens"] + r["output_tokens"] for r in records),
        "row_seconds": sum(r["elapsed"] for r in records) / n,
    }


def table(cells: dict[tuple[str, str], dict[str, Any]]) -> str:
    lines = [
        "| dataset | system | tools | rows | answer match | EM | F1 | valid plans | salvaged plans | "
        "fallback plans | wrong type | errors | calls | tokens | s per question |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, system), s in cells.items():
        lines.append(
            f"| {dataset} | {system} | {s['tools']} | {s['rows']} | {s['match']:.2f} | {s['em']:.2f} | "
            f"{s['f1']:.2f} | {s['valid_plans']} | {s['salvaged']} | {s['fallbacks']} | "
            f"{s['wrong_type']} | {s['errors']} | {s['calls']} | {s['tokens']} | {s['row_seconds']:.1f} |"
        )
    return "\n".join(lines)


def applies(system: str, dataset: Dataset) -> bool:
    """Retrieval needs documents; majority needs a dataset whose golds are classes."""
    return not (system == "retrieval" and not dataset.has_docs or system == "majority" and dataset.majority is None)


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument(
        "--rows",
        type=parse_rows,
        help="A-B, 1-based and inclusive, or A-end (default 1-50: the "
        "tuning rows; 51 on are reported); rows past a dataset's ceiling are refused",
    )
    parser.add_argument("--limit", type=int, help="the same as --rows 1-N")
    parser.add_argument(
        "--table-only", action="store_true", help="score the stored records again and print the table; runs no model"
    )
    parser.add_argument("--model", help="a model spec (e.g. smollm2); default: the capable model, served here")
    parser.add_argument("--base-url", help="an OpenAI-compatible server already serving the capable model")
    parser.add_argument("--gguf", type=Path, help="serve this GGUF of the capable model instead of fetching it")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="per-row records, resumable (default benchmarks/results)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the Orchestrator systems' model replies in this SQLite file: a second run over the same rows "
        "(into another --out) makes no model call and gives the same table",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="questions at once (default 4)")
    parser.add_argument("--replans", type=int, default=0, help="max_replans for ours (default 0)")
    args = parser.parse_args(argv)
    if args.rows and args.limit:
        parser.error("give --rows or --limit, not both")
    rows = args.rows or (1, args.limit or TUNING_ROWS)
    if not (args.data / "eval").is_dir():
        raise SystemExit(f"no eval data under {args.data}: pass --data PATH (the folder holding eval/ and train/)")
    corpus_cache: dict = {}
    datasets = [load_dataset(name, args.data, rows, corpus_cache) for name in args.datasets]  # refusals first

    import contextlib

    import capable_model

    label = args.model or capable_model.ALIAS
    cache = None
    if args.cache:
        from decompose.cache import SQLiteCache

        cache = SQLiteCache(args.cache)
    runners = {
        "direct": orchestrator_system("direct", 0, cache),
        "cot": orchestrator_system("cot", 0, cache),
        "retrieval": orchestrator_system("retrieval", 0, cache),
        "majority": majority_system,
        "react": react_system,
        "ours": orchestrator_system("ours", args.replans, cache),
        "auto": orchestrator_system("auto", args.replans, cache),
        "program": orchestrator_system("program", 0, cache),
        "llamaindex": llamaindex_system,
        "seed": seed_system,
    }
    cells: dict[tuple[str, str], dict[str, Any]] = {}

    def out_of(dataset: Dataset, system: str) -> tuple[str, Path]:
        suffix = f"-r{args.replans}" if system == "ours" and args.replans else ""
        return system + suffix, args.out / _slug(label) / f"{dataset.name}-{system}{suffix}.jsonl"

    with contextlib.ExitStack() as stack:
        model = None
        if args.table_only or set(args.systems) <= NO_MODEL:
            pass  # scoring stored records, or systems that ask no model: nothing to serve
        elif args.model:
            from decompose.models import load_model  # every spec the command takes

            model = load_model(args.model)
        else:
            url = args.base_url or stack.enter_context(capable_model.serve(parallel=args.concurrency, gguf=args.gguf))
            model = capable_model.load(url, timeout=1800)

        made = [0, 0]  # model calls made, calls answered from --cache

        async def run_all() -> None:  # one event loop: the model's HTTP client lives on it
            for dataset in datasets:
                for system in args.systems:
                    if not applies(system, dataset):
                        continue
                    name, out = out_of(dataset, system)
                    if args.table_only:
                        records = list(stored_records(dataset, out).values())
                        if not records:
                            continue
                    else:
                        records = await run_cell(model, dataset, system, runners[system], out, args.concurrency)
                    cells[(dataset.name, name)] = {**summary(records), "tools": tools_of(system, dataset)}
                    hits = sum(r.get("cache_hits", 0) for r in records)
                    made[0] += sum(r["calls"] for r in records) - hits
                    made[1] += hits

        asyncio.run(run_all())
    spans = ", ".join(f"{d.name} {d.first}-{d.first + len(d.rows) - 1}" for d in datasets)
    print(f"\nmodel: {label}, greedy; rows {spans}\n")
    print(table(cells))
    if not args.table_only:
        print(f"\nmodel calls made: {made[0]}; answered from the cache: {made[1]}")
    return cells


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


if __name__ == "__main__":
    main()
