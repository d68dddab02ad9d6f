"""Running the async core from synchronous code (`Orchestrator.run`, `Conversation.send`, ...).

Every sync call in the process runs on one long-lived event loop in a daemon thread, not on a fresh
`asyncio.run` loop per call: HTTP clients (langchain-openai caches its async httpx client) bind their
connections to the loop they first ran on, and a second `asyncio.run` would find that loop closed. The call
runs in a copy of the caller's context, as `asyncio.to_thread` would: its current OpenTelemetry span (the parent
of a traced run) and LangChain's context variables reach the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from decompose.errors import ConfigError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result; Ctrl-C cancels it cleanly."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running in this thread: the normal case for the sync API
        pass
    else:
        coro.close()
        raise ConfigError(
            "this method was called inside a running event loop",
            hint="await the async form instead (arun, aplan, aexecute, abatch, asend)",
        )
    future = asyncio.run_coroutine_threadsafe(_within(coro, contextvars.copy_context()), _background_loop())
    try:
        return future.result()
    except BaseException:  # KeyboardInterrupt included: stop the work instead of leaving it running
        future.cancel()
        raise


async def _within(coro: Coroutine[Any, Any, T], context: contextvars.Context) -> T:
    """`coro` as a task in `context` (cancelling this cancels it)."""
    return await asyncio.get_running_loop().create_task(coro, context=context)


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="decompose-loop", daemon=True).start()
        return _loop
