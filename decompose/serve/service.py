"""`Service`: what the routes share — the agents, the stores, the runs in flight, the limits — and its shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from decompose.checkpoints import CheckpointStore
from decompose.serve.catalog import Catalog
from decompose.serve.running import InFlight
from decompose.serve.store import Store

log = logging.getLogger("decompose.serve")


@dataclass
class Service:
    catalog: Catalog
    store: Store
    # The agents' runs (in the server's database unless given): a run waiting for approval is here, and so are
    # the runs a dead server left.
    checkpoints: CheckpointStore
    max_body_bytes: int
    max_history_tokens: int
    shutdown_timeout: float
    inflight: InFlight = field(default_factory=InFlight)
    _heartbeat: asyncio.Task[Any] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def start(self, run: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a run (renewing this server's leases from now on)."""
        self._loop = asyncio.get_running_loop()
        if self._heartbeat is None or self._heartbeat.done():  # started here, not at startup: a mounted app
            self._heartbeat = asyncio.create_task(self._renew_leases())  # gets no lifespan events of its own
        return self.inflight.start(run)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.store.lease / 3)
            try:
                await asyncio.to_thread(self.store.renew_leases)
            except Exception:  # a database hiccup: try again next time, before the lease runs out
                log.exception("could not renew the leases of running turns")

    def shutdown_soon(self) -> None:
        """The server is stopping (from a signal handler or another thread): runs still going after
        `shutdown_timeout` end as interrupted, so their streams close cleanly before the server stops waiting."""
        if self._loop is not None:
            loop = self._loop
            loop.call_soon_threadsafe(loop.call_later, self.shutdown_timeout, self.inflight.cancel_all)

    async def close(self) -> None:
        """Let the runs in flight finish for up to `shutdown_timeout`; the rest end as interrupted."""
        await self.inflight.drain(self.shutdown_timeout)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self.store.interrupt_own_turns()
        self.store.close()
        self.checkpoints.close()
