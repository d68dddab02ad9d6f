"""Local market data: closing prices from a CSV (columns date,symbol,close; other columns ignored), or Parquet
when pandas and pyarrow are installed. Without a file, a synthetic demo CSV (invented symbols ACME, GLOBX,
INITX, UMBRA; business days of 2023-2024; a seeded random walk) is written under the cache dir on first use.
"""

from __future__ import annotations

import csv
import math
import os
import random
from bisect import bisect_right
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from decompose.errors import ToolError
from decompose.paths import cache_dir

# symbol -> (first close, mean daily log return, daily volatility); invented, not real companies
DEMO_SYMBOLS = {
    "ACME": (100.0, 0.0004, 0.012),
    "GLOBX": (50.0, 0.0002, 0.018),
    "INITX": (25.0, 0.0007, 0.028),
    "UMBRA": (210.0, -0.0001, 0.009),
}
_DEMO_START, _DEMO_END = date(2023, 1, 2), date(2024, 12, 31)


def default_market_data_path() -> Path:
    return cache_dir() / "market_data_demo.csv"


def write_demo_csv(path: str | Path) -> Path:
    """Write the synthetic demo prices (deterministic: same file on every machine)."""
    path = Path(path)
    rng = random.Random(20240101)
    days = [_DEMO_START + timedelta(d) for d in range((_DEMO_END - _DEMO_START).days + 1)]
    days = [d for d in days if d.weekday() < 5]
    rows = []
    for symbol, (price, drift, vol) in DEMO_SYMBOLS.items():
        for day in days:
            rows.append((day.isoformat(), symbol, f"{price:.2f}"))
            price *= math.exp(rng.gauss(drift, vol))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # write then rename: a concurrent reader never sees half a file
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "symbol", "close"])
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


class MarketData:
    """Closing prices by symbol, read lazily from one file and cached."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._series: dict[str, tuple[list[date], list[Decimal]]] | None = None

    def _file(self) -> Path:
        if self.path is not None:
            return self.path
        path = default_market_data_path()
        try:
            return path if path.exists() else write_demo_csv(path)
        except OSError as err:
            raise ToolError(
                f"cannot write demo market data to '{path}': {err.strerror}",
                hint="set XDG_CACHE_HOME to a writable folder, or pass a CSV path",
            ) from None

    def _rows(self, path: Path):
        """Yield (line/row number, date, symbol, close) as raw values."""
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                import pandas as pd
            except ImportError:
                raise ToolError(
                    f"cannot read '{path}': Parquet needs pandas and pyarrow",
                    hint="pip install pandas pyarrow, or export the data to CSV",
                ) from None
            frame = pd.read_parquet(path)
            frame.columns = [str(c).strip().lower() for c in frame.columns]
            self._check_columns(path, list(frame.columns))
            for n, (d, s, c) in enumerate(zip(frame["date"], frame["symbol"], frame["close"]), start=1):
                yield n, str(d)[:10], s, c
            return
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            self._check_columns(path, header)
            reader.fieldnames = header
            for row in reader:
                yield reader.line_num, row["date"], row["symbol"], row["close"]

    @staticmethod
    def _check_columns(path: Path, header: list[str]):
        missing = {"date", "symbol", "close"} - set(header)
        if missing:
            raise ToolError(
                f"market data '{path}' lacks column(s) {', '.join(sorted(missing))}",
                hint="the file needs columns date,symbol,close",
            )

    def _load(self) -> dict[str, tuple[list[date], list[Decimal]]]:
        path = self._file()
        points: dict[str, dict[date, Decimal]] = {}
        try:
            for line, raw_date, raw_symbol, raw_close in self._rows(path):
                try:
                    day = date.fromisoformat(str(raw_date).strip())
                    close = Decimal(str(raw_close).strip())
                except (ValueError, InvalidOperation):
                    raise ToolError(
                        f"market data '{path}' line {line}: bad date or close ({raw_date!r}, {raw_close!r})",
                        hint="dates as YYYY-MM-DD, closes as numbers",
                    ) from None
                symbol = str(raw_symbol).strip().upper()
                if not symbol or not close.is_finite() or close <= 0:
                    raise ToolError(f"market data '{path}' line {line}: needs a symbol and a positive close")
                if day in points.setdefault(symbol, {}):
                    raise ToolError(f"market data '{path}' line {line}: duplicate {symbol} close on {day}")
                points[symbol][day] = close
        except FileNotFoundError:
            raise ToolError(f"market data file '{path}' not found", hint="pass the path of a CSV file") from None
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise ToolError(f"cannot read market data '{path}': {err}", hint="pass a readable CSV file") from None
        if not points:
            raise ToolError(f"market data '{path}' has no rows")
        return {s: (sorted(p), [p[d] for d in sorted(p)]) for s, p in points.items()}

    def symbols(self) -> list[str]:
        return sorted(self._loaded())

    def _loaded(self) -> dict[str, tuple[list[date], list[Decimal]]]:
        if self._series is None:
            self._series = self._load()
        return self._series

    def series(self, symbol: str, start: date | None = None, end: date | None = None) -> list[tuple[date, Decimal]]:
        """(date, close) pairs for `symbol` between start and end inclusive, oldest first."""
        known = self.symbols()
        key = (symbol or "").strip().upper()
        if key not in self._loaded():
            raise ToolError(f"unknown symbol '{symbol}'", hint="known symbols: " + ", ".join(known))
        if start and end and start > end:
            raise ToolError(f"start date {start} is after end date {end}")
        dates, closes = self._loaded()[key]
        picked = [(d, c) for d, c in zip(dates, closes) if (not start or d >= start) and (not end or d <= end)]
        if not picked:
            raise ToolError(
                f"no {key} prices between {start or dates[0]} and {end or dates[-1]}",
                hint=f"{key} data runs from {dates[0]} to {dates[-1]}",
            )
        return picked

    def close_on(self, symbol: str, day: date | None) -> tuple[date, Decimal]:
        """The close on `day`, or on the last trading day before it; the latest close when day is None."""
        self.series(symbol)  # validates the symbol
        dates, closes = self._loaded()[symbol.strip().upper()]
        i = len(dates) if day is None else bisect_right(dates, day)
        if i == 0:
            raise ToolError(f"no {symbol.upper()} price on or before {day}", hint=f"data starts {dates[0]}")
        return dates[i - 1], closes[i - 1]
