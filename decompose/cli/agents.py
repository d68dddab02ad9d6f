"""`decompose agents`: the ready-made agents, their tools and an example command each."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from rich.table import Table

from decompose.cli.config import agents_module
from decompose.cli.exit_codes import EXIT_OK
from decompose.cli.output import Output


def agents_command(args: argparse.Namespace) -> int:
    agents = agents_module().list_agents()
    rows = [
        {"name": a.name, "description": a.description, "tools": list(a.tool_names()), "examples": list(a.examples)}
        for a in agents
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False), flush=True)
        return EXIT_OK
    out = Output()
    if not out.live:
        for row in rows:
            print(f"{row['name']}: {row['description']}")
            print(f"  tools: {', '.join(row['tools']) or 'none'}")
            if row["examples"]:
                print(f"  e.g. {_example(row)}")
        return EXIT_OK
    table = Table(title="Agents", title_justify="left")
    table.add_column("agent", style="bold cyan", no_wrap=True)
    table.add_column("what it does")
    table.add_column("tools", style="green")
    table.add_column("try")
    for row in rows:
        table.add_row(row["name"], row["description"], ", ".join(row["tools"]) or "none", _example(row))
    out.out.print(table)
    return EXIT_OK


def _example(row: dict[str, Any]) -> str:
    if not row["examples"]:
        return ""
    example = row["examples"][0]
    quoted = f'"{example}"' if not any(c in example for c in '"$`\\!') else shlex.quote(example)
    return f"decompose run --agent {row['name']} {quoted}"
