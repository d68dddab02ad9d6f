"""`decompose mcp`: the agents as MCP tools (decompose/mcp_server.py), over stdio or, with --http, streamable HTTP
under uvicorn behind the same API keys and rate limits as `decompose serve`."""

from __future__ import annotations

import argparse
import sys

from decompose.errors import ConfigError


def mcp_command(args: argparse.Namespace) -> int:
    if args.trace:
        raise ConfigError(
            "mcp writes no trace file: each tool call reports its progress to its client", hint="drop --trace"
        )
    if args.http is None and (args.api_key_file or args.rate_limit):
        raise ConfigError(
            "API keys and rate limits apply to --http only: a stdio server's client is the process that started it",
            hint="add --http PORT, or drop --api-key-file/--rate-limit",
        )
    try:
        from decompose.mcp_server import create_mcp_server, ready_agents
    except ImportError as exc:
        raise ConfigError(f"mcp needs the mcp extra ({exc})", hint='pip install "decompose-agents[mcp]"') from None
    from decompose.cli.config import load_model_from_flags, orchestrator_options, plan_tools
    from decompose.cli.serve import listen

    guard = _guard(args) if args.http is not None else None
    sock = listen(args.host, args.http) if args.http is not None else None  # a busy port fails before the model
    agents = ready_agents(
        load_model_from_flags(args), args.agent, tools=plan_tools(args), options=orchestrator_options(args)
    )
    names = ", ".join(n.replace("-", "_") for n in agents)
    if sock is None:
        print(f"decompose mcp: serving on stdio (tools: {names})", file=sys.stderr, flush=True)
        create_mcp_server(agents).run("stdio")  # stdout is the protocol's: nothing else may print there
        return 0
    import uvicorn

    host, port = sock.getsockname()[:2]
    server = create_mcp_server(agents, host=args.host, port=port)
    print(f"decompose mcp: listening on http://{host}:{port}/mcp (tools: {names})", file=sys.stderr, flush=True)
    assert guard is not None  # made with sock, for --http
    app = guard(server.streamable_http_app())
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _guard(args: argparse.Namespace):
    """`decompose serve`'s API keys and rate limits, as middleware around the MCP endpoint."""
    try:
        from decompose.serve.security import ApiKeys, Guard, RateLimiter, parse_rate, read_keys
    except ImportError as exc:
        raise ConfigError(
            f"mcp --http needs the serve extra too ({exc})", hint='pip install "decompose-agents[mcp,serve]"'
        ) from None
    keys = ApiKeys(read_keys(args.api_key_file)) if args.api_key_file else None
    limiter = RateLimiter(parse_rate(args.rate_limit)) if args.rate_limit else None
    return lambda app: Guard(app, keys=keys, limiter=limiter)
