"""The parser and `main`: options, help, dispatch to the command's module, one-line errors and exit codes.

Start-up stays fast: this module imports only the standard library; rich, langchain-core and the model backends
are imported by the command that needs them.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from typing import Any

from decompose.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

DESCRIPTION = "Answer hard questions in steps: decompose into a plan, solve the steps in parallel, combine."

SPECS = """\
model specs (--model, else $DECOMPOSE_MODEL, else the embedded local model):
  openai:MODEL            an OpenAI-compatible server ($OPENAI_API_KEY, $OPENAI_BASE_URL)
  hf:PATH                 a local Transformers model or GGUF file
  smollm2                 the embedded SmolLM2-135M-Instruct (the default)
  py:MODULE:ATTR          a BaseChatModel object, or a zero-argument factory returning one
  py:FILE.py:ATTR         the same, from a Python file
  scripted:FILE.py[:ATTR] a scripted model for tests: FILE defines ATTR (default: `model`, else
                          `make_model()`, else `rules` [+ `default`] for a ScriptedChatModel)

tools (--tools MODULE:ATTR or FILE.py:ATTR ...): ATTR is a LangChain tool, a list of tools, or a
zero-argument factory returning either, e.g. decompose.tools.calculator:calculator. A FILE.py may
import the modules beside it.
"""

EPILOG = (
    SPECS
    + """
exit codes: 0 ok, 1 run failed or partial (a step failed, no answer), 2 usage or configuration
error, 3 awaiting approval (a tool call waits for a person: resume it with a decision), 130 interrupted
(Ctrl-C).  Output is plain text when not on a terminal; NO_COLOR is honoured.

examples:
  decompose run "Who directed Titanic, and how old was that person when it was released?"
  decompose run --review --agent customer-service "Refund my last order, ann@example.com"
  decompose run --json --model openai:gpt-4o-mini "..." | jq .answer
  decompose run --checkpoints --agent customer-service "Refund order A1001, ann@example.com"
  decompose run --resume RUN_ID --agent customer-service
  decompose run --resume RUN_ID --agent customer-service --approve 2
  decompose runs --status awaiting
  decompose chat --agent customer-service
  decompose serve --port 8000 --model openai:gpt-4o-mini
  decompose mcp --agent finance --http 9000
  decompose eval questions.jsonl --concurrency 4 --out report.jsonl
  decompose train train-data/train.jsonl --held-out train-data/heldout.jsonl --out my-adapter
"""
)


class _Version(argparse.Action):
    """`--version`, resolved only when asked (the package version needs importlib.metadata)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any):
        super().__init__(
            option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import decompose

        print(f"decompose {decompose.__version__}")
        parser.exit()


# The commands that take --model list the specs in their own --help too.
_with_specs: dict[str, Any] = {"epilog": SPECS, "formatter_class": argparse.RawDescriptionHelpFormatter}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decompose", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version)
    _add_global(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # Options accepted both before and after the command; SUPPRESS keeps a value given before it.
    glob = argparse.ArgumentParser(add_help=False)
    _add_global(glob, argparse.SUPPRESS)

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model",
        metavar="SPEC",
        type=_model_spec,
        help="chat model spec (see below); default $DECOMPOSE_MODEL, else the embedded local model",
    )
    model.add_argument(
        "--adapter",
        metavar="DIR",
        help="a LoRA decomposer adapter made by `decompose train`: "
        "the local model (smollm2 or hf:PATH) plans with it; smollm2 has one built in, "
        "`--adapter none` plans without it",
    )
    model.add_argument(
        "--decoding",
        metavar="NAME=VALUE,...",
        action="append",
        help="how the local model decodes, e.g. num_beams=4,length_penalty=0.8 or temperature=0.7,"
        "top_p=0.9,seed=1: do_sample, temperature, top_k, top_p, repetition_penalty, seed, num_beams, "
        "length_penalty, early_stopping (smollm2 or hf:PATH)",
    )
    model.add_argument("--agent", metavar="NAME", help="a ready-made agent (see `decompose agents`)")
    model.add_argument(
        "--tools",
        metavar="MODULE:ATTR",
        nargs="+",
        action="extend",
        help="tools the plan may call (without --agent): MODULE:ATTR or FILE.py:ATTR",
    )
    model.add_argument(
        "--mcp",
        metavar="COMMAND",
        nargs="+",
        action="append",
        help="the tools of an MCP server run as COMMAND over stdio (repeatable; one quoted string "
        'is split like a shell would: --mcp "npx -y server --flag")',
    )
    model.add_argument(
        "--mcp-url",
        metavar="URL",
        action="append",
        help="the tools of an MCP server over streamable HTTP, e.g. http://127.0.0.1:9000/mcp (repeatable)",
    )
    model.add_argument(
        "--mcp-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="how long an MCP server may take to start and to answer a tool call (default 30)",
    )
    model.add_argument(
        "--strategy",
        help="how steps are answered: direct, cot, self_consistency, recursive, "
        "program (the model writes a Python program); or auto: per question, one of direct, cot, "
        "program, single-shot retrieval or decomposing (steps then answered directly)",
    )
    model.add_argument("--max-concurrency", type=_positive_int, metavar="N", help="steps running at once")
    model.add_argument("--max-steps", type=_positive_int, metavar="N", help="largest plan allowed")
    model.add_argument(
        "--timeout", type=_positive_seconds, metavar="SECONDS", help="time limit for a whole run, planning included"
    )
    model.add_argument(
        "--max-cost",
        type=_positive_usd,
        metavar="USD",
        help="stop a run before its model calls cost more than this many US dollars (the answer so far is kept)",
    )
    model.add_argument(
        "--on-plan-failure",
        choices=("raise", "direct"),
        help="when the model writes no usable plan: fail (raise, the default) or answer directly",
    )
    model.add_argument(
        "--docs",
        metavar="PATH",
        help="answer steps from these documents: a folder of .txt/.md "
        'files or a JSONL of {"id", "text"} (local BM25 retrieval)',
    )
    model.add_argument(
        "--max-replans",
        type=_non_negative_int,
        metavar="N",
        help="plan again up to N times when the answers are not enough (default 0)",
    )
    model.add_argument(
        "--otel",
        action="store_true",
        help="send OpenTelemetry traces of each run over OTLP/HTTP to $OTEL_EXPORTER_OTLP_ENDPOINT "
        "(default http://localhost:4318); the other OTEL_* variables apply",
    )
    model.add_argument(
        "--cache",
        metavar="PATH",
        help="keep model replies in this SQLite file: a call repeated at temperature 0 (same model, settings "
        "and messages) is answered from it, not the model",
    )
    model.add_argument(
        "--prices",
        metavar="FILE.json",
        help='model prices in USD per 1M tokens, {"MODEL": [input, output], ...}, over the shipped table; '
        "a remote model in neither is unpriced",
    )
    model.add_argument(
        "--retries",
        type=_non_negative_int,
        metavar="N",
        help="retries of a failed model call (default 3; 0 fails at once)",
    )

    run = commands.add_parser(
        "run",
        parents=[glob, model],
        **_with_specs,
        help="answer one question",
        description="Answer one question; a live tree shows the plan as it runs.",
    )
    run.add_argument("question", nargs="?", help="the question ('-' or none: read it from stdin)")
    run.add_argument("--json", action="store_true", help="print the whole Result as JSON (for scripts)")
    run.add_argument(
        "--review",
        action="store_true",
        help="show the plan and let you approve, edit ($EDITOR) or cancel it before it runs",
    )
    run.add_argument("--plan", metavar="FILE", help="run a saved plan (JSON) instead of decomposing")
    run.add_argument(
        "--checkpoints",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the run as it goes to this checkpoint store (a SQLite file or a SQLAlchemy URL; no value: "
        "checkpoints.sqlite3 in the cache folder), so `--resume RUN_ID` can finish it after a crash",
    )
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="go on with a run that stopped (its ended steps are not asked again, no side effect is repeated); "
        "give the same --agent/--model/--tools, and --checkpoints if it was not the default",
    )
    decide = run.add_argument_group("deciding a call that awaits approval (with --resume)")
    decide.add_argument(
        "--approve", metavar="STEP", type=_step_number, action="append", help="make step STEP's call as planned"
    )
    decide.add_argument(
        "--edit",
        metavar="STEP=JSON",
        type=_edit_decision,
        action="append",
        help='make step STEP\'s call with these arguments, a JSON object, e.g. --edit 2=\'{"amount": "50"}\'',
    )
    decide.add_argument(
        "--reject",
        metavar="STEP=REASON",
        type=_reject_decision,
        action="append",
        help="do not make step STEP's call; the answer says why",
    )
    _add_no_approvals(run)

    chat = commands.add_parser(
        "chat",
        parents=[glob, model],
        **_with_specs,
        help="multi-turn conversation",
        description="A conversation; each turn shows its plan live. Commands: /plan "
        "(last plan), /reset (forget the conversation), /exit. Ctrl-C cancels a turn.",
    )
    chat.add_argument(
        "--max-history-tokens",
        type=_positive_int,
        metavar="N",
        help="earlier turns kept as context, in tokens (default: the Conversation's)",
    )
    chat.add_argument(
        "--intents",
        metavar="ROUTER",
        help="route each turn by its intent: a folder made by "
        "`decompose train --intents`, or zero-shot (the model picks one of the agent's routes) or "
        "zero-shot:NAME,NAME,...",
    )
    _add_no_approvals(chat)

    runs = commands.add_parser(
        "runs",
        parents=[glob],
        help="list the runs in a checkpoint store",
        description="The runs a checkpoint store holds, newest first: running (or its process died), stopped "
        "(it raised or was interrupted: resume it), awaiting (a tool call waits for a person's approval), "
        "finished, cancelled or expired (deleted after the store's ttl).",
    )
    _add_checkpoints(runs)
    runs.add_argument(
        "--status",
        choices=("running", "stopped", "awaiting", "finished", "cancelled", "expired"),
        help="only the runs in this state (awaiting: each waiting call, with its arguments and expiry)",
    )
    runs.add_argument("--cancel", metavar="RUN_ID", help="end this waiting run without an answer; it is not resumed")
    runs.add_argument("--reason", metavar="TEXT", help="with --cancel: why (kept with the run)")
    runs.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="at most N runs (default 50)")
    runs.add_argument("--json", action="store_true", help="print the list as JSON")

    agents = commands.add_parser("agents", parents=[glob], help="list the ready-made agents and their tools")
    agents.add_argument("--json", action="store_true", help="print the list as JSON")

    ev = commands.add_parser(
        "eval",
        parents=[glob, model],
        **_with_specs,
        help="answer and score many questions",
        description='Answer every row of a JSONL file ({"question": ..., "answer": ...};'
        " GSM8K and StrategyQA rows also work), score exact match and token F1, and write "
        "a per-question report (JSON lines). Rows already answered in the report are skipped, "
        "so an interrupted run resumes where it stopped; rows that ended in an error run "
        "again.",
    )
    ev.add_argument("file", metavar="FILE.jsonl", nargs="?")
    ev.add_argument(
        "--out", metavar="REPORT", help="report file (JSON lines; default FILE.report.jsonl in the current directory)"
    )
    ev.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="N", help="questions answered at once (default 4)"
    )
    ev.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N rows of the file")
    ev.add_argument(
        "--direct",
        action="store_true",
        help="answer each question directly (a one-step plan), to compare with decomposing",
    )
    ev.add_argument(
        "--keep-failed",
        action="store_true",
        help="when resuming, keep rows that ended in an error instead of running them again",
    )
    ev.add_argument("--json", action="store_true", help="print the summary as JSON")
    ev.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="answer the rows on a Ray cluster "
        "(HOST:6379 or ray://HOST:10001; none: a local one); --concurrency bounds the model calls in "
        "flight across it (pip install 'decompose-agents[ray]')",
    )
    ev.add_argument("--workers", type=_positive_int, metavar="N", help="Ray workers (default: one per CPU)")

    sv = commands.add_parser(
        "serve",
        parents=[glob, model],
        **_with_specs,
        help="serve the agents over HTTP",
        description="Serve every agent over HTTP: streamed runs with plan review, stored "
        "conversations, and an OpenAI-compatible /v1/chat/completions (see the README).",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    sv.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL of the conversation store, which replicas share "
        "(default: SQLite serve.sqlite3 in the cache folder)",
    )
    sv.add_argument(
        "--checkpoints",
        nargs="?",
        const="",
        metavar="PATH",
        help="write every run to this checkpoint store (a SQLite file or a SQLAlchemy URL; no value: "
        "checkpoints.sqlite3 in the cache folder), so the runs of a server that died can be resumed: "
        "GET /v1/runs/resumable, POST /v1/runs/RUN_ID/resume",
    )
    sv.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="accept only these API keys (one a line), sent as 'Authorization: Bearer KEY'",
    )
    sv.add_argument(
        "--rate-limit",
        metavar="N/min",
        help="requests a minute per API key (per address without keys); over it: 429 with Retry-After",
    )
    sv.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="let web pages from ORIGIN call the API (repeatable; none by default)",
    )
    sv.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=1_000_000,
        metavar="N",
        help="largest request body (default 1000000; over it: 413)",
    )
    sv.add_argument(
        "--max-history-tokens",
        type=_positive_int,
        default=1500,
        metavar="N",
        help="earlier turns given to a conversation's next turn, in tokens (default 1500)",
    )
    sv.add_argument(
        "--shutdown-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, how long runs in flight may finish before they end as interrupted (default 30)",
    )
    sv.add_argument(
        "--lease",
        type=_positive_seconds,
        default=15.0,
        metavar="SECONDS",
        help="a running turn its server has not renewed for this long (a crashed replica) reads as "
        "interrupted (default 15)",
    )
    sv.add_argument(
        "--no-approvals",
        dest="approvals",
        action="store_false",
        help="make the ready agents' consequential calls without asking (by default a customer-service refund "
        "above 100 dollars waits for a person: GET /v1/approvals, POST /v1/runs/ID/decisions, the web page)",
    )
    sv.add_argument(
        "--approval-ttl",
        type=_positive_seconds,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="how long a call waits for a decision before its run expires (default 86400, a day)",
    )
    sv.add_argument(
        "--review-ttl",
        type=_positive_seconds,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="how long a plan awaits review (POST /v1/runs?review=true) before it expires (default 86400, a day)",
    )
    sv.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="info (the default) logs each request and each run; warning only failed runs and problems",
    )
    sv.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (the default) or as one JSON object a line, to stderr",
    )

    # Its own copy of the model options: resolving --agent (a list here) must not change the other commands'.
    mc = commands.add_parser(
        "mcp",
        parents=[glob, copy.deepcopy(model)],
        **_with_specs,
        conflict_handler="resolve",
        help="serve the agents as MCP tools (stdio, or streamable HTTP)",
        description="Serve the agents as Model Context Protocol tools, one per agent: a "
        "question in, the answer and its steps out, with progress notifications. Over stdio "
        "(for a client that starts this command), or streamable HTTP with --http.",
    )
    mc.add_argument(
        "--agent",
        metavar="NAME",
        action="append",
        help="serve this agent (repeatable; default: every agent; `decompose`: the model with --tools/--mcp)",
    )
    mc.add_argument(
        "--http",
        type=_port,
        metavar="PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (0 picks a free port)",
    )
    mc.add_argument("--host", default="127.0.0.1", help="with --http: address to listen on (default 127.0.0.1)")
    mc.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="with --http: accept only these API keys (one a line), sent as 'Authorization: Bearer KEY'",
    )
    mc.add_argument("--rate-limit", metavar="N/min", help="with --http: requests a minute per API key")

    tr = commands.add_parser(
        "train",
        parents=[glob],
        help="fine-tune a local decomposer (LoRA) on plans",
        description="Fine-tune the embedded model (or --model hf:PATH) with a LoRA adapter "
        'on a JSONL of {"question", "plan", "tools"} rows, then score held-out '
        "plans. With --build-data SOURCE, write such files instead, from the public "
        "decompositions in SOURCE and synthetic tool plans.",
    )
    tr.add_argument("file", metavar="FILE.jsonl", nargs="?", help="training rows")
    tr.add_argument("--model", metavar="SPEC", type=_model_spec, help="smollm2 (default) or hf:PATH")
    tr.add_argument(
        "--out",
        metavar="DIR",
        help="the adapter folder (default decomposer-adapter); with --build-data, the data folder (default train-data)",
    )
    tr.add_argument("--held-out", metavar="FILE", help="rows scored after training (default: a share of FILE)")
    tr.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.05,
        metavar="F",
        help="share of FILE set aside for scoring when --held-out is not given (default 0.05)",
    )
    tr.add_argument(
        "--score-limit", type=_positive_int, default=100, metavar="N", help="held-out rows scored at most (default 100)"
    )
    tr.add_argument("--epochs", type=float, default=1.0, metavar="N", help="passes over the data (default 1)")
    tr.add_argument("--max-steps", type=_positive_int, metavar="N", help="stop after N optimizer steps")
    tr.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="rows per step (default 8)")
    tr.add_argument("--learning-rate", type=float, default=5e-4, metavar="LR", help="default 5e-4")
    tr.add_argument(
        "--rank",
        type=_positive_int,
        default=8,
        metavar="R",
        help="LoRA rank (default 8: an adapter of about 10 MB for the embedded model)",
    )
    tr.add_argument(
        "--max-length",
        type=_positive_int,
        default=512,
        metavar="N",
        help="rows longer than N tokens are left out (default 512)",
    )
    tr.add_argument(
        "--save-steps", type=_positive_int, default=50, metavar="N", help="checkpoint every N steps (default 50)"
    )
    tr.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="default 0")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    tr.add_argument(
        "--build-data",
        metavar="SOURCE",
        help="write train.jsonl and heldout.jsonl from the training "
        "sets in SOURCE (gsm8k_train.jsonl, strategyqa_train.jsonl) and synthetic tool plans",
    )
    tr.add_argument(
        "--synthetic",
        type=_non_negative_int,
        default=60,
        metavar="N",
        help="with --build-data: rows per synthetic template (default 60)",
    )
    tr.add_argument("--gsm8k", type=_non_negative_int, metavar="N", help="with --build-data: at most N GSM8K rows")
    tr.add_argument(
        "--strategyqa", type=_non_negative_int, metavar="N", help="with --build-data: at most N StrategyQA rows"
    )
    tr.add_argument(
        "--intents",
        metavar="CSV",
        help="train an intent router instead: sentence vectors from the "
        "model and a linear classifier, on a text,category CSV (e.g. banking77_train.csv); saved in "
        "--out (default intent-router)",
    )
    tr.add_argument(
        "--per-intent",
        type=_positive_int,
        metavar="N",
        help="with --intents: at most N rows of each intent (default: all)",
    )
    tr.add_argument("--json", action="store_true", help="print the report as JSON")
    boot = tr.add_argument_group("--bootstrap: a teacher model's checked traces over your tools become the rows")
    boot.add_argument("--bootstrap", action="store_true", help="plan and run questions with --teacher, then train")
    boot.add_argument("--teacher", metavar="SPEC", help="the teacher: any model spec (openai:..., hf:PATH, ...)")
    boot.add_argument("--questions", metavar="FILE", help='JSONL of {"question", "answer"?, "calls"?} rows')
    boot.add_argument("--generate", type=_positive_int, metavar="N", help="the teacher writes N varied questions")
    boot.add_argument("--traces", metavar="FILE", help="traces, appended and reused (default OUT/traces.jsonl)")
    boot.add_argument("--teacher-concurrency", type=_positive_int, default=4, metavar="N", help="default 4")
    boot.add_argument(
        "--teacher-timeout", type=_positive_seconds, metavar="SECONDS", help="an openai: teacher's time per call"
    )
    boot.add_argument("--no-train", action="store_true", help="stop after the traces and their training rows")
    for flag in ("--agent", "--tools", "--mcp", "--mcp-url", "--mcp-timeout"):  # the tools, as `decompose run`
        boot._add_action(copy.copy(model._option_string_actions[flag]))
    return parser


def _add_checkpoints(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoints",
        nargs="?",
        const="",
        metavar="PATH",
        help="the checkpoint store: a SQLite file or a SQLAlchemy URL (default, or no value: "
        "checkpoints.sqlite3 in the cache folder)",
    )


def _add_no_approvals(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-approvals",
        action="store_true",
        help="make the agent's consequential calls without asking (by default, e.g. customer-service refunds "
        "above 100 dollars wait for a person: asked at a terminal, else the run stops awaiting approval)",
    )


def _add_global(parser: argparse.ArgumentParser, default: Any) -> None:
    extra = {} if default is None else {"default": default}
    parser.add_argument("--trace", metavar="FILE", help="write every event as JSON lines to FILE", **extra)
    parser.add_argument("--debug", action="store_true", help="show tracebacks", **extra)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _step_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a step number (1 or more), got {value}")
    return value


def _edit_decision(text: str) -> tuple[int, dict[str, Any]]:
    """`STEP=JSON`: the step and its new arguments, a JSON object."""
    import json

    step, sep, args = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"""expected STEP=JSON, e.g. 2='{{"amount": "50"}}', got {text!r}""")
    number = _step_number(step)
    try:
        edited = json.loads(args)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"step {step}'s arguments are not JSON ({exc}): {args!r}") from None
    if not isinstance(edited, dict):
        raise argparse.ArgumentTypeError(
            f"step {step}'s arguments must be a JSON object of the tool's arguments, got {args!r}"
        )
    return number, edited


def _reject_decision(text: str) -> tuple[int, str]:
    """`STEP=REASON` (or STEP alone: no reason given)."""
    step, _, reason = text.partition("=")
    return _step_number(step), reason.strip()


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def _positive_usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in US dollars, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be an amount in US dollars above 0, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def _model_spec(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "is empty: give a spec such as openai:gpt-4o-mini or smollm2 (or leave --model out for the default)"
        )
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _untangle_tools(args)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        _say_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`decompose ... | head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # one line for the user; the traceback only with --debug
        if args.debug:
            import traceback

            traceback.print_exc()
        return _report(exc, debug=args.debug)


def _untangle_tools(args: argparse.Namespace) -> None:
    """`--tools a:b c:d "question"`, `--mcp python server.py "question"`: the greedy list swallowed the question
    (or file); give it back. From --mcp, only a last word that reads as one (a question has spaces, a file ends in
    .jsonl); otherwise the question goes before --mcp."""
    tools = getattr(args, "tools", None)
    positional = "question" if args.command == "run" else "file"
    if tools and getattr(args, positional, "") is None:
        target, sep, attr = tools[-1].rpartition(":")
        if not (sep and target and attr.isidentifier()):
            setattr(args, positional, tools.pop())
    last = (getattr(args, "mcp", None) or [[]])[-1]
    if (
        len(last) > 1
        and getattr(args, positional, "") is None
        and (" " in last[-1].strip() if positional == "question" else last[-1].endswith(".jsonl"))
    ):
        setattr(args, positional, last.pop())


def _dispatch(args: argparse.Namespace) -> int:
    # Imported here: only the command that runs pays for rich, langchain-core and the backends.
    if args.command == "agents":
        from decompose.cli.agents import agents_command

        return agents_command(args)
    if args.command == "eval":
        from decompose.cli.eval import eval_command

        return eval_command(args)
    if args.command == "chat":
        from decompose.cli.chat import chat_command

        return chat_command(args)
    if args.command == "serve":
        from decompose.cli.serve import serve_command

        return serve_command(args)
    if args.command == "mcp":
        from decompose.cli.mcp import mcp_command

        return mcp_command(args)
    if args.command == "runs":
        from decompose.cli.runs import runs_command

        return runs_command(args)
    if args.command == "train":
        from decompose.cli.train import train_command

        return train_command(args)
    from decompose.cli.run import run_command

    return run_command(args)


def _report(exc: BaseException, *, debug: bool) -> int:
    from decompose.errors import ConfigError, DecomposeError, InputError

    if isinstance(exc, (ConfigError, InputError)):
        _say_error(str(exc))
        return EXIT_USAGE
    if isinstance(exc, DecomposeError):
        _say_error(str(exc))
        return EXIT_FAILED
    hint = "" if debug else " (hint: run again with --debug for the traceback)"
    _say_error(f"{type(exc).__name__}: {exc}{hint}")
    return EXIT_FAILED


def _say_error(message: str) -> None:
    message = " ".join(str(message).split())  # always one line
    print(f"decompose: error: {message}", file=sys.stderr, flush=True)
