"""The child process that runs one model-written program (started by `decompose.program`, never imported by it).

It reads `{"code", "memory_mb", "cpu_seconds"}` as JSON on stdin, limits its own memory, CPU time and files, runs
the code in asteval's interpreter and writes one JSON line: `{"ok": true, "answer", "output"}` or `{"ok": false,
"kind", "error", "output"}`. Run as a script (`python -I program_worker.py`) it imports only the standard library
and asteval, so it neither needs nor loads the `decompose` package.

Two layers refuse what a program may not do: a check of its syntax tree first (imports beyond four modules,
underscore names and attributes, the builtins that reach code, files or the interpreter), with a message that
names the fix, then asteval itself, which has no `exec`, `eval`, `getattr` or `import` of its own and refuses
unsafe attributes at run time. The process limits are the last layer: whatever slipped through still cannot
outrun its time, grow past its memory or write a file.
"""

import ast
import datetime
import decimal
import fractions
import json
import math
import sys
import types

if sys.platform != "win32":  # Windows has no rlimits; the parent's wall-clock timeout still stops the process
    import resource

# asteval adds numpy's functions when it can import numpy: file readers among them (loadtxt, fromfile), and
# 60 ms more start-up. None in sys.modules makes that import fail (documented by CPython; typeshed's type for
# sys.modules leaves None out, hence the ignore).
sys.modules["numpy"] = None  # type: ignore[assignment]
from asteval import Interpreter  # noqa: E402

MODULES = {"math": math, "decimal": decimal, "fractions": fractions, "datetime": datetime}
ALLOWED_IMPORTS = ", ".join(MODULES)
# Builtins that reach code, files, the interpreter or objects' internals. asteval has none of them but `open`
# (read-only); naming them here turns its NameError into a message that says why.
REFUSED_NAMES = {
    "open",
    "exec",
    "eval",
    "compile",
    "globals",
    "locals",
    "vars",
    "getattr",
    "setattr",
    "delattr",
    "input",
    "breakpoint",
    "help",
    "exit",
    "quit",
    "memoryview",
    "object",
    "type",
    "super",
}
MAX_OUTPUT_CHARS = 10_000
MAX_ERROR_CHARS = 300  # an error may quote a call's arguments: a long list


def public(module: types.ModuleType) -> types.SimpleNamespace:
    """What a program sees of an allowed module: its public names, without the modules it imported (fractions
    holds `sys` and `re`, datetime `sys`)."""
    return types.SimpleNamespace(
        **{
            name: value
            for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
    )


NAMESPACES = {name: public(module) for name, module in MODULES.items()}


class Refused(Exception):
    """The program uses something a program step does not allow."""


def check(tree: ast.AST, interp: Interpreter) -> None:
    """Refuse, before anything runs, what the interpreter must never see, and what it does not support."""
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in MODULES:
                    raise Refused(
                        f"line {line}: `import {alias.name}` is not allowed; only {ALLOWED_IMPORTS} can be imported"
                    )
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in MODULES:
                raise Refused(
                    f"line {line}: `from {'.' * node.level}{node.module or ''} import ...` is not "
                    f"allowed; only {ALLOWED_IMPORTS} can be imported"
                )
            for alias in node.names:
                if alias.name != "*" and not hasattr(NAMESPACES[node.module], alias.name):
                    raise Refused(f"line {line}: {node.module} has no public name {alias.name!r}")
        elif isinstance(node, ast.Name) and node.id.startswith("__"):
            raise Refused(f"line {line}: the name {node.id!r} is not allowed (no names with double underscores)")
        elif isinstance(node, ast.Name) and node.id in REFUSED_NAMES:
            raise Refused(f"line {line}: {node.id!r} is not available in a program")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise Refused(
                f"line {line}: the attribute {node.attr!r} is not allowed (no attributes that start with an underscore)"
            )
        elif isinstance(node, (ast.stmt, ast.expr)) and not supported(node, interp):
            raise Refused(
                f"line {line}: {type(node).__name__} is not supported in a program (use functions, "
                f"loops and comprehensions)"
            )


def supported(node: ast.AST, interp: Interpreter) -> bool:
    handler = interp.node_handlers.get(type(node).__name__.lower())
    return handler is not None and handler != interp.unimplemented


class EagerGenerators(ast.NodeTransformer):
    """`sum(x for x in xs)` as `sum([x for x in xs])`: asteval has no generator expressions, and models write
    them all the time."""

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.ListComp:
        self.generic_visit(node)
        return ast.copy_location(ast.ListComp(elt=node.elt, generators=node.generators), node)


class Output:
    """`print`'s target: the first MAX_OUTPUT_CHARS characters, so a printing loop cannot fill the memory."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        room = MAX_OUTPUT_CHARS - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts) + ("\n[output cut]" if self.size >= MAX_OUTPUT_CHARS else "")


def interpreter(output: Output) -> Interpreter:
    interp = Interpreter(writer=output, err_writer=output, use_numpy=False, config={"with": False})
    del interp.symtable["open"]
    # asteval's own import (when enabled) imports any module: these see only the allowed modules' public names.
    interp.node_handlers["import"] = lambda node: interp.symtable.update(
        {alias.asname or alias.name: NAMESPACES[alias.name] for alias in node.names}
    )
    interp.node_handlers["importfrom"] = lambda node: interp.symtable.update(imported(node))
    return interp


def imported(node: ast.ImportFrom) -> dict:
    namespace = vars(NAMESPACES[node.module or ""])  # `check` refused a relative or unknown module
    if any(alias.name == "*" for alias in node.names):
        return dict(namespace)
    return {alias.asname or alias.name: namespace[alias.name] for alias in node.names}


def plain(value):
    """The answer as JSON data: numbers, text, booleans and None as they are, containers element by element, and
    other values (Decimal, Fraction, dates) as their text: `Decimal('2.50')` is "2.50"."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def run(code: str) -> dict:
    try:
        tree = EagerGenerators().visit(ast.parse(code))
    except SyntaxError as exc:
        return {"ok": False, "kind": "syntax", "error": f"SyntaxError on line {exc.lineno}: {exc.msg}"}
    output = Output()
    interp = interpreter(output)
    try:
        check(tree, interp)
    except Refused as exc:
        return {"ok": False, "kind": "refused", "error": str(exc)}
    try:
        interp.run(tree, expr=code)
    except Exception:  # recorded in interp.error as well
        pass
    if interp.error:
        return {"ok": False, "output": output.text(), **failure(interp.error[0])}
    if "answer" not in interp.symtable and callable(interp.symtable.get("solution")):
        try:  # PAL's convention: the program is a `solution()` that returns the result
            interp.run(ast.parse("answer = solution()"), expr="answer = solution()")
        except Exception:  # recorded in interp.error as well
            pass
        if interp.error:
            return {"ok": False, "output": output.text(), **failure(interp.error[0])}
    if "answer" in interp.symtable:
        answer = plain(interp.symtable["answer"])
    elif printed := last_line(output.text()):
        answer = printed  # Program-of-Thoughts' convention: the program prints its result last
    else:
        return {
            "ok": False,
            "kind": "no_answer",
            "error": "the program set no variable `answer` and "
            + (
                "its output was cut before its last line"
                if output.text().endswith("[output cut]")
                else "printed nothing"
            ),
            "output": output.text(),
        }
    try:
        json.dumps(answer, allow_nan=False)
    except ValueError:  # NaN, an infinity, or an int past str()'s 4300 digits
        return {
            "ok": False,
            "kind": "error",
            "error": "the answer is not a finite number of at most 4300 digits",
            "output": output.text(),
        }
    return {"ok": True, "answer": answer, "output": output.text()}


def last_line(text: str) -> str | None:
    """The last line a program printed, unless its output was cut (then the last line is not its result)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines and not text.endswith("[output cut]") else None


def failure(error) -> dict:
    """asteval's first error (an `ExceptionHolder`) as one line: `ZeroDivisionError on line 2: division by zero`."""
    name = error.exc.__name__ if error.exc else "Error"
    where = f" on line {error.lineno}" if error.lineno else ""
    message = " ".join(str(error.msg).split())
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    text = f"{name}{where}: {message}" if message and message != name else f"{name}{where}"
    return {"kind": "memory" if error.exc is MemoryError else "error", "error": text}


def limit(memory_mb: int, cpu_seconds: int) -> None:
    """This process's own limits, set after start-up (which needs more address space than a small program)."""
    if sys.platform == "win32":
        return
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file can be written
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))  # no file or socket can be opened: stdin/out/err only


def main() -> None:
    request = json.loads(sys.stdin.read())
    limit(request["memory_mb"], request["cpu_seconds"])
    sys.stdout.write(json.dumps(run(request["code"])) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
