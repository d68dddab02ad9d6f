"""A safe arithmetic calculator tool: expressions are parsed with `ast` and walked over a whitelist, never eval'd.

Supported: numbers (``1,234.5`` thousands separators allowed outside function calls), ``+ - * / // % **``
(``^`` is read as ``**``), parentheses, unary minus, constants ``pi`` and ``e``, and the functions
``round(x[, ndigits])`` (half-up) ``abs min max sqrt log(x[, base]) exp``.

Percentages (a ``%`` right after a number, not followed by an operand; ``10 % 3`` is still modulo):
  - ``15% of 80``  -> 12        (``N% of X`` = N/100 * X)
  - ``80 * 15%``   -> 12        (a bare ``N%`` is N/100)
  - ``80 + 15%``   -> 92        (``X + N%`` / ``X - N%`` raise / lower X by N percent, as on a desk calculator)

Result: an ``int`` when the value is integral, else a ``float`` rounded to 12 significant digits (hides binary
noise such as 0.1 + 0.2 = 0.30000000000000004).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, NoReturn

from langchain_core.tools import BaseTool, tool

from decompose.errors import ToolError

_MAX_LEN = 500
_MAX_EXPONENT = 10_000
_MAX_INT_BITS = 4_000  # ~1,200 digits: anything bigger is a mistake, not arithmetic

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_PCT = "__pct__"  # marker call the pre-pass puts around a percentage literal

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PCT_OF = re.compile(rf"({_NUM})\s*%\s*of\b", re.IGNORECASE)
_PCT_POSTFIX = re.compile(rf"({_NUM})%(?!\s*[\w(.])")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _strip_thousands(expr: str) -> str:
    """Remove digit-group commas, except inside a function call, where commas separate arguments."""
    out: list[str] = []
    stack: list[bool] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "(":
            stack.append(bool(out) and (out[-1][-1:].isalnum() or out[-1][-1:] == "_"))
        elif ch == ")" and stack:
            stack.pop()
        m = _THOUSANDS.match(expr, i)
        starts_number = i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "._")
        if m and starts_number and not any(stack):
            out.append(m.group().replace(",", ""))
            i = m.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _preprocess(expression: str) -> str:
    expr = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    expr = _strip_thousands(expr)
    expr = _PCT_OF.sub(rf"{_PCT}(\1) *", expr)
    return _PCT_POSTFIX.sub(rf"{_PCT}(\1)", expr)


def _check_size(value, expression: str):
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ToolError(f"result too large in '{expression}'", hint="keep numbers below about 10**1000")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError(f"overflow in '{expression}'", hint="the result is too large for a float")
    return value


class _Evaluator:
    def __init__(self, expression: str):
        self.expression = expression

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise ToolError(f"{message} in '{self.expression}'", hint=hint)

    def eval(self, node: ast.AST):
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                self.fail(f"unsupported literal {node.value!r}")
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in _CONSTANTS:
                self.fail(f"unknown name '{node.id}'", hint="known constants: pi, e")
            return _CONSTANTS[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.eval(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        self.fail(f"unsupported syntax '{ast.unparse(node)}'", hint="use numbers, + - * / // % **, and parentheses")

    def binop(self, node: ast.BinOp):
        left = self.eval(node.left)
        # "X + N%" / "X - N%": the percentage is of X, not of one.
        if isinstance(node.op, (ast.Add, ast.Sub)) and self.is_pct(node.right):
            pct = self.eval(node.right)
            return _check_size(left * (1 + pct if isinstance(node.op, ast.Add) else 1 - pct), self.expression)
        right = self.eval(node.right)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            self.fail("division by zero")
        if isinstance(node.op, ast.Pow):
            if abs(right) > _MAX_EXPONENT or (
                abs(left) > 1 and abs(right) * math.log10(abs(left)) > _MAX_INT_BITS * 0.30103
            ):
                self.fail("power too large", hint=f"exponents are capped (|exponent| <= {_MAX_EXPONENT})")
            if left == 0 and right < 0:
                self.fail("division by zero")
            if left < 0 and not float(right).is_integer():
                self.fail("fractional power of a negative number")
        try:
            return _check_size(_BINOPS[type(node.op)](left, right), self.expression)
        except OverflowError:
            self.fail("overflow", hint="the result is too large for a float")

    @staticmethod
    def is_pct(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == _PCT

    def call(self, node: ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None or node.keywords:
            self.fail("unsupported call", hint="call functions by name with positional arguments")
        if name == _PCT:
            return self.eval(node.args[0]) / 100
        spec = _FUNCTIONS.get(name)
        if spec is None:
            self.fail(f"unknown function '{name}'", hint="known: " + ", ".join(sorted(_FUNCTIONS)))
        args = [self.eval(a) for a in node.args]
        fn, min_args, max_args = spec
        if not min_args <= len(args) <= (max_args or len(args)):
            self.fail(f"{name}() got {len(args)} argument(s)")
        if name == "sqrt" and args[0] < 0:
            self.fail("square root of a negative number")
        if name == "log" and (args[0] <= 0 or (len(args) == 2 and (args[1] <= 0 or args[1] == 1))):
            self.fail("logarithm of a non-positive number or invalid base")
        if name == "round" and len(args) == 2 and not (float(args[1]).is_integer() and abs(args[1]) <= 15):
            self.fail("round() digits must be a whole number between -15 and 15")
        try:
            return _check_size(fn(*args), self.expression)
        except OverflowError:
            self.fail("overflow", hint="the result is too large for a float")


def _round(x, ndigits=0):
    """Half-up rounding (2.5 -> 3), not Python's banker's rounding."""
    n = int(ndigits)
    value = Decimal(repr(x)).quantize(Decimal(1).scaleb(-n), rounding=ROUND_HALF_UP)
    return int(value) if n <= 0 else float(value)


_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {  # (function, min args, max args or None)
    "round": (_round, 1, 2),
    "abs": (abs, 1, 1),
    "min": (min, 1, None),
    "max": (max, 1, None),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),
    "exp": (math.exp, 1, 1),
}


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely; raises ToolError naming the problem."""
    if not expression or not expression.strip():
        raise ToolError("empty expression", hint="pass an arithmetic expression such as '2 * (3 + 4)'")
    if len(expression) > _MAX_LEN:
        raise ToolError(f"expression longer than {_MAX_LEN} characters", hint="split it into smaller steps")
    try:
        tree = ast.parse(_preprocess(expression), mode="eval")
    except SyntaxError:
        raise ToolError(f"syntax error in '{expression}'", hint="check operators and parentheses") from None
    value = _Evaluator(expression).eval(tree)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
        return float(f"{value:.12g}")
    return value


@tool
def calculator(
    expression: Annotated[str, "Arithmetic expression, e.g. '(1,200 - 15% of 200) / 3' or 'sqrt(2) * pi'"],
) -> int | float:
    """Evaluate an arithmetic expression exactly as written and return the number.

    Supports + - * / // % ** (or ^), parentheses, unary minus, pi, e, and round(x, n) (half-up), abs, min,
    max, sqrt, log(x) (natural) / log(x, base), exp. Percentages: '15% of 80' = 12, '80 * 15%' = 12, '80 + 15%' = 92.
    Returns an integer when the result is whole, otherwise a float (12 significant digits).
    """
    return evaluate(expression)


PLAN_EXAMPLES = [
    {
        "question": "Pens cost 3 dollars each. Ann buys 4 pens and pays with a 20 dollar bill. "
        "How much change does she get?",
        "steps": [
            {
                "id": 1,
                "question": "What do 4 pens at 3 dollars cost?",
                "depends_on": [],
                "tool": "calculator",
                "args": {"expression": "4 * 3"},
            },
            {
                "id": 2,
                "question": "What is 20 minus {1}?",
                "depends_on": [1],
                "tool": "calculator",
                "args": {"expression": "20 - {1}"},
            },
        ],
    }
]
# Shown when a retriever holds the numbers: read them with question steps, compute on their answers.
DOCUMENT_PLAN_EXAMPLES = [
    {
        "question": "By what percentage did revenue change from 2018 to 2019?",
        "steps": [
            {"id": 1, "question": "What was the revenue in 2019?", "depends_on": []},
            {"id": 2, "question": "What was the revenue in 2018?", "depends_on": []},
            {
                "id": 3,
                "question": "What is the change from {2} to {1} in percent?",
                "depends_on": [1, 2],
                "tool": "calculator",
                "args": {"expression": "({1} - {2}) / {2} * 100"},
            },
        ],
    }
]


# What a grammar-constrained local planner may write as an expression (`chains.plan_grammar`): numbers,
# operators, step references and the known names, so "9 candles at 26 dollars" cannot be written.
EXPRESSION_PATTERN = (
    r"^([0-9 .,+\-*/%^()]|\{\d+(\.[A-Za-z_][A-Za-z0-9_]*|\.\d+)*\}|of|pi|e|" + "|".join(_FUNCTIONS) + ")+$"
)


def calculator_tools() -> list[BaseTool]:
    """The calculator pack: one `calculator` tool with worked plans that show models how to call it. A copy
    per call: the module's tool is never changed, so one caller's metadata cannot leak into another's."""
    examples = {
        "plan_examples": PLAN_EXAMPLES,
        "document_plan_examples": DOCUMENT_PLAN_EXAMPLES,
        "arg_patterns": {"expression": EXPRESSION_PATTERN},
    }
    return [calculator.model_copy(update={"metadata": examples})]
