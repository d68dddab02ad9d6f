"""Answer quality: does decomposing give better answers than answering directly, or than the peers, on one model?

    python benchmarks/quality.py                                   # every dataset and system, 50 rows each
    python benchmarks/quality.py --datasets gsm8k --systems direct cot ours --limit 20
    python benchmarks/quality.py --model smollm2                    # the embedded model instead

By default the capable model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, see `capable_model.py`) is fetched, checked
and served on 127.0.0.1; `--base-url` reuses a server already running, `--model SPEC` takes any model spec.
Greedy decoding for every row. Data is read in place from `--data` (default `../shared/data`, beside the
project); nothing is copied. Per-row records go to `--out` (one JSONL per dataset and system, resumable: rows
already there are not run again), then a markdown table is printed.

Datasets: gsm8k (calculator), bamboogle (Bamboogle-with-facts) and strategyqa (dev), both with BM25 retrieval
over one corpus of every Bamboogle fact and every StrategyQA fact (train and dev: thousands of passages, most of
them distractors), and tatqa (each question's table and paragraphs are its documents; calculator).

Systems: direct (bare answer), cot (reason, then "Answer:"), retrieval (retrieve with the whole question, answer
once), ours (decompose → solve with tools / retrieval → synthesize), auto (ours with strategy="auto": per
question one of direct, cot, program, retrieval or decomposing; the route is recorded per row), llamaindex
(`SubQuestionQueryEngine` with the same retriever and model), seed (the seed's sequential chain: split into lines, answer each, combine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402

from decompose import Decomposer, Orchestrator  # noqa: E402
from decompose.plan import escape_references  # noqa: E402
from decompose.retrieval import LocalDocsRetriever  # noqa: E402
from decompose.retry import RetryPolicy  # noqa: E402
from decompose.scoring import answer_match, exact_match, normalize_answer, token_f1  # noqa: E402
from decompose.tools.calculator import calculator_tools  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYSTEMS = ["direct", "cot", "retrieval", "ours", "auto", "llamaindex", "seed"]
DATASETS = ["gsm8k", "bamboogle", "strategyqa", "tatqa"]
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


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fact_corpus(data: Path) -> list[tuple[str, str]]:
    corpus: list[tuple[str, str]] = []
    for row in _jsonl(data / "eval" / "bamboogle_with_facts.jsonl"):
        corpus += [(f"{row['id']}-f{i}", row[f"fact{i}"]) for i in (1, 2) if row.get(f"fact{i}")]
    for split, path in (("train", data / "train" / "strategyqa_train.jsonl"),
                        ("dev", data / "eval" / "strategyqa_dev.jsonl")):
        for row in _jsonl(path):
            corpus += [(f"sqa-{split}-{row['qid']}-f{i}", fact) for i, fact in enumerate(row.get("facts", []), 1)]
    return corpus


def load_dataset(name: str, data: Path, limit: int, corpus_cache: dict) -> Dataset:
    if name == "gsm8k":
        rows = [Row(f"gsm8k-{i}", r["question"], [r["answer"].rsplit("####", 1)[1].strip()])
                for i, r in enumerate(_jsonl(data / "eval" / "gsm8k_test.jsonl")[:limit])]
        return Dataset(name, rows, tools=True)
    if name in ("bamboogle", "strategyqa"):
        if "facts" not in corpus_cache:
            corpus_cache["facts"] = fact_corpus(data)
        corpus = corpus_cache["facts"]
        if name == "bamboogle":
            raw = _jsonl(data / "eval" / "bamboogle_with_facts.jsonl")[:limit]
            rows = [Row(r["id"], r["question"], [str(r["answer"])]) for r in raw]
        else:
            raw = _jsonl(data / "eval" / "strategyqa_dev.jsonl")[:limit]
            rows = [Row(r["qid"], r["question"], ["yes" if r["answer"] else "no"]) for r in raw]
        return Dataset(name, rows, corpus=corpus)
    if name == "tatqa":
        rows = []
        for doc in json.loads((data / "eval" / "tatqa_dataset_dev.json").read_text(encoding="utf-8")):
            table = "\n".join(" | ".join(cell for cell in line) for line in doc["table"]["table"])
            docs = [(f"table-{doc['table']['uid'][:8]}", table)]
            docs += [(f"para-{p['order']}", p["text"]) for p in doc["paragraphs"]]
            for q in doc["questions"]:
                answer = q["answer"]
                golds = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
                if len(golds) > 1:  # a multi-span answer: all spans in one string
                    golds = [", ".join(golds)]
                rows.append(Row(q["uid"], q["question"], golds, docs=docs))
                if len(rows) >= limit:
                    break
            if len(rows) >= limit:
                break
        # A question's own table and paragraphs are few: show most of them (the table is usually needed).
        return Dataset(name, rows, tools=True, k=5)
    raise SystemExit(f"unknown dataset {name!r}; use: {', '.join(DATASETS)}")


# ----- systems -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    answer: str | None
    valid_plan: bool | None = None
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    steps: list[dict[str, Any]] | None = None  # ours: `Result.to_dict()`'s steps, to read why a row changed
    route: dict[str, Any] | None = None  # auto: the route the question took


class Counting:
    """Model calls made outside the Orchestrator (the peers), with their token usage."""

    def __init__(self, model: Any):
        self.model = model
        self.calls = self.input_tokens = self.output_tokens = 0

    async def ask(self, prompt: str, system: str | None = None) -> str:
        messages = ([SystemMessage(content=system)] if system else []) + [HumanMessage(content=prompt)]
        message = await self.model.ainvoke(messages)
        self.calls += 1
        usage = message.usage_metadata or {}
        self.input_tokens += usage.get("input_tokens", 0)
        self.output_tokens += usage.get("output_tokens", 0)
        return str(message.content).strip()

    def outcome(self, answer: str | None, valid_plan: bool | None, error: str | None = None) -> Outcome:
        return Outcome(answer, valid_plan, self.calls, self.input_tokens, self.output_tokens, error)


def orchestrator_system(name: str, replans: int) -> Callable:
    async def run(model: Any, dataset: Dataset, row: Row) -> Outcome:
        decomposes = name in ("ours", "auto")
        retriever = dataset.retriever(row) if name == "retrieval" or decomposes else None
        tools = calculator_tools() if dataset.tools and decomposes else []
        strategy = name if name in ("cot", "auto") else "direct"
        # A local CPU server queues requests past its slots: a call may wait long, and that is not a failure.
        orch = Orchestrator(model, tools=tools, retriever=retriever, strategy=strategy, retry=PATIENT,
                            decomposer=Decomposer(max_replans=replans if decomposes else 0, on_failure="direct"))
        if decomposes:
            result = await orch.arun(row.question)
        else:  # one step that asks the question itself: answered once, no synthesis
            step = {"id": 1, "question": escape_references(row.question)}
            result = await orch.aexecute({"steps": [step]}, question=row.question)
        usage = result.usage
        steps = result.to_dict()["steps"] if decomposes and result.plan else None
        return Outcome(result.answer, result.plan is not None if decomposes else None, usage.model_calls,
                       usage.input_tokens, usage.output_tokens, result.error, steps, result.route)

    return run


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
    return counting.outcome(answer, bool(lines))


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
    sqe = SubQuestionQueryEngine.from_defaults(query_engine_tools=[QueryEngineTool(engine, meta)], llm=llm,
                                               question_gen=LLMQuestionGenerator.from_defaults(llm=llm),
                                               use_async=True, verbose=False)
    try:
        response = await sqe.aquery(row.question)
    except Exception as exc:  # its question generator's JSON did not parse, etc.: a failed row, as for ours
        return counting.outcome(None, False, f"{type(exc).__name__}: {str(exc)[:200]}")
    return counting.outcome(str(response).strip(), True)


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
            return [NodeWithScore(node=TextNode(text=d.page_content, id_=d.metadata["id"]),
                                  score=d.metadata.get("score")) for d in retriever.invoke(query_bundle.query_str)]

    return Same()


# ----- running and scoring ------------------------------------------------------------------------------------


def _scores(answer: str | None, row: Row) -> dict[str, Any]:
    wrong_type = bool(answer and YES_NO_START.match(answer)) and not any(
        normalize_answer(g) in ("yes", "no") for g in row.gold)
    return {
        "match": max(answer_match(answer, g) for g in row.gold) if answer else 0.0,
        "em": max(exact_match(answer, g) for g in row.gold) if answer else 0.0,
        "f1": round(max(token_f1(answer, g) for g in row.gold), 4) if answer else 0.0,
        "wrong_type": wrong_type,
    }


def score_record(row: Row, outcome: Outcome, elapsed: float) -> dict[str, Any]:
    return {
        "id": row.id, "question": row.question, "gold": row.gold, "prediction": outcome.answer,
        **_scores(outcome.answer, row),
        "valid_plan": outcome.valid_plan, "error": outcome.error,
        "calls": outcome.calls, "input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens,
        "elapsed": round(elapsed, 2),
        **({"steps": outcome.steps} if outcome.steps is not None else {}),
        **({"route": outcome.route} if outcome.route is not None else {}),
    }


async def run_cell(model: Any, dataset: Dataset, system: str, run: Callable, out: Path,
                   concurrency: int) -> list[dict[str, Any]]:
    golds = {row.id: row for row in dataset.rows}
    # A later record of a row wins; records are scored again, so a scoring fix reaches rows already run.
    done = {r["id"]: {**r, **_scores(r["prediction"], golds[r["id"]])} if r["id"] in golds else r
            for r in (_jsonl(out) if out.exists() else [])}
    # Rows that failed in transport (the server was down or overloaded) say nothing about quality: run again.
    todo = [row for row in dataset.rows if row.id not in done or "ModelError" in str(done[row.id]["error"])]
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
                    outcome = Outcome(None, False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
                record = score_record(row, outcome, time.monotonic() - started)
                done[row.id] = record
                report.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                report.flush()
                finished.append(row.id)
                print(f"  {dataset.name}/{system} {len(finished)}/{len(todo)} {row.id}: "
                      f"match={record['match']:g} {str(record['prediction'])[:60]!r}", file=sys.stderr, flush=True)

        await asyncio.gather(*(one(row) for row in todo))
    return [done[row.id] for row in dataset.rows if row.id in done]


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records) or 1
    plans = [r["valid_plan"] for r in records if r["valid_plan"] is not None]
    return {
        "rows": len(records),
        "match": sum(r["match"] for r in records) / n, "em": sum(r["em"] for r in records) / n,
        "f1": sum(r["f1"] for r in records) / n,
        "valid_plans": f"{sum(plans)}/{len(plans)}" if plans else "—",
        "wrong_type": sum(r["wrong_type"] for r in records),
        "calls": sum(r["calls"] for r in records),
        "tokens": sum(r["input_tokens"] + r["output_tokens"] for r in records),
        "row_seconds": sum(r["elapsed"] for r in records) / n,
    }


def table(cells: dict[tuple[str, str], dict[str, Any]]) -> str:
    lines = ["| dataset | system | answer match | EM | F1 | valid plans | wrong type | calls | tokens | "
             "s per question |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, system), s in cells.items():
        lines.append(f"| {dataset} | {system} | {s['match']:.2f} | {s['em']:.2f} | {s['f1']:.2f} | "
                     f"{s['valid_plans']} | {s['wrong_type']} | {s['calls']} | {s['tokens']} | "
                     f"{s['row_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--limit", type=int, default=50, help="first N rows of each dataset (default 50)")
    parser.add_argument("--model", help="a model spec (e.g. smollm2); default: the capable model, served here")
    parser.add_argument("--base-url", help="an OpenAI-compatible server already serving the capable model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=Path(".quality"), help="per-row records (resumable)")
    parser.add_argument("--concurrency", type=int, default=4, help="questions at once (default 4)")
    parser.add_argument("--replans", type=int, default=0, help="max_replans for ours (default 0)")
    args = parser.parse_args(argv)
    if not (args.data / "eval").is_dir():
        raise SystemExit(f"no eval data under {args.data}: pass --data PATH (the folder holding eval/ and train/)")
    if args.limit > 200:
        raise SystemExit("--limit above 200: rows past 200 are kept for a final check, never for tuning")

    import contextlib

    import capable_model

    with contextlib.ExitStack() as stack:
        if args.model:
            from decompose.models import load_model  # every spec the command takes

            model, label = load_model(args.model), args.model
        else:
            url = args.base_url or stack.enter_context(capable_model.serve(parallel=args.concurrency))
            model, label = capable_model.load(url, timeout=1800), capable_model.ALIAS
        runners = {"direct": orchestrator_system("direct", 0), "cot": orchestrator_system("cot", 0),
                   "retrieval": orchestrator_system("retrieval", 0),
                   "ours": orchestrator_system("ours", args.replans), "auto": orchestrator_system("auto", args.replans),
                   "llamaindex": llamaindex_system, "seed": seed_system}
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        corpus_cache: dict = {}

        async def run_all() -> None:  # one event loop: the model's HTTP client lives on it
            for name in args.datasets:
                dataset = load_dataset(name, args.data, args.limit, corpus_cache)
                for system in args.systems:
                    if system == "retrieval" and not dataset.has_docs:
                        continue
                    suffix = f"-r{args.replans}" if system == "ours" and args.replans else ""
                    out = args.out / _slug(label) / f"{name}-{system}{suffix}.jsonl"
                    records = await run_cell(model, dataset, system, runners[system], out, args.concurrency)
                    cells[(name, system + suffix)] = summary(records)

        asyncio.run(run_all())
        print(f"\nmodel: {label}, greedy; first {args.limit} rows of each dataset\n")
        print(table(cells))
        return cells


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


if __name__ == "__main__":
    main()
