import math

import pytest

from decompose.errors import ToolError
from decompose.tools.calculator import calculator_tools, evaluate


@pytest.fixture
def calc():
    (tool,) = calculator_tools()
    return tool


def test_is_a_langchain_tool(calc):
    assert calc.name == "calculator"
    schema = calc.tool_call_schema.model_json_schema()
    assert list(schema["properties"]) == ["expression"]
    assert "expression" in schema["properties"] and schema["properties"]["expression"]["description"]
    assert calc.invoke({"expression": "2 + 3 * 4"}) == 14


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-3 + 5", 2),
        ("--3", 3),
        ("7 / 2", 3.5),
        ("6 / 2", 3),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("10 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ^ 10", 1024),
        ("-2 ** 2", -4),
        ("0.1 + 0.2", 0.3),
        ("1,234.5 + 0.5", 1235),
        ("1,000,000 / 4", 250000),
        ("15% of 80", 12),
        ("80 * 15%", 12),
        ("15%", 0.15),
        ("80 + 15%", 92),
        ("80 - 25%", 60),
        ("12.5% of 1,000", 125),
        ("round(2.5)", 3),
        ("round(0.125, 2)", 0.13),
        ("round(1234, -2)", 1200),
        ("abs(-4.5)", 4.5),
        ("min(3, 1, 2)", 1),
        ("max(1,234)", 234),  # inside a call the comma separates arguments
        ("sqrt(16)", 4),
        ("log(e)", 1),
        ("log(8, 2)", 3),
        ("exp(0)", 1),
        ("2 * pi", round(2 * math.pi, 10)),
        ("3 × 4 ÷ 2", 6),
    ],
)
def test_evaluates(expr, expected):
    result = evaluate(expr)
    assert result == pytest.approx(expected)
    if isinstance(expected, int):
        assert isinstance(result, int)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("1 / 0", "division by zero in '1 / 0'"),
        ("1 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("2 ** 100000", "power too large"),
        ("10 ** 5000", "power too large"),
        ("9 ** 9 ** 9", "power too large"),
        ("10.0 ** 400", "overflow in '10.0 ** 400'"),
        ("exp(1000)", "overflow"),
        ("x + 1", "unknown name 'x'"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('f')", "unknown function 'open'"),
        ("(1).__class__", "unsupported syntax"),
        ("[1, 2]", "unsupported syntax"),
        ("1 < 2", "unsupported syntax"),
        ("lambda: 1", "unsupported syntax"),
        ("'a' * 3", "unsupported literal"),
        ("True + 1", "unsupported literal True"),
        ("2j", "unsupported literal"),
        ("1 +", "syntax error"),
        ("(1 + 2", "syntax error"),
        ("sqrt(-1)", "square root of a negative number"),
        ("log(0)", "logarithm"),
        ("(-8) ** 0.5", "fractional power of a negative number"),
        ("round(1.5, 0.5)", "round() digits"),
        ("sqrt(1, 2)", "sqrt() got 2 argument(s)"),
        ("max()", "max() got 0 argument(s)"),
        ("1" + "+1" * 400, "longer than"),
    ],
)
def test_errors_are_tool_errors(expr, message):
    with pytest.raises(ToolError) as info:
        evaluate(expr)
    assert message in str(info.value)


def test_huge_products_are_refused():
    with pytest.raises(ToolError, match="too large"):
        evaluate("10 ** 1000 * 10 ** 1000 * 10 ** 1000")


def test_error_through_the_tool(calc):
    with pytest.raises(ToolError, match="division by zero"):
        calc.invoke({"expression": "1/0"})
