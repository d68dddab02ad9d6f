"""benchmarks/quality.py without a real model: the row rule and its hold-out refusal, the committed records and
their resume, the majority baseline, the plan-origin column and the ReAct agent's tool calls."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from decompose import Decomposer, Orchestrator, ScriptedChatModel
from decompose.models.scripted import asks_for_plan, asks_to_combine

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("quality_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data(tmp_path):
    """GSM8K with 260 rows (the last ones unreadable: reading them would fail), StrategyQA with 60."""
    root = tmp_path / "data"
    (root / "eval").mkdir(parents=True)
    (root / "train").mkdir()
    gsm = [json.dumps({"question": f"What is {i} + 1?", "answer": f"{i} + 1\n#### {i + 1}"}) for i in range(250)]
    (root / "eval" / "gsm8k_test.jsonl").write_text("\n".join(gsm + ["not json: held out"] * 10) + "\n")
    sqa = [
        json.dumps({"qid": f"s{i}", "question": f"Is {i} even?", "answer": i % 3 == 0, "facts": [f"{i} is."]})
        for i in range(60)
    ]
    (root / "eval" / "strategyqa_dev.jsonl").write_text("\n".join(sqa) + "\n")
    (root / "eval" / "bamboogle_with_facts.jsonl").write_text(
        json.dumps(
            {
                "id": "b-0",
                "question": "Who wrote Hamlet?",
                "fact1": "Shakespeare wrote Hamlet.",
                "answer": "Shakespeare",
            }
        )
        + "\n"
    )
    (root / "train" / "strategyqa_train.jsonl").write_text("")
    return root


def test_rows_parse_one_based_inclusive_and_refuse_bad_ranges(bench):
    assert bench.parse_rows("51-250") == (51, 250) and bench.parse_rows("51-end") == (51, None)
    for bad in ("0-5", "10-5", "51", "a-b"):
        with pytest.raises(Exception, match="A-B"):
            bench.parse_rows(bad)


def test_rows_past_a_ceiling_are_refused_and_end_stops_at_it(bench):
    assert bench.row_span("gsm8k", (51, None)) == (51, 250)
    assert bench.row_span("strategyqa", (1, 200)) == (1, 200)
    assert bench.row_span("bamboogle", (51, None)) == (51, None)  # no ceiling: every row
    for name, rows in (("gsm8k", (51, 251)), ("tatqa", (251, 260)), ("strategyqa", (51, 201)), ("hotpotqa", (1, 1001))):
        with pytest.raises(SystemExit, match="held out for the final check"):
            bench.row_span(name, rows)


def test_loading_reads_no_line_past_the_last_row_asked(bench, data):
    dataset = bench.load_dataset("gsm8k", data, (51, None), {})  # lines 251+ would not parse
    assert (dataset.first, len(dataset.rows), dataset.rows[0].gold) == (51, 200, ["51"])
    with pytest.raises(SystemExit, match="rows past 250"):
        bench.main(["--data", str(data), "--datasets", "gsm8k", "--rows", "240-260", "--table-only"])


def test_majority_is_the_tuning_rows_commonest_yes_no_answer(bench, data):
    dataset = bench.load_dataset("strategyqa", data, (51, 60), {})
    assert dataset.majority == "No"  # 17 of the first 50 are multiples of 3
    assert bench.load_dataset("gsm8k", data, (51, 60), {}).majority is None  # numbers: no majority row
    assert bench.majority_answer([bench.Row("a", "?", ["yes"]), bench.Row("b", "?", ["Yes"])]) == "Yes"


def test_records_resume_and_the_table_needs_no_model(bench, data, tmp_path, monkeypatch):
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from decompose.models.scripted import asks_for_plan\nrules = [(asks_for_plan, 'garbage')]\ndefault = 'No'\n"
    )
    args = [
        "--model",
        f"scripted:{rules}",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--datasets",
        "strategyqa",
        "--systems",
        "direct",
        "majority",
        "ours",
        "--rows",
        "51-55",
    ]
    cells = bench.main(args)
    records = {
        p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in (tmp_path / "out").rglob("*.jsonl")
    }
    assert sorted(records) == ["strategyqa-direct.jsonl", "strategyqa-majority.jsonl", "strategyqa-ours.jsonl"]
    ours = records["strategyqa-ours.jsonl"]
    assert len(ours) == 5 and {r["plan"] for r in ours} == {"direct"}  # every plan was a fallback
    assert "question" not in ours[0] and "plan" not in records["strategyqa-direct.jsonl"][0]
    assert cells[("strategyqa", "ours")]["valid_plans"] == "0/5" and cells[("strategyqa", "ours")]["fallbacks"] == 5
    assert cells[("strategyqa", "majority")]["tools"] == "none"
    assert cells[("strategyqa", "ours")]["tools"] == "retrieval"
    assert bench.main(args) == cells  # resumed: nothing run again
    assert all(len(p.read_text().splitlines()) == 5 for p in (tmp_path / "out").rglob("*.jsonl"))
    monkeypatch.setattr("decompose.models.load_model", None)  # the table from records alone: no model loaded
    assert bench.main([*args, "--table-only"]) == cells


def test_plan_origin_reads_the_fallback_event(bench):
    def run(reply):
        model = ScriptedChatModel(rules=[(asks_for_plan, reply), (asks_to_combine, "Answer: 4")], default="4")
        return Orchestrator(model, decomposer=Decomposer(on_failure="direct", max_retries=0)).run("What is 2+2?")

    assert bench.plan_origin(run(json.dumps({"steps": [{"id": 1, "question": "Add 2 and 2?"}]}))) == "model"
    assert bench.plan_origin(run("no plan here")) == "direct"


def test_tool_calls_written_as_text_become_tool_calls(bench):
    names = {"calculator", "search"}
    fenced = AIMessage(content='```json\n{"name": "calculator", "arguments": {"expression": "2 + 2"}}\n```')
    tagged = AIMessage(content='<tool_call>\n{"name": "search", "arguments": {"query": "Hamlet"}}\n</tool_call>')
    echoed = AIMessage(
        content='<tools>{"type": "function", "function": {"name": "search"}}</tools>\n'
        '{{"name": "search", "arguments": {"query": "Hanover"}}}'
    )
    assert [c["args"] for c in bench.read_tool_calls(fenced, names).tool_calls] == [{"expression": "2 + 2"}]
    assert bench.read_tool_calls(tagged, names).tool_calls[0]["name"] == "search"
    assert [c["args"] for c in bench.read_tool_calls(echoed, names).tool_calls] == [{"query": "Hanover"}]
    plain = AIMessage(content='Answer: {"name": "unknown", "arguments": {}}')
    assert bench.read_tool_calls(plain, names) is plain


async def test_the_react_agent_calls_the_calculator_and_counts_its_calls(bench, monkeypatch):
    from langchain_core.utils.function_calling import convert_to_openai_tool

    # The scripted model takes tools as an OpenAI server does (bound as kwargs) and writes its call as text.
    monkeypatch.setattr(
        ScriptedChatModel,
        "bind_tools",
        lambda self, tools, **kw: self.bind(tools=[convert_to_openai_tool(t) for t in tools]),
        raising=False,
    )
    call = '```json\n{{"name": "calculator", "arguments": {{"expression": "{}"}}}}\n```'
    model = ScriptedChatModel(
        rules=[
            (lambda msgs: isinstance(msgs[-1], ToolMessage) and "rror" in msgs[-1].content, call.format("2 + 2")),
            (lambda msgs: isinstance(msgs[-1], ToolMessage), lambda msgs: f"Answer: {msgs[-1].content}"),
            (r"2 \+ 2", call.format("two plus 2")),
        ]
    )  # a call the calculator refuses comes back to the model
    dataset = bench.Dataset("gsm8k", [], tools=True)
    outcome = await bench.react_system(model, dataset, bench.Row("r", "What is 2 + 2?", ["4"]))
    assert (outcome.answer, outcome.calls, outcome.error) == ("4", 3, None)
    assert outcome.input_tokens > 0 and bench.tools_of("react", dataset) == "calculator"


async def test_program_and_auto_rows_record_what_they_did(bench):
    program = "```python\nanswer = 2 + 2\n```"
    model = ScriptedChatModel(
        rules=[
            (lambda msgs: "Python program" in msgs[0].content, program),
            (lambda msgs: "step by step" in msgs[0].content, "2 and 2.\nAnswer: 4"),
        ]
    )
    dataset = bench.Dataset("gsm8k", [], tools=True)
    row = bench.Row("r", "What is 2 + 2?", ["4"])
    ran = await bench.orchestrator_system("program", 0)(model, dataset, row)
    assert (ran.answer, ran.calls, ran.plan) == ("4", 1, None) and bench.tools_of("program", dataset) == "code"
    auto = await bench.orchestrator_system("auto", 0)(model, dataset, row)
    assert auto.route["name"] == "cot" and auto.answer == "4" and auto.plan is None  # no plan was made
    assert bench.score_record(row, auto, 1.0)["route"]["name"] == "cot"


def test_a_row_whose_model_was_never_reached_runs_again_and_a_wrong_answer_does_not(bench):
    down = {"error": "could not reach http://127.0.0.1:8765/v1/chat/completions (after 4 attempts)", "calls": 0}
    assert bench.not_run(down)
    assert bench.not_run({"error": "ModelError: timeout from ...", "calls": 3})
    assert not bench.not_run({"error": None, "calls": 1})  # answered, right or wrong
    assert not bench.not_run({"error": "no step could be answered", "calls": 2})  # a real failure of the system
    assert not bench.not_run({"error": None, "calls": 0})  # the majority row calls no model
