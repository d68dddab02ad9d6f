"""`decompose train`: fine-tune a local decomposer on a JSONL of plans, or (`--build-data`) write that JSONL."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from decompose.cli.exit_codes import EXIT_OK
from decompose.cli.output import Output


def train_command(args: argparse.Namespace) -> int:
    if getattr(args, "intents", None):
        return _train_intents(args)
    if getattr(args, "bootstrap", False):
        return _bootstrap(args)
    if args.build_data:
        return _build(args)
    if not args.file:
        from decompose.errors import ConfigError

        raise ConfigError(
            "decompose train needs a training file",
            hint="decompose train FILE.jsonl, or write one with --build-data SOURCE_DIR",
        )
    report = train_from_flags(args, args.file)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), flush=True)
    else:
        print_train_report(report)
    return EXIT_OK


def _bootstrap(args: argparse.Namespace) -> int:
    """The teacher's checked traces, then (unless --no-train) the student trained on them."""
    from decompose.cli.bootstrap import bootstrap_traces

    report, tools = bootstrap_traces(args)
    if not args.no_train:
        report.train = train_from_flags(args, report.train_rows, tools)
        if not args.json:
            print_train_report(report.train)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), flush=True)
    return EXIT_OK


def train_from_flags(args: argparse.Namespace, data: str, tools: list | None = None) -> Any:
    """`train` with the command's training flags; `tools`: tools beyond the packs' that rows name."""
    from decompose.train import train

    report = train(
        data,
        model=args.model or "smollm2",
        out=args.out or "decomposer-adapter",
        held_out=args.held_out,
        held_out_fraction=args.held_out_fraction,
        score_limit=args.score_limit,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lora_rank=args.rank,
        max_length=args.max_length,
        save_steps=args.save_steps,
        seed=args.seed,
        resume=args.resume,
        tools=tools or (),
        progress=not args.json,
    )
    return report


def print_train_report(report: Any) -> None:
    out = Output()
    out.out.print(
        f"adapter: {report.adapter} ({report.steps} steps on {report.examples} rows, {report.device}; "
        f"{report.tokens_per_s:g} tokens/s; loss {report.first_loss} → {report.last_loss})"
    )
    if report.resumed_at:
        out.out.print(f"resumed from step {report.resumed_at}")
    if report.too_long:
        out.out.print(f"left out {report.too_long} rows longer than --max-length")
    if report.scores:
        table = Table(title=f"held-out plans ({report.scores.rows} rows)", title_justify="left")
        for column in ("valid", "echo", "tool + args exact", "steps agree"):
            table.add_column(column, justify="right")
        s = report.scores
        table.add_row(_pct(s.valid), _pct(s.echo), f"{_pct(s.tool_exact)} of {s.tool_rows}", _pct(s.steps_agree))
        out.out.print(table)
        out.out.print(f"scores: {report.adapter}/held_out_scores.json; plans: {report.adapter}/held_out_plans.jsonl")
    out.out.print(f'use it: decompose run --adapter {report.adapter} "..."')


def _build(args: argparse.Namespace) -> int:
    from decompose.train.dataset import build_dataset

    built = build_dataset(
        args.build_data,
        args.out or "train-data",
        synthetic=args.synthetic,
        gsm8k=args.gsm8k,
        strategyqa=args.strategyqa,
        seed=args.seed,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "train": str(built.train),
                    "train_rows": built.train_rows,
                    "held_out": str(built.held_out),
                    "held_out_rows": built.held_out_rows,
                }
            ),
            flush=True,
        )
    else:
        print(f"wrote {built.train} ({built.train_rows} rows) and {built.held_out} ({built.held_out_rows} rows)")
        print(f"train on them: decompose train {built.train} --held-out {built.held_out}")
    return EXIT_OK


def _train_intents(args: argparse.Namespace) -> int:
    from decompose.train.intents import train_intents

    report = train_intents(
        args.intents,
        out=args.out or "intent-router",
        per_intent=args.per_intent,
        model=args.model or "smollm2",
        seed=args.seed,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), flush=True)
        return EXIT_OK
    print(
        f"intent router: {report.out} ({report.intents} intents, {report.rows} rows; vectors {report.encode_s:g} s, "
        f"classifier {report.fit_s:g} s; training accuracy {_pct(report.train_accuracy)})",
        flush=True,
    )
    print(f"use it: decompose chat --agent customer-service --intents {report.out}", flush=True)
    return EXIT_OK


def _pct(rate: float) -> str:
    return f"{rate:.0%}"
