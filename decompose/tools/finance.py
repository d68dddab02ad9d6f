"""Finance tools: loans, growth, discounting, returns, currency conversion and local market data.

Conventions, the same in every tool:
  - money in results is a string with two decimals ("1199.10"), computed with `Decimal` and rounded half-up;
  - rates and returns are in percent, in arguments (``annual_rate_pct=6`` means 6 %) and results (floats);
  - NPV discounts the first cash flow at t=0 (it is not discounted), unlike a spreadsheet's NPV();
  - annualised figures from daily prices use 252 trading days: return = mean daily return x 252,
    volatility = sample standard deviation of daily returns x sqrt(252).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Annotated

from langchain_core.tools import BaseTool, tool

from decompose.errors import ToolError
from decompose.tool_schema import closure_tool
from decompose.tools.market_data import MarketData, default_market_data_path, write_demo_csv

__all__ = ["finance_tools", "DEMO_FX_RATES", "default_market_data_path", "write_demo_csv"]

TRADING_DAYS = 252
MAX_PERIODS = 1200  # 100 years of monthly payments
CENT = Decimal("0.01")

# Synthetic demo rates: "EUR/USD": 1.08 means 1 EUR = 1.08 USD. Not market quotes.
DEMO_FX_RATES = {"EUR/USD": 1.08, "GBP/USD": 1.27, "USD/JPY": 150.0, "USD/CHF": 0.88, "AUD/USD": 0.66, "USD/CAD": 1.36}

Money = Annotated[Decimal, "Amount of money, e.g. 200000 or '1234.56'"]
RatePct = Annotated[Decimal, "Annual interest rate in percent, e.g. 6 for 6%"]


def _money(x: Decimal) -> str:
    return str(x.quantize(CENT, rounding=ROUND_HALF_UP))


def _pct(x: float) -> float:
    return round(x, 6)


def _positive(value: Decimal, what: str, allow_zero: bool = False) -> Decimal:
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise ToolError(f"{what} must be {'zero or more' if allow_zero else 'positive'}, got {value}")
    return value


def _periods(n: int, what: str = "n_payments") -> int:
    if not 1 <= n <= MAX_PERIODS:
        raise ToolError(f"{what} must be between 1 and {MAX_PERIODS}, got {n}")
    return n


def _schedule(principal: Decimal, annual_rate_pct: Decimal, n: int, per_year: int) -> tuple[Decimal, list[dict]]:
    """Level payment (annuity formula) and the amortization rows; the last payment absorbs rounding."""
    _positive(principal, "principal")
    _positive(annual_rate_pct, "annual_rate_pct", allow_zero=True)
    _periods(n)
    if not 1 <= per_year <= 365:
        raise ToolError(f"payments_per_year must be between 1 and 365, got {per_year}")
    with localcontext() as ctx:
        ctx.prec = 40
        r = annual_rate_pct / 100 / per_year
        raw = principal / n if r == 0 else principal * r / (1 - (1 + r) ** -n)
        payment = raw.quantize(CENT, rounding=ROUND_HALF_UP)
        balance, rows = principal, []
        for period in range(1, n + 1):
            interest = (balance * r).quantize(CENT, rounding=ROUND_HALF_UP)
            principal_part = balance if period == n else min(payment - interest, balance)
            balance -= principal_part
            rows.append(
                {
                    "period": period,
                    "payment": _money(interest + principal_part),
                    "interest": _money(interest),
                    "principal": _money(principal_part),
                    "balance": _money(balance),
                }
            )
    return payment, rows


@tool
def loan_payment(
    principal: Money,
    annual_rate_pct: RatePct,
    n_payments: Annotated[int, "Number of payments, e.g. 360 for 30 years paid monthly"],
    payments_per_year: Annotated[int, "Payments per year (12 = monthly)"] = 12,
) -> dict:
    """Level payment of a fixed-rate loan (annuity formula), with total paid and total interest."""
    payment, rows = _schedule(principal, annual_rate_pct, n_payments, payments_per_year)
    total = sum((Decimal(r["payment"]) for r in rows), Decimal(0))
    return {
        "payment": _money(payment),
        "n_payments": n_payments,
        "total_paid": _money(total),
        "total_interest": _money(total - principal),
    }


@tool
def amortization_schedule(
    principal: Money,
    annual_rate_pct: RatePct,
    n_payments: Annotated[int, "Number of payments, e.g. 360 for 30 years paid monthly"],
    payments_per_year: Annotated[int, "Payments per year (12 = monthly)"] = 12,
) -> dict:
    """Payment-by-payment schedule of a fixed-rate loan: rows of period, payment, interest, principal and
    remaining balance (the last balance is 0.00; the last payment absorbs rounding)."""
    payment, rows = _schedule(principal, annual_rate_pct, n_payments, payments_per_year)
    interest = sum((Decimal(r["interest"]) for r in rows), Decimal(0))
    return {"payment": _money(payment), "total_interest": _money(interest), "rows": rows}


def _growth_inputs(rate_pct: Decimal, years: Decimal, per_year: int) -> tuple[Decimal, Decimal]:
    if not rate_pct.is_finite() or rate_pct <= -100:
        raise ToolError(f"annual_rate_pct must be above -100, got {rate_pct}")
    if not years.is_finite() or years < 0:
        raise ToolError(f"years must be zero or more, got {years}")
    if not 1 <= per_year <= 365:
        raise ToolError(f"compounding_per_year must be between 1 and 365, got {per_year}")
    if years > 100:
        raise ToolError(f"{years} years is too long", hint="use at most 100 years")
    return rate_pct / 100 / per_year, years * per_year


@tool
def future_value(
    present_value: Annotated[Decimal, "Starting amount, e.g. 10000"],
    annual_rate_pct: Annotated[Decimal, "Annual growth or interest rate in percent, e.g. 7"],
    years: Annotated[Decimal, "Number of years (may be fractional)"],
    compounding_per_year: Annotated[int, "Compounding periods per year (1 yearly, 12 monthly)"] = 12,
    contribution: Annotated[Decimal, "Amount added every compounding period (0 for none)"] = Decimal(0),
    contribution_at_start: Annotated[bool, "True if contributions are made at the start of each period"] = False,
) -> dict:
    """Compound growth: value after `years` of a starting amount plus optional regular contributions."""
    _positive(present_value, "present_value", allow_zero=True)
    _positive(contribution, "contribution", allow_zero=True)
    with localcontext() as ctx:
        ctx.prec = 40
        r, n = _growth_inputs(annual_rate_pct, years, compounding_per_year)
        growth = (1 + r) ** n
        if r == 0:
            from_contributions = contribution * n
        else:
            from_contributions = contribution * (growth - 1) / r * ((1 + r) if contribution_at_start else 1)
        value = present_value * growth + from_contributions
        contributed = contribution * n
    return {
        "future_value": _money(value),
        "total_contributions": _money(contributed),
        "growth": _money(value - present_value - contributed),
    }


@tool
def present_value(
    future_value: Annotated[Decimal, "Amount received in the future, e.g. 10000"],
    annual_rate_pct: Annotated[Decimal, "Annual discount rate in percent, e.g. 5"],
    years: Annotated[Decimal, "Years until the amount is received (may be fractional)"],
    compounding_per_year: Annotated[int, "Compounding periods per year (1 yearly, 12 monthly)"] = 1,
) -> dict:
    """Value today of an amount received in the future, discounted at a compound rate."""
    _positive(future_value, "future_value", allow_zero=True)
    with localcontext() as ctx:
        ctx.prec = 40
        r, n = _growth_inputs(annual_rate_pct, years, compounding_per_year)
        value = future_value / (1 + r) ** n
    return {"present_value": _money(value), "discount": _money(future_value - value)}


def _flows(cash_flows: list[Decimal]) -> list[Decimal]:
    if len(cash_flows) < 2:
        raise ToolError("need at least two cash flows", hint="first the investment (t=0), then the returns")
    if len(cash_flows) > MAX_PERIODS:
        raise ToolError(f"at most {MAX_PERIODS} cash flows are supported")
    if not all(c.is_finite() for c in cash_flows):
        raise ToolError("cash flows must be finite numbers")
    return cash_flows


@tool
def npv(
    rate_pct: Annotated[Decimal, "Discount rate per period in percent, e.g. 10"],
    cash_flows: Annotated[list[Decimal], "Cash flows per period; the first is at t=0 (usually negative)"],
) -> dict:
    """Net present value of periodic cash flows; the first flow is at time 0 and is not discounted."""
    if not rate_pct.is_finite() or rate_pct <= -100:
        raise ToolError(f"rate_pct must be above -100, got {rate_pct}")
    with localcontext() as ctx:
        ctx.prec = 40
        r = rate_pct / 100
        value = sum((cf / (1 + r) ** t for t, cf in enumerate(_flows(cash_flows))), Decimal(0))
    return {"npv": _money(value)}


def _npv_float(rate: float, flows: list[float]) -> float | None:
    try:
        return sum(cf / (1 + rate) ** t for t, cf in enumerate(flows))
    except (OverflowError, ZeroDivisionError):
        return None


@tool
def irr(
    cash_flows: Annotated[list[Decimal], "Cash flows per period; the first is at t=0 (usually negative)"],
) -> dict:
    """Internal rate of return per period (the rate where NPV is zero), in percent. Needs at least one
    negative and one positive cash flow."""
    flows = [float(c) for c in _flows(cash_flows)]
    if not (any(c < 0 for c in flows) and any(c > 0 for c in flows)):
        raise ToolError("IRR needs both negative and positive cash flows (no sign change, so no IRR)")
    # Scan a grid of rates for sign changes of NPV, then bisect the bracket nearest to 0 %.
    grid = [-0.99, -0.9, -0.75, -0.5, -0.25, -0.1, 0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 2, 5, 10, 100]
    values = [(r, v) for r in grid if (v := _npv_float(r, flows)) is not None]
    brackets = [(a, b) for (a, fa), (b, fb) in zip(values, values[1:]) if fa * fb < 0]
    brackets += [(r, r) for r, v in values if v == 0]
    if not brackets:
        raise ToolError("IRR not found: NPV does not change sign between -99% and 10000%")
    lo, hi = min(brackets, key=lambda ab: min(abs(ab[0]), abs(ab[1])))
    f_lo = _npv_float(lo, flows) or 0.0  # a bracket's ends have values
    while hi - lo > 1e-12:
        mid = (lo + hi) / 2
        f_mid = _npv_float(mid, flows) or 0.0  # between two values, a value
        if f_mid == 0:
            lo = hi = mid
        elif (f_lo < 0) == (f_mid < 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    result: dict[str, float | str] = {"irr_pct": _pct((lo + hi) / 2 * 100)}
    if len(brackets) > 1:
        result["note"] = "cash flows change sign more than once; other IRRs exist, this one is nearest to 0%"
    return result


@tool
def cagr(
    start_value: Annotated[Decimal, "Value at the start, e.g. 1000"],
    end_value: Annotated[Decimal, "Value at the end, e.g. 1610.51"],
    years: Annotated[Decimal, "Years between the two values (may be fractional)"],
) -> dict:
    """Compound annual growth rate between two values, in percent."""
    _positive(start_value, "start_value")
    _positive(end_value, "end_value")
    _positive(years, "years")
    return {"cagr_pct": _pct(((float(end_value) / float(start_value)) ** (1 / float(years)) - 1) * 100)}


@tool
def percent_change(
    old_value: Annotated[float, "The earlier value"],
    new_value: Annotated[float, "The later value"],
) -> dict:
    """Change from old_value to new_value: the difference and the change in percent of |old_value|."""
    if not (math.isfinite(old_value) and math.isfinite(new_value)):
        raise ToolError("values must be finite numbers")
    if old_value == 0:
        raise ToolError("percent change from 0 is undefined", hint="old_value must not be zero")
    difference = new_value - old_value
    return {"difference": float(f"{difference:.12g}"), "change_pct": _pct(difference / abs(old_value) * 100)}


def _fx_table(rates: Mapping[str, float]) -> dict[tuple[str, str], Decimal]:
    table = {}
    for pair, rate in rates.items():
        base, _, quote = pair.upper().partition("/")
        value = Decimal(str(rate))
        if len(base) != 3 or len(quote) != 3 or not value.is_finite() or value <= 0:
            raise ToolError(f"bad FX rate {pair!r}: {rate!r}", hint="use pairs like 'EUR/USD': 1.08 (1 EUR = 1.08 USD)")
        table[(base, quote)] = value
    return table


def _fx_rate(table: dict[tuple[str, str], Decimal], src: str, dst: str, via: str) -> tuple[Decimal, str]:
    """Rate for 1 src in dst: the pair itself, its inverse, or a cross through the `via` currency."""

    def one(a: str, b: str) -> Decimal | None:
        if a == b:
            return Decimal(1)
        if (a, b) in table:
            return table[(a, b)]
        return 1 / table[(b, a)] if (b, a) in table else None

    if (rate := one(src, dst)) is not None:
        return rate, "inverse" if (dst, src) in table else "direct"
    first, second = one(src, via), one(via, dst)
    if first is None or second is None:
        known = sorted({c for pair in table for c in pair})
        unknown = src if first is None else dst
        raise ToolError(f"unknown currency '{unknown}'", hint="known currencies: " + ", ".join(known))
    return first * second, f"cross via {via}"


def finance_tools(
    market_data: str | Path | None = None,
    *,
    fx_rates: Mapping[str, float] | None = None,
    fx_base: str = "USD",
) -> list[BaseTool]:
    """The finance pack. `market_data` is a CSV (date,symbol,close) or, with pandas+pyarrow, a Parquet file;
    `None` uses a synthetic demo CSV generated under the cache dir. `fx_rates` maps pairs like "EUR/USD" to the
    price of 1 unit of the first currency in the second (default: DEMO_FX_RATES, synthetic); conversions not
    in the table are crossed through `fx_base`."""
    data = MarketData(market_data)
    table = _fx_table(DEMO_FX_RATES if fx_rates is None else fx_rates)
    via = fx_base.upper()

    @closure_tool
    def currency_convert(
        amount: Annotated[Decimal, "Amount in from_currency, e.g. 250"],
        from_currency: Annotated[str, "ISO code of the currency converted from, e.g. EUR"],
        to_currency: Annotated[str, "ISO code of the currency converted to, e.g. JPY"],
    ) -> dict:
        """Convert an amount between currencies using the configured rate table (direct, inverse, or a cross
        rate via the base currency). Returns the converted amount, the rate used and how it was derived."""
        _positive(amount, "amount", allow_zero=True)
        src, dst = from_currency.strip().upper(), to_currency.strip().upper()
        with localcontext() as ctx:
            ctx.prec = 40
            rate, route = _fx_rate(table, src, dst, via)
            converted = amount * rate
        return {"amount": _money(converted), "currency": dst, "rate": float(f"{rate:.8g}"), "route": route}

    @closure_tool
    def stock_price(
        symbol: Annotated[str, "Ticker symbol in the market data, e.g. ACME"],
        on_date: Annotated[date | None, "Date YYYY-MM-DD; the last close on or before it. Omit for the latest"] = None,
    ) -> dict:
        """Closing price of a symbol on a date (or the last trading day before it) from the local market data."""
        day, close = data.close_on(symbol, on_date)
        return {"symbol": symbol.strip().upper(), "date": day.isoformat(), "close": _money(close)}

    @closure_tool
    def price_history(
        symbol: Annotated[str, "Ticker symbol in the market data, e.g. ACME"],
        start_date: Annotated[date | None, "First date YYYY-MM-DD (omit for the start of the data)"] = None,
        end_date: Annotated[date | None, "Last date YYYY-MM-DD (omit for the end of the data)"] = None,
    ) -> dict:
        """Daily closing prices of a symbol between two dates, with first/last/min/max close and the change in
        percent over the period."""
        points = data.series(symbol, start_date, end_date)
        closes = [c for _, c in points]
        return {
            "symbol": symbol.strip().upper(),
            "start_date": points[0][0].isoformat(),
            "end_date": points[-1][0].isoformat(),
            "first_close": _money(closes[0]),
            "last_close": _money(closes[-1]),
            "min_close": _money(min(closes)),
            "max_close": _money(max(closes)),
            "change_pct": _pct(float((closes[-1] / closes[0] - 1) * 100)),
            "points": [{"date": d.isoformat(), "close": _money(c)} for d, c in points],
        }

    @closure_tool
    def portfolio_return_and_volatility(
        symbols: Annotated[list[str], "Ticker symbols in the portfolio, e.g. ['ACME', 'GLOBX']"],
        weights: Annotated[list[float] | None, "Weight per symbol, same order (normalised); omit for equal"] = None,
        start_date: Annotated[date | None, "First date YYYY-MM-DD (omit for the start of the data)"] = None,
        end_date: Annotated[date | None, "Last date YYYY-MM-DD (omit for the end of the data)"] = None,
    ) -> dict:
        """Annualised return and volatility (percent, 252 trading days) of a daily-rebalanced portfolio, from
        the daily closes of its symbols on the dates they all share; also the total return over the period."""
        symbols = [s.strip().upper() for s in symbols]
        if not symbols or len(set(symbols)) != len(symbols):
            raise ToolError("symbols must be a non-empty list without duplicates")
        weights = [1.0] * len(symbols) if weights is None else weights
        if len(weights) != len(symbols):
            raise ToolError(f"got {len(weights)} weights for {len(symbols)} symbols")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ToolError("weights must be zero or more, with a positive sum")
        weights = [w / sum(weights) for w in weights]
        series = [dict(data.series(s, start_date, end_date)) for s in symbols]
        dates = sorted(set.intersection(*(set(s) for s in series)))
        if len(dates) < 3:
            raise ToolError(f"need at least 3 common trading days for {', '.join(symbols)}, found {len(dates)}")
        prices = [[float(s[d]) for d in dates] for s in series]
        daily = [sum(w * (p[t] / p[t - 1] - 1) for w, p in zip(weights, prices)) for t in range(1, len(dates))]
        return {
            "symbols": symbols,
            "weights": [round(w, 6) for w in weights],
            "start_date": dates[0].isoformat(),
            "end_date": dates[-1].isoformat(),
            "trading_days": len(daily),
            "annual_return_pct": _pct(statistics.fmean(daily) * TRADING_DAYS * 100),
            "annual_volatility_pct": _pct(statistics.stdev(daily) * math.sqrt(TRADING_DAYS) * 100),
            "total_return_pct": _pct((math.prod(1 + r for r in daily) - 1) * 100),
        }

    return [
        loan_payment,
        amortization_schedule,
        future_value,
        present_value,
        npv,
        irr,
        cagr,
        percent_change,
        currency_convert,
        stock_price,
        price_history,
        portfolio_return_and_volatility,
    ]
