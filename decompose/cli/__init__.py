"""The `decompose` command: run / chat / agents / eval, with a live plan view and `--json` for scripts.

One module per command (`run`, `chat`, `agents`, `eval`); `app` holds the parser and `main`, `exit_codes` the
exit codes, `config` turns flags into an Orchestrator, `plan_view` and `output` draw. Start-up stays fast:
`main` and the parser need only the standard library; a command imports what it needs when it runs.
"""

from decompose.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
