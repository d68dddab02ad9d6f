"""The latency benchmark runs end to end (quick mode, tiny latencies) and prints its whole table. No timing
thresholds: timings belong to the benchmark, not to the tests."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"


def test_latency_benchmark_quick(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("latency_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses and pydantic look names up there
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--repeats", "1", "--scale", "0.01"])
    out = capsys.readouterr().out
    scenarios = [sc.name for sc in bench.scenarios(0.01)] + [bench.OVERHEAD.name]
    assert {(r["system"], r["scenario"]) for r in rows} == {(s, sc) for s in bench.SYSTEMS for sc in scenarios}
    for name in [*bench.SYSTEMS, *scenarios]:
        assert name in out
    assert all(r["wall_ms"] > 0 for r in rows)
    assert "langchain-core" in out and "llama-index-core" in out
    assert out.count("PASS") + out.count("FAIL") == 4  # one verdict per target
