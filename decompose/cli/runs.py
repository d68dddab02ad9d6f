"""`decompose runs`: the runs a checkpoint store holds, newest first; the calls that await approval; cancelling a
waiting run."""

from __future__ import annotations

import argparse
import json
import shlex

from rich.table import Table

from decompose.approvals import ApprovalRequest
from decompose.cli.decide import approval_line, when
from decompose.cli.exit_codes import EXIT_OK
from decompose.cli.output import Output
from decompose.errors import ConfigError


def runs_command(args: argparse.Namespace) -> int:
    from decompose.checkpoints import AWAITING, CheckpointStore

    if args.reason is not None and not args.cancel:
        raise ConfigError("--reason goes with --cancel RUN_ID", hint="decompose runs --cancel RUN_ID --reason TEXT")
    store = CheckpointStore(args.checkpoints or None, create=False)  # never makes an empty store to list
    if args.cancel:
        store.cancel(args.cancel, args.reason or "cancelled by a person")
        print(f"run {args.cancel} cancelled: it will not be resumed", flush=True)
        return EXIT_OK
    rows = store.list_runs(status=args.status, limit=args.limit)
    waiting: dict[str, list[ApprovalRequest]] = {}
    if args.status == AWAITING:  # each run's waiting calls: what a person is asked to decide
        for request in store.approvals():
            waiting.setdefault(request.run_id, []).append(request)
    if args.json:
        for row in rows:
            if args.status == AWAITING:
                row["approvals"] = [a.to_dict() for a in waiting.get(row["id"], [])]
        print(json.dumps(rows, indent=2, ensure_ascii=False), flush=True)
        return EXIT_OK
    out = Output()
    if not rows:
        out.say(f"no {args.status + ' ' if args.status else ''}runs in {store.where}")
        return EXIT_OK
    if args.status == AWAITING:
        for row in rows:
            print(f"{row['id']}  {_short(row['question'])}", flush=True)
            for request in waiting.get(row["id"], []):
                print(f"  {approval_line(request)}", flush=True)
        where = f" --checkpoints {shlex.quote(args.checkpoints)}" if args.checkpoints else ""
        print(
            f"decide with `decompose run --resume RUN_ID{where} --approve STEP` (or --edit STEP=JSON, --reject "
            f"STEP=REASON) and the run's --agent/--model; `decompose runs --cancel RUN_ID{where}` ends it",
            flush=True,
        )
        return EXIT_OK
    lines = [
        (r["id"], r["status"], f"{r['steps_ended']}/{r['steps']}", when(r["created_at"]), _short(r["question"]))
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


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
