"""Running a model-written program: asteval's restricted interpreter, in a child process of its own.

A program may use arithmetic, loops, functions, comprehensions and the modules math, decimal, fractions and
datetime; it may not import anything else, touch files, the network or other processes, or reach objects'
internals. Its result is the value it leaves in the variable `answer`; failing that, what its `solution()`
returns (PAL's convention), or else the last line it printed (Program-of-Thoughts'); what it prints is kept as
its output.

Each program runs in a fresh `python -I program_worker.py` (~40 ms to start): with no environment (so no API key
reaches it), a memory limit (RLIMIT_AS), a CPU-time limit (RLIMIT_CPU), no files to write or open, and a
wall-clock timeout after which it is killed. An infinite loop or a list of 10^9 items ends in a `ProgramError`,
never in a hung or starved host. Every refusal is a `ProgramError`: one line that names the problem, with a hint.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decompose.errors import ProgramError

WORKER = Path(__file__).with_name("program_worker.py")
MAX_PROGRAM_CHARS = 20_000

# What to do about each kind of failure the worker reports.
HINTS = {
    "syntax": "write valid Python 3",
    "refused": "use only arithmetic, loops, functions and the modules math, decimal, fractions and datetime",
    "no_answer": "end the program with `answer = <the result>`",
    "error": "fix the line named, or compute the result another way",
}


@dataclass(frozen=True)
class ProgramRun:
    answer: Any  # JSON data: Decimal, Fraction and dates come back as their text
    output: str  # what it printed (the first 10,000 characters)


async def run_program(code: str, *, timeout: float = 5.0, memory_mb: int = 256) -> ProgramRun:
    """Run `code` under the limits; its `answer` and output, or a `ProgramError` (which carries both the program
    and what it printed before it failed)."""
    if not code.strip():
        raise ProgramError("the program is empty", hint="write a program that sets `answer`", program=code)
    if len(code) > MAX_PROGRAM_CHARS:
        raise ProgramError(
            f"the program is {len(code)} characters long, over {MAX_PROGRAM_CHARS}",
            hint="write a shorter program",
            program=code,
        )
    request = json.dumps({"code": code, "memory_mb": memory_mb, "cpu_seconds": math.ceil(timeout)})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        str(WORKER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={},
        cwd=tempfile.gettempdir(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(request.encode()), timeout)
    except TimeoutError:
        raise _timed_out(timeout, code) from None
    finally:  # a timeout, or the step cancelled: the process never outlives its program
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        reply = json.loads(stdout)
    except ValueError:
        raise _died(process.returncode, stderr.decode(errors="replace"), timeout, memory_mb, code) from None
    output = reply.get("output", "")
    if reply["ok"]:
        return ProgramRun(reply["answer"], output)
    if reply["kind"] == "memory":
        raise ProgramError(
            f"the program ran out of memory ({reply['error']}, the limit is {memory_mb} MB)",
            hint="build smaller lists, or compute the values one at a time",
            program=code,
            output=output,
        )
    lead = "the program was refused" if reply["kind"] == "refused" else "the program failed"
    raise ProgramError(f"{lead}: {reply['error']}", hint=HINTS[reply["kind"]], program=code, output=output)


def _timed_out(timeout: float, code: str) -> ProgramError:
    return ProgramError(
        f"the program ran past its time limit of {timeout:g}s",
        hint="avoid endless loops; compute the result directly",
        program=code,
    )


def _died(returncode: int | None, stderr: str, timeout: float, memory_mb: int, code: str) -> ProgramError:
    """The worker ended without a reply: killed at its CPU-time limit, or out of memory before it could say so."""
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return _timed_out(timeout, code)
    last = stderr.strip().splitlines()[-1:] or ["no message"]
    return ProgramError(
        f"the program's process ended without a result (exit code {returncode}: {last[0]})",
        hint=f"it may have run past its memory limit of {memory_mb} MB; simplify the program",
        program=code,
    )
