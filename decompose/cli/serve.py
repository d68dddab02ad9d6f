"""`decompose serve`: the agents over HTTP (the service is decompose/serve/), under uvicorn."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from decompose.errors import ConfigError


def serve_command(args: argparse.Namespace) -> int:
    if args.agent:
        raise ConfigError(
            "serve offers every agent: a request names the one it wants",
            hint='drop --agent; send {"agent": NAME} (or "model" for /v1/chat/completions)',
        )
    if args.trace:
        raise ConfigError(
            "serve writes no trace file: each run streams its events to its client",
            hint="drop --trace; read the events from the run's stream",
        )
    try:
        import uvicorn

        from decompose.serve import create_app
    except ImportError as exc:
        raise ConfigError(
            f"serve needs the serve extra ({exc})", hint='pip install "decompose-agents[serve]"'
        ) from None
    from decompose.cli.config import load_model_from_flags, orchestrator_options, plan_tools
    from decompose.serve import logs
    from decompose.serve.security import parse_rate, read_keys

    keys = read_keys(args.api_key_file) if args.api_key_file else None
    per_minute = parse_rate(args.rate_limit) if args.rate_limit else None
    sock = listen(args.host, args.port)  # before the model loads: a busy port fails at once
    logs.configure(args.log_level, args.log_format)  # once the flags are good: a refused command changes nothing
    app = create_app(
        load_model_from_flags(args),
        db=args.db,
        tools=plan_tools(args),
        orchestrator_options=orchestrator_options(args),
        api_keys=keys,
        rate_limit=per_minute,
        cors_origins=args.cors_origin,
        max_body_bytes=args.max_body_bytes,
        max_history_tokens=args.max_history_tokens,
        shutdown_timeout=args.shutdown_timeout,
        lease=args.lease,
        approvals=args.approvals,
        approval_ttl=args.approval_ttl,
        review_ttl=args.review_ttl,
    )
    service = app.state.service
    if service.checkpoints is not None:  # before "listening": whoever waits for that line finds this one too
        left = len(service.checkpoints.resumable())
        print(
            f"decompose serve: checkpoints in {service.checkpoints.where}; runs a stopped server left to resume: "
            f"{left} (GET /v1/runs/resumable, POST /v1/runs/RUN_ID/resume)",
            file=sys.stderr,
            flush=True,
        )
    host, port = sock.getsockname()[:2]
    print(
        f"decompose serve: listening on http://{host}:{port} (agents: {', '.join(service.catalog.names())}; "
        f"db: {service.store.engine.url!r})",
        file=sys.stderr,
        flush=True,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:  # the first signal: runs get --shutdown-timeout, then end as interrupted
                logs.SERVER.info(
                    "stopping (signal %d): no new connections; %d runs in flight get %gs to finish, then end as "
                    "interrupted",
                    sig,
                    service.inflight.count,
                    args.shutdown_timeout,
                )
                service.shutdown_soon()
            super().handle_exit(sig, frame)

    # uvicorn waits a little longer than the runs get, so an interrupted run's stream still ends cleanly.
    # Our access log (decompose.serve.access) has each request's duration, which uvicorn's lacks; its other
    # loggers write through the handler logs.configure set.
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=args.shutdown_timeout + 5,
    )
    Server(config).run(sockets=[sock])
    return 0


def listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one), or stop what uses it",
        ) from None
