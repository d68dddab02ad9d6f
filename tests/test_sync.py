"""decompose/sync.py: running the async core from synchronous code."""

import asyncio
import inspect
import os
import signal
import threading

import pytest

from decompose.errors import ConfigError
from decompose.sync import run_sync


async def add(a, b):
    await asyncio.sleep(0)
    return a + b


async def running_loop():
    return asyncio.get_running_loop(), threading.current_thread()


def test_returns_the_coroutines_value():
    assert run_sync(add(2, 3)) == 5
    assert run_sync(add("a", "b")) == "ab"


def test_every_call_runs_on_the_same_loop_in_a_background_thread():
    (first, thread), (second, _) = run_sync(running_loop()), run_sync(running_loop())
    assert first is second and first.is_running()  # HTTP clients bound to it keep working on the next call
    assert thread is not threading.current_thread() and thread.daemon


def test_works_from_a_worker_thread_of_a_running_loop():
    async def main():
        return await asyncio.to_thread(run_sync, add(1, 1))

    assert asyncio.run(main()) == 2


def test_exceptions_come_back_as_they_are():
    async def fails():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_sync(fails())


def test_inside_a_running_loop_it_refuses_with_a_hint_and_closes_the_coroutine():
    coro = add(1, 2)

    async def main():
        run_sync(coro)

    with pytest.raises(ConfigError, match="inside a running event loop") as err:
        asyncio.run(main())
    assert "await the async form instead" in err.value.hint and "arun" in err.value.hint
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # no "never awaited" warning


def test_ctrl_c_cancels_the_work_instead_of_leaving_it_running():
    assert threading.current_thread() is threading.main_thread()  # a signal reaches the main thread only
    started, cancelled, finished = threading.Event(), threading.Event(), threading.Event()

    async def long_job():
        started.set()
        try:
            await asyncio.sleep(30)
            finished.set()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def press_ctrl_c():
        if started.wait(10):
            threading.Event().wait(0.2)  # let the main thread reach its wait for the result
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    # Python's own Ctrl-C handler, even where this process was started with SIGINT ignored (a background job).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=press_ctrl_c, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_sync(long_job())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cancelled.wait(10) and not finished.is_set()
    assert run_sync(add(1, 1)) == 2  # the loop itself is still there for the next call
