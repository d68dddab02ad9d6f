"""`decompose runs`: the runs a checkpoint store holds, newest first."""

from __future__ import annotations

import argparse
import json
import time

from rich.table import Table

from decompose.cli.exit_codes import EXIT_OK
from decompose.cli.output import Output


def runs_command(args: argparse.Namespace) -> int:
    from decompose.checkpoints import CheckpointStore

    store = CheckpointStore(args.checkpoints or None, create=False)  # never makes an empty store to list
    rows = store.list_runs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False), flush=True)
        return EXIT_OK
    out = Output()
    if not rows:
        out.say(f"no {args.status + ' ' if args.status else ''}runs in {store.where}")
        return EXIT_OK
    lines = [
        (r["id"], r["status"], f"{r['steps_ended']}/{r['steps']}", _when(r["created_at"]), _short(r["question"]))
        for r in rows
    ]
    if not out.live:
        for line in lines:
            print("  ".join(line), flush=True)
        return EXIT_OK
    table = Table(title=f"Runs in {store.where}", title_justify="left")
    columns = {"run id": "bold cyan", "status": "", "steps ended": "", "started": "dim", "question": ""}
    for name, style in columns.items():
        table.add_column(name, style=style, no_wrap=name != "question")
    for line in lines:
        table.add_row(*line)
    out.out.print(table)
    return EXIT_OK


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
