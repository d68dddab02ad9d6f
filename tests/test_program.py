"""The restricted interpreter of program steps (`decompose.program`): real programs in real child processes."""

import os
from pathlib import Path

import pytest

from decompose.chains.code_block import program_code
from decompose.errors import DecomposeError, ProgramError
from decompose.program import run_program


async def refusal(code: str, **limits) -> ProgramError:
    with pytest.raises(ProgramError) as caught:
        await run_program(code, **limits)
    error = caught.value
    assert isinstance(error, DecomposeError) and error.hint  # a hint that names the fix
    assert "\n" not in str(error) and "Traceback" not in str(error)  # one line, never a traceback
    assert error.program == code
    return error


@pytest.mark.parametrize(
    "code, needle",
    [
        ("__import__('os').system('echo hacked')", "'__import__' is not allowed"),
        ("import os\nanswer = os.getcwd()", "`import os` is not allowed"),
        ("from subprocess import run", "`from subprocess import ...` is not allowed"),
        ("import math.os", "`import math.os` is not allowed"),
        ("from math import _log", "math has no public name '_log'"),
        ("answer = open('/etc/passwd').read()", "'open' is not available"),
        ("answer = ().__class__.__bases__", "the attribute '__bases__' is not allowed"),
        ("answer = (1).__class__.__subclasses__()", "the attribute '__subclasses__' is not allowed"),
        ("answer = print.__self__", "the attribute '__self__' is not allowed"),
        ("answer = f'{().__class__}'", "the attribute '__class__' is not allowed"),
        ("answer = __builtins__", "'__builtins__' is not allowed"),
        ("answer = getattr(1, 'real')", "'getattr' is not available"),
        ("answer = eval('1 + 1')", "'eval' is not available"),
        ("exec('answer = 1')", "'exec' is not available"),
        ("answer = globals()", "'globals' is not available"),
        ("answer = compile('1', 'f', 'eval')", "'compile' is not available"),
        ("class A:\n    pass", "ClassDef is not supported"),
    ],
)
async def test_a_program_that_reaches_past_its_sandbox_is_refused_before_it_runs(code, needle):
    error = await refusal(code)
    assert str(error).startswith("the program was refused: ") and needle in str(error)


async def test_an_allowed_module_shows_no_module_it_imported_itself():
    # fractions imports sys and re; a program sees only its public names.
    error = await refusal("import fractions\nanswer = fractions.sys.modules")
    assert "has no attribute 'sys'" in str(error)


async def test_str_format_cannot_reach_attributes():
    error = await refusal("answer = '{0.real.__class__}'.format(1)")
    assert "no safe attribute 'format'" in str(error)


async def test_an_endless_loop_is_stopped_at_the_time_limit_and_its_process_killed():
    error = await refusal("n = 0\nwhile True:\n    n += 1", timeout=0.5)
    assert "ran past its time limit of 0.5s" in str(error)
    assert not _workers_of(os.getpid())  # killed, not left running


@pytest.mark.parametrize("code", ["x = [0] * 10**9\nanswer = len(x)", "answer = len(bytearray(10**9))"])
async def test_a_huge_allocation_hits_the_memory_limit(code):
    error = await refusal(code)
    assert "ran out of memory" in str(error) and "the limit is 256 MB" in str(error)


@pytest.mark.parametrize(
    "code, needle",
    [
        ("answer = (1 +", "SyntaxError on line 1"),
        ("x = 1", "the program set no variable `answer` and printed nothing"),
        ("def solution():\n    return 1 / 0", "ZeroDivisionError on line 2: division by zero"),
        ("def f(x):\n    return x / 0\nanswer = f(2)", "ZeroDivisionError on line 2: division by zero"),
        ("answer = missing + 1", "NameError on line 1: name 'missing' is not defined"),
        ("answer = float('nan')", "not a finite number"),
        ("", "the program is empty"),
    ],
)
async def test_a_failing_program_names_its_error(code, needle):
    assert needle in str(await refusal(code))


@pytest.mark.parametrize(
    "code, answer",
    [
        ("import math\nanswer = math.comb(10, 3) + math.floor(math.sqrt(17))", 124),
        ("from math import *\nanswer = round(pi * 2 ** 2, 2)", 12.57),
        (
            "from decimal import Decimal, getcontext\ngetcontext().prec = 6\nanswer = Decimal('0.1') + Decimal('0.2')",
            "0.3",
        ),
        ("from fractions import Fraction\nanswer = Fraction(1, 3) + Fraction(1, 6)", "1/2"),
        ("import datetime\nanswer = (datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)).days", 29),
        ("from datetime import date, timedelta\nanswer = date(2024, 1, 31) + timedelta(days=30)", "2024-03-01"),
        (
            "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
            "answer = fib(30)",
            832040,
        ),
        ("total = 0\nfor i in range(100):\n    if i > 10:\n        break\n    total += i\nanswer = total", 55),
        ("answer = sum(x * x for x in range(4))", 14),  # a generator expression
        ("answer = {k: v for k, v in zip('ab', [1, 2])}", {"a": 1, "b": 2}),
        ("answer = sorted([3, 1, 2], key=lambda v: -v)", [3, 2, 1]),
        ("try:\n    x = 1 / 0\nexcept ZeroDivisionError:\n    x = -1\nanswer = x", -1),
    ],
)
async def test_a_good_program_answers(code, answer):
    assert (await run_program(code)).answer == answer


async def test_print_output_is_captured_beside_the_answer():
    run = await run_program("for i in range(3):\n    print('row', i)\nanswer = 'done'")
    assert run.answer == "done" and run.output == "row 0\nrow 1\nrow 2\n"


@pytest.mark.parametrize(
    "code, answer",
    [
        ("def solution():\n    eggs = 16 - 3 - 4\n    return eggs * 2", 18),  # PAL: a solution() that returns it
        ("eggs = 16 - 3 - 4\nprint('eggs left:')\nprint(eggs * 2)", "18"),  # PoT: the last line printed
        ("def solution():\n    return 1\nanswer = 2", 2),  # `answer` comes first
        ("answer = 3\nprint(4)", 3),
    ],
)
async def test_a_program_without_answer_follows_the_pal_and_pot_conventions(code, answer):
    assert (await run_program(code)).answer == answer


async def test_a_printed_line_is_not_the_answer_when_the_output_was_cut():
    error = await refusal("for i in range(5000):\n    print(i)")
    assert "its output was cut before its last line" in str(error) and error.output.endswith("[output cut]")


async def test_output_is_kept_when_the_program_then_fails():
    error = await refusal("print('so far')\nanswer = 1 / 0")
    assert error.output == "so far\n"


@pytest.mark.parametrize(
    "reply, code",
    [
        ("Here it is:\n```python\nanswer = 6 * 7\n```\nDone.", "answer = 6 * 7"),
        ("```\nx = 2\nanswer = x\n```", "x = 2\nanswer = x"),
        ("```text\nnotes\n```\n```py\nanswer = 1\n```", "answer = 1"),  # the Python block, not the first one
        ("answer = 3", "answer = 3"),  # bare code
        ("```python\nanswer = 4\n", "answer = 4"),  # a fence cut off at the token limit
    ],
)
def test_the_program_is_read_out_of_the_reply(reply, code):
    assert program_code(reply) == code


def _workers_of(pid: int) -> list[str]:
    """The program workers that are children of `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and "program_worker" in cmdline:
            found.append(entry.name)
    return found
