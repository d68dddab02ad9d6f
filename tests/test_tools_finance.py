import importlib.util
import math
from decimal import Decimal

import pytest

from decompose.errors import ToolError
from decompose.tools.finance import DEMO_FX_RATES, finance_tools
from decompose.tools.market_data import DEMO_SYMBOLS, default_market_data_path, write_demo_csv

PRICES = """date,symbol,close,volume
2024-01-02,AAA,100,1
2024-01-03,AAA,110,1
2024-01-05,AAA,99,1
2024-01-02,BBB,50,1
2024-01-03,BBB,50,1
2024-01-05,BBB,55,1
2024-01-04,CCC,10,1
"""


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(PRICES)
    return path


@pytest.fixture
def tools(csv_path):
    return {t.name: t for t in finance_tools(csv_path)}


def call(tools, name, **args):
    return tools[name].invoke(args)


def test_pack_shape(tools):
    assert set(tools) == {
        "loan_payment",
        "amortization_schedule",
        "future_value",
        "present_value",
        "npv",
        "irr",
        "cagr",
        "percent_change",
        "currency_convert",
        "stock_price",
        "price_history",
        "portfolio_return_and_volatility",
    }
    for t in tools.values():
        assert t.description and not (t.metadata or {}).get("side_effects")
        assert all(p.get("description") for p in t.tool_call_schema.model_json_schema()["properties"].values())


# -- loans ---------------------------------------------------------------------------------------------------------


def test_loan_payment_textbook():
    (loan,) = [t for t in finance_tools() if t.name == "loan_payment"]
    result = loan.invoke({"principal": 200000, "annual_rate_pct": 6, "n_payments": 360})
    assert result["payment"] == "1199.10"
    assert result["total_paid"] == "431677.04" and result["total_interest"] == "231677.04"


def test_loan_payment_zero_rate(tools):
    assert call(tools, "loan_payment", principal="1000", annual_rate_pct=0, n_payments=3)["payment"] == "333.33"
    rows = call(tools, "amortization_schedule", principal="1000", annual_rate_pct=0, n_payments=3)["rows"]
    assert [r["payment"] for r in rows] == ["333.33", "333.33", "333.34"]


def test_amortization_schedule(tools):
    result = call(tools, "amortization_schedule", principal=200000, annual_rate_pct=6, n_payments=360)
    rows = result["rows"]
    assert len(rows) == 360
    assert rows[0] == {
        "period": 1,
        "payment": "1199.10",
        "interest": "1000.00",
        "principal": "199.10",
        "balance": "199800.90",
    }
    assert rows[-1]["balance"] == "0.00"
    assert sum(Decimal(r["principal"]) for r in rows) == Decimal("200000.00")
    for r in rows:
        assert Decimal(r["interest"]) + Decimal(r["principal"]) == Decimal(r["payment"])
    assert result["total_interest"] == "231677.04"


@pytest.mark.parametrize(
    "args, message",
    [
        ({"principal": 0, "annual_rate_pct": 6, "n_payments": 12}, "principal must be positive"),
        ({"principal": -5, "annual_rate_pct": 6, "n_payments": 12}, "principal must be positive"),
        ({"principal": 1000, "annual_rate_pct": -1, "n_payments": 12}, "annual_rate_pct must be zero or more"),
        ({"principal": 1000, "annual_rate_pct": 6, "n_payments": 0}, "n_payments must be between 1 and 1200"),
        ({"principal": 1000, "annual_rate_pct": 6, "n_payments": -12}, "n_payments must be between"),
        ({"principal": 1000, "annual_rate_pct": 6, "n_payments": 5000}, "n_payments must be between"),
        ({"principal": 1000, "annual_rate_pct": 6, "n_payments": 12, "payments_per_year": 0}, "payments_per_year"),
    ],
)
def test_loan_bad_input(tools, args, message):
    for name in ("loan_payment", "amortization_schedule"):
        with pytest.raises(ToolError, match=message):
            tools[name].invoke(args)


# -- growth and discounting ----------------------------------------------------------------------------------------


def test_future_value(tools):
    # 1000 * 1.05**10 = 1628.894627
    assert (
        call(tools, "future_value", present_value=1000, annual_rate_pct=5, years=10, compounding_per_year=1)[
            "future_value"
        ]
        == "1628.89"
    )
    # 100 a month for 10 years at 6% compounded monthly: 100 * ((1.005**120 - 1) / 0.005) = 16387.93
    saved = call(tools, "future_value", present_value=0, annual_rate_pct=6, years=10, contribution=100)
    assert saved == {"future_value": "16387.93", "total_contributions": "12000.00", "growth": "4387.93"}
    due = call(
        tools,
        "future_value",
        present_value=0,
        annual_rate_pct=6,
        years=10,
        contribution=100,
        contribution_at_start=True,
    )
    assert due["future_value"] == "16469.87"  # annuity due: one more period of growth (x 1.005)
    flat = call(tools, "future_value", present_value=500, annual_rate_pct=0, years=2, contribution=10)
    assert flat["future_value"] == "740.00"


def test_present_value(tools):
    assert call(tools, "present_value", future_value=1000, annual_rate_pct=5, years=10)["present_value"] == "613.91"
    assert call(tools, "present_value", future_value=1000, annual_rate_pct=0, years=10)["present_value"] == "1000.00"


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("future_value", {"present_value": 100, "annual_rate_pct": 5, "years": -1}, "years must be zero or more"),
        ("future_value", {"present_value": -100, "annual_rate_pct": 5, "years": 1}, "present_value must be"),
        ("future_value", {"present_value": 100, "annual_rate_pct": -100, "years": 1}, "above -100"),
        (
            "future_value",
            {"present_value": 100, "annual_rate_pct": 5, "years": 1, "compounding_per_year": 0},
            "compounding_per_year",
        ),
        ("future_value", {"present_value": 100, "annual_rate_pct": 5, "years": 1000}, "too long"),
        ("present_value", {"future_value": 100, "annual_rate_pct": 5, "years": -2}, "years must be zero or more"),
        ("cagr", {"start_value": 0, "end_value": 10, "years": 2}, "start_value must be positive"),
        ("cagr", {"start_value": 10, "end_value": 20, "years": 0}, "years must be positive"),
        ("percent_change", {"old_value": 0, "new_value": 5}, "percent change from 0 is undefined"),
    ],
)
def test_growth_bad_input(tools, name, args, message):
    with pytest.raises(ToolError, match=message):
        tools[name].invoke(args)


def test_cagr_and_percent_change(tools):
    assert call(tools, "cagr", start_value=1000, end_value="1610.51", years=5)["cagr_pct"] == pytest.approx(10)
    assert call(tools, "percent_change", old_value=80, new_value=100) == {"difference": 20, "change_pct": 25}
    assert call(tools, "percent_change", old_value=-50, new_value=-25)["change_pct"] == 50


# -- NPV / IRR -----------------------------------------------------------------------------------------------------


def test_npv_textbook(tools):
    # -1000 + 500/1.1 + 400/1.1**2 + 300/1.1**3 + 100/1.1**4 = 78.82
    assert call(tools, "npv", rate_pct=10, cash_flows=[-1000, 500, 400, 300, 100]) == {"npv": "78.82"}
    assert call(tools, "npv", rate_pct=0, cash_flows=[-100, 60, 60]) == {"npv": "20.00"}


def test_irr_textbook(tools):
    assert call(tools, "irr", cash_flows=[-1000, 500, 400, 300, 100])["irr_pct"] == pytest.approx(14.4888, abs=1e-3)
    assert call(tools, "irr", cash_flows=[-100, 110])["irr_pct"] == pytest.approx(10, abs=1e-6)
    assert call(tools, "irr", cash_flows=[-100, 0, 0, 0, 100])["irr_pct"] == pytest.approx(0, abs=1e-6)
    assert call(tools, "irr", cash_flows=[-100, 50])["irr_pct"] == pytest.approx(-50, abs=1e-6)
    # IRR makes the NPV zero
    rate = call(tools, "irr", cash_flows=[-5000, 1200, 1800, 2500, 900])["irr_pct"]
    assert call(tools, "npv", rate_pct=rate, cash_flows=[-5000, 1200, 1800, 2500, 900])["npv"] in ("0.00", "-0.00")


def test_irr_multiple_roots_noted(tools):
    # -100 + 230/(1+r) - 132/(1+r)^2 has roots at 10% and 20%
    result = call(tools, "irr", cash_flows=[-100, 230, -132])
    assert result["irr_pct"] == pytest.approx(10, abs=1e-6) and "other IRRs" in result["note"]


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("irr", {"cash_flows": [100, 200]}, "no sign change"),
        ("irr", {"cash_flows": [-100, -200]}, "no sign change"),
        ("irr", {"cash_flows": [-100]}, "at least two cash flows"),
        ("irr", {"cash_flows": []}, "at least two cash flows"),
        ("npv", {"rate_pct": 10, "cash_flows": []}, "at least two cash flows"),
        ("npv", {"rate_pct": -100, "cash_flows": [1, 2]}, "rate_pct must be above -100"),
    ],
)
def test_npv_irr_bad_input(tools, name, args, message):
    with pytest.raises(ToolError, match=message):
        tools[name].invoke(args)


# -- currencies ----------------------------------------------------------------------------------------------------


def test_currency_convert_direct_inverse_cross(tools):
    assert call(tools, "currency_convert", amount=100, from_currency="EUR", to_currency="USD") == {
        "amount": "108.00",
        "currency": "USD",
        "rate": 1.08,
        "route": "direct",
    }
    inverse = call(tools, "currency_convert", amount=108, from_currency="usd", to_currency="eur")
    assert inverse["amount"] == "100.00" and inverse["route"] == "inverse"
    cross = call(tools, "currency_convert", amount=100, from_currency="EUR", to_currency="JPY")
    assert cross == {"amount": "16200.00", "currency": "JPY", "rate": 162.0, "route": "cross via USD"}
    gbp_eur = call(tools, "currency_convert", amount=100, from_currency="GBP", to_currency="EUR")
    assert gbp_eur["amount"] == "117.59"  # 100 * 1.27 / 1.08 = 117.5926
    assert call(tools, "currency_convert", amount=5, from_currency="CHF", to_currency="CHF")["amount"] == "5.00"


def test_currency_convert_custom_table(csv_path):
    tools = {t.name: t for t in finance_tools(csv_path, fx_rates={"EUR/SEK": 11.5, "NOK/EUR": 0.085}, fx_base="EUR")}
    assert call(tools, "currency_convert", amount=100, from_currency="SEK", to_currency="NOK")["amount"] == "102.30"


def test_currency_convert_bad_input(tools):
    with pytest.raises(ToolError, match="unknown currency 'XYZ'"):
        call(tools, "currency_convert", amount=1, from_currency="XYZ", to_currency="USD")
    with pytest.raises(ToolError, match="unknown currency 'ABC'"):
        call(tools, "currency_convert", amount=1, from_currency="EUR", to_currency="ABC")
    with pytest.raises(ToolError, match="amount must be zero or more"):
        call(tools, "currency_convert", amount=-1, from_currency="EUR", to_currency="USD")
    with pytest.raises(ToolError, match="bad FX rate"):
        finance_tools(fx_rates={"EURUSD": 1.1})
    assert set(DEMO_FX_RATES) >= {"EUR/USD", "USD/JPY"}


# -- market data ---------------------------------------------------------------------------------------------------


def test_stock_price(tools):
    assert call(tools, "stock_price", symbol="aaa", on_date="2024-01-03") == {
        "symbol": "AAA",
        "date": "2024-01-03",
        "close": "110.00",
    }
    # no AAA row on the 4th: the last close before it
    assert call(tools, "stock_price", symbol="AAA", on_date="2024-01-04")["date"] == "2024-01-03"
    assert call(tools, "stock_price", symbol="AAA")["close"] == "99.00"
    with pytest.raises(ToolError, match="no AAA price on or before 2023-12-31"):
        call(tools, "stock_price", symbol="AAA", on_date="2023-12-31")
    with pytest.raises(ToolError, match="unknown symbol 'ZZZ'") as info:
        call(tools, "stock_price", symbol="ZZZ")
    assert "AAA, BBB, CCC" in info.value.hint


def test_price_history(tools):
    result = call(tools, "price_history", symbol="AAA", start_date="2024-01-03")
    assert result["points"] == [{"date": "2024-01-03", "close": "110.00"}, {"date": "2024-01-05", "close": "99.00"}]
    assert (result["first_close"], result["last_close"], result["min_close"], result["max_close"]) == (
        "110.00",
        "99.00",
        "99.00",
        "110.00",
    )
    assert result["change_pct"] == pytest.approx(-10)
    with pytest.raises(ToolError, match="no AAA prices between"):
        call(tools, "price_history", symbol="AAA", start_date="2025-01-01")
    with pytest.raises(ToolError, match="is after end date"):
        call(tools, "price_history", symbol="AAA", start_date="2024-01-05", end_date="2024-01-01")


def test_portfolio_return_and_volatility(tools):
    # daily returns: AAA +10%, -10%; BBB 0%, +10%; equal weights -> 5%, 0%
    result = call(tools, "portfolio_return_and_volatility", symbols=["AAA", "BBB"])
    assert result["trading_days"] == 2 and result["weights"] == [0.5, 0.5]
    assert result["annual_return_pct"] == pytest.approx(0.025 * 252 * 100)
    assert result["annual_volatility_pct"] == pytest.approx(statistics_stdev([0.05, 0.0]) * math.sqrt(252) * 100)
    assert result["total_return_pct"] == pytest.approx(5)
    weighted = call(tools, "portfolio_return_and_volatility", symbols=["AAA", "BBB"], weights=[3, 1])
    assert weighted["weights"] == [0.75, 0.25]
    assert weighted["total_return_pct"] == pytest.approx((1.075 * (1 - 0.075 + 0.025) - 1) * 100)


def statistics_stdev(xs):
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


@pytest.mark.parametrize(
    "args, message",
    [
        ({"symbols": []}, "non-empty list"),
        ({"symbols": ["AAA", "aaa"]}, "without duplicates"),
        ({"symbols": ["AAA", "BBB"], "weights": [1]}, "got 1 weights for 2 symbols"),
        ({"symbols": ["AAA", "BBB"], "weights": [1, -1]}, "weights must be zero or more"),
        ({"symbols": ["AAA", "BBB"], "weights": [0, 0]}, "positive sum"),
        ({"symbols": ["AAA", "CCC"]}, "need at least 3 common trading days"),
        ({"symbols": ["AAA", "NOPE"]}, "unknown symbol 'NOPE'"),
    ],
)
def test_portfolio_bad_input(tools, args, message):
    with pytest.raises(ToolError, match=message):
        tools["portfolio_return_and_volatility"].invoke(args)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "lacks column"),
        ("date,symbol\n2024-01-02,AAA\n", r"lacks column\(s\) close"),
        ("date,symbol,close\n", "has no rows"),
        ("date,symbol,close\n2024-13-02,AAA,1\n", "line 2: bad date or close"),
        ("date,symbol,close\n2024-01-02,AAA,abc\n", "line 2: bad date or close"),
        ("date,symbol,close\n2024-01-02,AAA,-3\n", "positive close"),
        ("date,symbol,close\n2024-01-02,AAA,1\n2024-01-02,aaa,2\n", "line 3: duplicate AAA close on 2024-01-02"),
    ],
)
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    (price,) = [t for t in finance_tools(path) if t.name == "stock_price"]
    with pytest.raises(ToolError, match=message):
        price.invoke({"symbol": "AAA"})


def test_unreadable_paths(tmp_path):
    for path, message in [(tmp_path / "missing.csv", "not found"), (tmp_path, "cannot read market data")]:
        (price,) = [t for t in finance_tools(path) if t.name == "stock_price"]
        with pytest.raises(ToolError, match=message):
            price.invoke({"symbol": "AAA"})
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    (price,) = [t for t in finance_tools(binary) if t.name == "stock_price"]
    with pytest.raises(ToolError, match="cannot read market data"):
        price.invoke({"symbol": "AAA"})


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None, reason="pandas installed")
def test_parquet_without_pandas(tmp_path):
    (price,) = [t for t in finance_tools(tmp_path / "prices.parquet") if t.name == "stock_price"]
    with pytest.raises(ToolError, match="Parquet needs pandas and pyarrow"):
        price.invoke({"symbol": "AAA"})


def test_demo_data_generated_on_first_use(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = default_market_data_path()
    assert not path.exists()
    tools = {t.name: t for t in finance_tools()}
    assert call(tools, "stock_price", symbol="ACME", on_date="2023-01-02")["close"] == "100.00"
    assert path.exists()
    again = write_demo_csv(tmp_path / "again.csv")
    assert again.read_bytes() == path.read_bytes()  # deterministic
    stats = call(tools, "portfolio_return_and_volatility", symbols=list(DEMO_SYMBOLS))
    assert stats["trading_days"] == 521 and stats["annual_volatility_pct"] > 0
