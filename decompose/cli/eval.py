"""`decompose eval FILE.jsonl`: answer many questions, score them, write a resumable per-question report.

Input rows are JSON objects with "question" and "answer". Also accepted: GSM8K rows (the gold is the text after
the last `####`), StrategyQA rows (a boolean answer becomes "yes"/"no"), a list of golds in "answer" or
"answers" (the best-scoring one counts). A row is identified by its "id" (or "qid") field, else its line number.

The report is JSON lines, one object per question, appended and flushed the moment the question finishes, so an
interrupted run loses nothing: run the same command again and the rows already answered are skipped; rows that
ended in an error are run again (`--keep-failed` keeps them). A server refusing the model (HTTP 401, 403, 404)
stops the run at once, writing nothing for the rows it could not answer. `--ray [ADDRESS]` answers the rows on
Ray workers (`eval_ray.py`) into the same report, saved here as each row comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from decompose.cli.config import Trace, build_orchestrator
from decompose.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from decompose.errors import ConfigError, DecomposeError, InputError, ModelAccessError
from decompose.plan import escape_references
from decompose.scoring import answer_match, exact_match, token_f1


@dataclass
class Row:
    key: str
    line: int
    question: str
    gold: list[str] | None


# ----- reading ------------------------------------------------------------------------------------------------


def read_rows(path: str, limit: int | None = None) -> tuple[list[Row], list[str]]:
    """The usable rows (the first `limit`), and one message per unusable line (with its line number)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", hint="check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {path}: it is not UTF-8 text", hint="give a JSON-lines file") from None
    rows: list[Row] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, text in enumerate(lines, 1):
        if limit is not None and len(rows) + len(problems) >= limit:
            break
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f'{path}:{number}: expected an object like {{"question": ..., "answer": ...}}')
            continue
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            problems.append(f'{path}:{number}: no "question" text')
            continue
        key = str(data.get("id") or data.get("qid") or f"line {number}")
        if key in seen:
            key = f"{key} (line {number})"
        seen.add(key)
        rows.append(Row(key=key, line=number, question=question.strip(), gold=gold_answers(data)))
    return rows, problems


def gold_answers(data: dict[str, Any]) -> list[str] | None:
    value = data.get("answer", data.get("answers"))
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    golds = []
    for v in values:
        if isinstance(v, bool):
            golds.append("yes" if v else "no")
        elif isinstance(v, str) and "####" in v:  # GSM8K: worked solution, then "#### 18"
            golds.append(v.rsplit("####", 1)[1].strip())
        elif v is not None:
            golds.append(str(v))
    return golds or None


def read_report(path: Path, mode: str) -> dict[str, dict[str, Any]]:
    """Records already in the report, by row key. A torn last line (killed mid-write) is ignored."""
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the report {path}: {exc}", hint="use another --out") from None
    for text in lines:
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or "id" not in record:
            continue
        if record.get("mode", mode) != mode:
            raise ConfigError(
                f"the report {path} holds rows of a {record.get('mode')} run, not {mode}",
                hint="give this run its own --out file",
            )
        records[str(record["id"])] = record
    return records


def open_report(path: Path) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # a run killed mid-write left half a line: drop it
                with open(path, "r+b") as torn:
                    torn.truncate(data.rfind(b"\n") + 1)
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the report {path}: {exc.strerror or exc}", hint="use another --out") from None


# ----- scoring --------------------------------------------------------------------------------------------------


def score(prediction: str | None, gold: list[str] | None) -> tuple[float | None, float | None, float | None]:
    """(exact match, token F1, answer match) against the best gold answer."""
    if gold is None:
        return None, None, None
    if prediction is None:
        return 0.0, 0.0, 0.0
    return (
        max(exact_match(prediction, g) for g in gold),
        max(token_f1(prediction, g) for g in gold),
        max(answer_match(prediction, g) for g in gold),
    )


def record_for(
    row: Row, mode: str, result: Any = None, error: BaseException | None = None, elapsed: float = 0.0
) -> dict[str, Any]:
    answer = result.answer if result is not None else None
    em, f1, match = score(answer, row.gold)
    steps = result.plan.steps if result is not None and result.plan is not None else []
    usage = result.usage.to_dict() if result is not None else {}
    message = str(error) if error is not None else (result.error if result is not None else None)
    return {
        "id": row.key,
        "line": row.line,
        "mode": mode,
        "question": row.question,
        "gold": row.gold[0] if row.gold and len(row.gold) == 1 else row.gold,
        "prediction": answer,
        "em": em,
        "f1": None if f1 is None else round(f1, 4),
        "match": match,
        "valid_plan": result is not None and result.plan is not None,
        "answered": answer is not None,
        "ok": error is None and result is not None and result.ok,
        "error": " ".join(message.split()) if message else None,
        "steps": len(steps),
        "failed_steps": sum(s.status in ("failed", "skipped") for s in steps),
        "elapsed": round(result.elapsed if result is not None else elapsed, 4),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "model_calls": usage.get("model_calls", 0),
        "cache_hits": usage.get("cache_hits", 0),
        "retries": usage.get("transport_retries", 0) + usage.get("parse_retries", 0),
    }


def summarize(records: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    scored = [r for r in records if r.get("em") is not None]
    mean = (lambda key: round(sum(r[key] for r in scored) / len(scored), 4)) if scored else (lambda key: None)
    return {
        **extra,
        "rows": len(records),
        "answered": sum(bool(r.get("answered")) for r in records),
        "valid_plans": sum(bool(r.get("valid_plan")) for r in records),
        "failed": sum(not r.get("ok") for r in records),
        "scored": len(scored),
        "exact_match": mean("em"),
        "f1": mean("f1"),
        "answer_match": mean("match") if all("match" in r for r in scored) else None,
        "input_tokens": sum(r.get("input_tokens", 0) for r in records),
        "output_tokens": sum(r.get("output_tokens", 0) for r in records),
        "model_calls": sum(r.get("model_calls", 0) for r in records),
        "cache_hits": sum(r.get("cache_hits", 0) for r in records),
    }


# ----- the command ------------------------------------------------------------------------------------------------


def eval_command(args: argparse.Namespace) -> int:
    mode = "direct" if args.direct else "decomposed"
    on_ray = getattr(args, "ray", None) is not None
    if on_ray and not args.file and Path(args.ray).is_file():  # `--ray FILE`: the optional ADDRESS took FILE
        args.file, args.ray = args.ray, ""
    if getattr(args, "workers", None) and not on_ray:
        raise ConfigError("--workers is a number of Ray workers", hint="add --ray, or drop --workers")
    if not args.file:
        raise InputError("no questions file given", hint="decompose eval questions.jsonl")
    rows, problems = read_rows(args.file, args.limit)
    out_path = (
        Path(args.out)
        if args.out
        else Path(Path(args.file).stem + (".direct" if args.direct else "") + ".report.jsonl")
    )
    done = read_report(out_path, mode)
    todo = [r for r in rows if r.key not in done or (done[r.key].get("error") and not args.keep_failed)]
    for problem in problems:
        _warn(f"skipped {problem}")
    if not rows and not problems:
        raise ConfigError(f"{args.file} has no questions", hint='write one JSON object per line: {"question": ...}')
    trace = Trace(args.trace) if args.trace else None
    orch = build_orchestrator(args) if todo and not on_ray else None  # on Ray, each worker builds its own
    report = open_report(out_path)
    started = time.monotonic()
    interrupted = False
    refused: ModelAccessError | None = None
    progress = _Progress(len(rows), len(rows) - len(todo), mode)
    try:
        with asyncio.Runner() as runner, progress:
            try:
                if on_ray:
                    from decompose.cli.eval_ray import run_on_ray

                    run_on_ray(args, todo, mode, report, progress, trace, _save, _answer, record_for)
                else:
                    runner.run(_run_all(orch, todo, mode, args.concurrency, report, progress, trace))
            except KeyboardInterrupt:
                interrupted = True
            except ModelAccessError as exc:
                refused = exc
    finally:
        report.close()
        if trace is not None:
            trace.close()
    records = read_report(out_path, mode)
    mine = [records[r.key] for r in rows if r.key in records]
    summary = summarize(
        mine,
        file=args.file,
        report=str(out_path),
        mode=mode,
        resumed=len(rows) - len(todo),
        ran=progress.completed,
        malformed=len(problems),
        elapsed=round(time.monotonic() - started, 2),
    )
    _print_summary(summary, as_json=args.json)
    if refused is not None:  # the rows it stopped are not in the report: a fixed rerun picks them up
        raise ModelAccessError(
            f"eval stopped: {refused.args[0]}; {len(rows) - len(mine)} rows were not run",
            hint=f"{refused.hint}, then run the same command again",
        ) from None
    if interrupted:
        _warn(
            f"interrupted: {len(mine)} of {len(rows)} rows are saved in {out_path}; "
            "run the same command again to finish the rest"
        )
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["failed"] or problems else EXIT_OK


async def _run_all(
    orch: Any, rows: list[Row], mode: str, concurrency: int, report: TextIO, progress: _Progress, trace: Trace | None
) -> None:
    queue: asyncio.Queue[Row] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)

    async def worker() -> None:
        while not queue.empty():
            row = queue.get_nowait()
            _save(await _answer(orch, row, mode, trace), report, progress)

    try:
        async with asyncio.TaskGroup() as workers:  # one worker's ModelAccessError cancels the others
            for _ in range(min(concurrency, len(rows)) or 1):
                workers.create_task(worker())
    except BaseExceptionGroup as group:  # the first failure, as itself
        raise group.exceptions[0] from None


def _save(record: dict[str, Any], report: TextIO, progress: _Progress) -> None:
    report.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    report.flush()
    progress.advance(record)


async def _answer(orch: Any, row: Row, mode: str, trace: Trace | None) -> dict[str, Any]:
    on_event = (lambda event: trace.write(event, row=row.key)) if trace is not None else None
    started = time.monotonic()
    try:
        if mode == "direct":
            plan = {"question": row.question, "steps": [{"id": 1, "question": escape_references(row.question)}]}
            result = await orch.aexecute(plan, question=row.question, on_event=on_event)
        else:
            result = await orch.arun(row.question, on_event=on_event)
    except ModelAccessError:
        raise  # every row would fail the same way: stop the eval
    except DecomposeError as exc:
        return record_for(row, mode, error=exc, elapsed=time.monotonic() - started)
    except Exception as exc:  # one broken question must not sink the rest
        return record_for(
            row, mode, error=RuntimeError(f"{type(exc).__name__}: {exc}"), elapsed=time.monotonic() - started
        )
    return record_for(row, mode, result)


class _Progress:
    """A rich progress bar (done / failed / ETA) on a terminal; one plain line per question otherwise."""

    def __init__(self, total: int, resumed: int, mode: str):
        from rich.console import Console

        self.total, self.resumed, self.completed, self.failed = total, resumed, 0, 0
        self.console = Console(stderr=True)
        self.bar: Any = None
        if self.console.is_terminal and not self.console.is_dumb_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn(f"eval ({mode})"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[red]{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.bar.add_task("eval", total=total, completed=resumed, failed=0)
        elif resumed:
            _warn(f"resuming: {resumed} of {total} rows are already in the report")

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, record: dict[str, Any]) -> None:
        self.completed += 1
        self.failed += not record["ok"]
        if self.bar is not None:
            self.bar.update(self.task, advance=1, failed=self.failed)
            return
        n = self.resumed + self.completed
        if record["ok"]:
            detail = "ok" if record["em"] is None else f"ok em={record['em']:g} f1={record['f1']:.2f}"
        else:
            detail = f"failed: {record['error']}"
        _warn(f"[{n}/{self.total}] {record['id']}: {detail}")


def _print_summary(summary: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    def pct(n: int) -> str:
        return f"{n} ({n / summary['rows']:.0%})" if summary["rows"] else "0"

    def score(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    table = Table(title=f"eval: {summary['file']} ({summary['mode']})", title_justify="left", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in [
        ("questions", str(summary["rows"])),
        ("run now / from the report", f"{summary['ran']} / {summary['resumed']}"),
        ("answered", pct(summary["answered"])),
        ("valid plans", pct(summary["valid_plans"])),
        ("failed", str(summary["failed"])),
        ("malformed lines", str(summary["malformed"])),
        ("exact match", score(summary["exact_match"])),
        ("token F1", score(summary["f1"])),
        ("answer match (number / yes-no)", score(summary["answer_match"])),
        ("tokens in / out", f"{summary['input_tokens']} / {summary['output_tokens']}"),
        ("model calls", str(summary["model_calls"])),
        ("calls answered from the cache", str(summary["cache_hits"])),
        ("wall time", f"{summary['elapsed']:.2f}s"),
        ("report", summary["report"]),
    ]:
        table.add_row(name, value)
    Console(highlight=False).print(table)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
