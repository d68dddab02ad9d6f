"""`decompose train --bootstrap`: a scripted teacher's traces over a tiny new tool pack, judged, kept or dropped
with a reason, resumed, written as training rows; bad input named; and (slow) a student trained on them."""

import json
from pathlib import Path

import pytest
import units_pack

from decompose.cli.app import main
from decompose.orchestrator import Orchestrator
from decompose.train.bootstrap import Question, bootstrap, generate_questions, read_questions
from decompose.train.data import TrainDataError, read_examples

PACK = str(Path(units_pack.__file__))
TEACHER = f"scripted:{PACK}:make_teacher"


def traced(tmp_path, questions, teacher=None):
    teacher = teacher or units_pack.make_teacher()
    report = bootstrap(lambda: Orchestrator(teacher, tools=units_pack.tools()), questions, tmp_path / "traces.jsonl")
    return report, teacher


def test_each_trace_is_kept_or_dropped_with_its_reason(tmp_path):
    questions = [
        Question("What is 25 degrees Celsius in Fahrenheit?", answer="77"),
        Question("How many pounds is 10 kg?", calls=(("kg_to_pounds", {"kg": 10}),)),
        Question("What is 30 degrees Celsius in Fahrenheit?", answer="30"),  # the answer is 86: wrong
        Question("How many miles is 5 km?", calls=(("kg_to_pounds", {"kg": 5}),)),  # gold calls another tool
        Question("How many miles is -3 km?"),  # the tool refuses: a run error
        Question("broken: 5 kg in pounds?"),  # the teacher names a tool that does not exist
        Question("How far is 12 km in miles?"),  # no gold: kept when it runs
    ]
    report, _ = traced(tmp_path, questions)
    assert (report.questions, report.traced, report.kept) == (7, 7, 3)
    assert report.dropped == {"wrong answer": 1, "wrong tool calls": 1, "run error": 1, "invalid plan": 1}
    traces = [json.loads(line) for line in Path(report.traces).read_text().splitlines()]
    assert sorted(t["reason"] for t in traces) == sorted(["kept"] * 3 + list(report.dropped))
    assert all(t["problem"] for t in traces if not t["kept"])
    rows = read_examples(report.train_rows, units_pack.tools())  # the format `decompose train FILE` reads
    assert sorted(r.question for r in rows) == sorted(q.question for q in (questions[0], questions[1], questions[6]))
    kg = next(r for r in rows if "pounds" in r.question)
    assert [(s.tool, s.args) for s in kg.plan.steps] == [("kg_to_pounds", {"kg": "10"})]
    assert kg.tools == ["celsius_to_fahrenheit", "km_to_miles", "kg_to_pounds"] and kg.source == "bootstrap"
    twice, _ = traced(tmp_path / "twice", [questions[0], Question(questions[0].question.upper())])
    assert (twice.questions, twice.traced) == (1, 1)  # a question asked twice is traced once


def test_a_rerun_asks_the_teacher_only_the_new_questions(tmp_path):
    first = [Question("What is 25 degrees Celsius in Fahrenheit?"), Question("How many miles is 5 km?")]
    report, teacher = traced(tmp_path, first)
    assert report.traced == 2 and len(teacher.calls) == 4  # a plan and a synthesis each
    again, teacher = traced(tmp_path, [*first, Question("How many pounds is 3 kg?")])
    assert (again.traced, again.kept, len(teacher.calls)) == (1, 3, 2)
    assert len(Path(again.traces).read_text().splitlines()) == 3
    with Path(again.traces).open("a") as out:  # a run killed mid-line leaves a torn line: that question is asked again
        out.write('{"question": "How many pounds is 9')
    assert traced(tmp_path, [*first, Question("How many pounds is 9 kg?")])[0].traced == 1


def test_the_teacher_writes_varied_questions_once_each():
    replies = ["1. How many miles is 5 km?\n2. how many miles is 5 KM\n- Convert 3 kg to pounds please", "What's 2 km?"]
    teacher = units_pack.ScriptedChatModel(rules=[(r"write \d+ new questions", replies)])
    questions = generate_questions(teacher, units_pack.tools(), 3, examples=["How many miles is 26.2 km?"])
    expected = ["How many miles is 5 km?", "Convert 3 kg to pounds please", "What's 2 km?"]
    assert [q.question for q in questions] == expected
    assert "celsius_to_fahrenheit(celsius)" in teacher.calls[0]["prompt"]
    assert "typos" in teacher.calls[0]["prompt"] and "- How many miles is 26.2 km?" in teacher.calls[0]["prompt"]


def test_a_questions_file_is_checked_line_by_line(tmp_path):
    with pytest.raises(TrainDataError, match="does not exist") as err:
        read_questions(tmp_path / "nope.jsonl")
    assert "--generate" in err.value.hint
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "How many miles is 5 km?", "answer": 3.11}\n\n{"question": "oops"\n')
    with pytest.raises(TrainDataError, match=r"q.jsonl:3 is not JSON"):
        read_questions(bad)
    bad.write_text('{"question": "x", "calls": "km_to_miles"}\n')
    with pytest.raises(TrainDataError, match=r"q.jsonl:1: \"calls\" must be a list"):
        read_questions(bad)
    bad.write_text('{"question": "How many miles is 5 km?", "answer": 3.11}\n')
    assert read_questions(bad) == [Question("How many miles is 5 km?", answer="3.11")]


def boot(tmp_path, *flags):
    return main(["train", "--bootstrap", "--out", str(tmp_path / "out"), *flags])


def test_cli_bootstrap_bad_input_is_named(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "How many miles is 5 km?"}\n')
    pack, ask = ["--tools", f"{PACK}:tools", "--teacher", TEACHER], ["--questions", str(questions)]
    cases = [
        ([*pack], "--questions FILE or --generate N"),
        ([*pack, *ask, "--generate", "3"], "--questions FILE or --generate N"),
        (["--teacher", TEACHER, *ask], "--agent NAME, --tools MODULE:ATTR or --mcp"),
        (["--agent", "no-such-pack", "--teacher", TEACHER, *ask], "unknown agent 'no-such-pack'"),
        (["--tools", "no_such_module:tools", "--teacher", TEACHER, *ask], "no_such_module"),
        (["--tools", f"{PACK}:tools", *ask], "needs a teacher model"),
        (["--tools", f"{PACK}:tools", "--teacher", "scripted:nope.py", *ask], "--teacher scripted:nope.py"),
        ([*pack, "--questions", str(tmp_path / "none.jsonl")], "none.jsonl does not exist"),
    ]
    for flags, message in cases:
        assert boot(tmp_path, *flags) == 2, flags
        assert message in capsys.readouterr().err, flags


def test_cli_bootstrap_writes_traces_and_rows_without_training(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "How many miles is 5 km?", "answer": "3.11"}\n{"question": "broken: 2 kg"}\n')
    flags = ["--tools", f"{PACK}:tools", "--teacher", TEACHER, "--questions", str(questions), "--no-train", "--json"]
    assert boot(tmp_path, *flags) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kept"], report["dropped"], report["train"]) == (1, {"invalid plan": 1}, None)
    assert report["traces"] == str(tmp_path / "out" / "traces.jsonl")
    assert len(read_examples(report["train_rows"], units_pack.tools())) == 1


def test_cli_bootstrap_saves_the_generated_questions_and_reuses_them(tmp_path, capsys):
    flags = ["--tools", f"{PACK}:tools", "--teacher", TEACHER, "--generate", "2", "--no-train", "--json"]
    assert boot(tmp_path, *flags) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == 2
    saved = tmp_path / "out" / "traces-questions.jsonl"
    assert [q.question for q in read_questions(saved)] == ["How many miles is 5 km?", "What is 20 degrees Celsius?"]
    assert boot(tmp_path, *flags) == 0  # the saved questions are enough: none written, none traced again
    assert json.loads(capsys.readouterr().out)["traced"] == 0


def test_cli_bootstrap_refuses_when_every_trace_is_dropped(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "broken: 2 kg"}\n')
    assert boot(tmp_path, "--tools", f"{PACK}:tools", "--teacher", TEACHER, "--questions", str(questions)) == 2
    err = capsys.readouterr().err
    assert "traces were all dropped" in err and "stronger --teacher" in err


# --- a student trained on the traces (the embedded model) ------------------------------------------------------

WORDINGS = {
    "celsius": ["What is {n} degrees Celsius in Fahrenheit?", "convert {n} celsius to fahrenheit pls"],
    "km": ["How many miles is {n} km?", "i ran {n} kilometres today, how many miles is that"],
    "kg": ["How many pounds is {n} kg?", "my suitcase weighs {n} kilos, what's that in pounds"],
}


def unit_questions(count: int, seed: int) -> list[Question]:
    import random

    rng, units, questions = random.Random(seed), list(WORDINGS), {}
    while len(questions) < count:
        text = rng.choice(WORDINGS[units[len(questions) % 3]]).format(n=rng.randint(2, 300))
        questions[text] = Question(text)
    return list(questions.values())


@pytest.mark.slow  # trains three steps of the embedded model on the CPU (minutes on a busy 2-core machine)
@pytest.mark.model
def test_a_student_trained_on_bootstrapped_traces_learns_the_new_packs_plans(tmp_path):
    """What a few CPU steps can show: the traces train the student through the usual LoRA path on tools it never
    saw, are scored on held-out traces with those tools, and the student finds a held-out question's gold plan
    (the teacher's, for a question not trained on) likelier than the base model does. (Planning it right by
    greedy decoding takes more steps than a test can afford: 4 steps gave no tool call.)"""
    import torch

    from decompose.models import load_model
    from decompose.train.sft import encode, train

    report, _ = traced(tmp_path, unit_questions(50, seed=0))
    assert (report.kept, report.dropped) == (50, {})
    trained = train(
        report.train_rows,
        out=tmp_path / "student",
        tools=units_pack.tools(),
        held_out_fraction=0.04,  # two traces, scored by the usual held-out scorer
        max_steps=3,
        batch_size=2,
        learning_rate=3e-3,
        progress=False,
    )
    assert trained.steps == 3 and trained.examples == 48 and trained.scores.rows == 2
    scored = [json.loads(line) for line in (tmp_path / "student" / "held_out_plans.jsonl").read_text().splitlines()]
    assert all(row["gold"][0]["tool"] in {t.name for t in units_pack.tools()} for row in scored)

    held_out, _ = traced(tmp_path / "held-out", [Question("How many miles is 42 km?")])
    (example,) = held_out.examples
    known = {t.name: t for t in units_pack.tools()}
    base, student = load_model("smollm2", adapter="none"), load_model("smollm2", adapter=str(tmp_path / "student"))

    def plan_loss(model) -> float:
        row = encode(example, base.tokenizer, known, max_length=1024)
        with torch.no_grad():
            out = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]]))
        return out.loss.item()

    assert plan_loss(student.planner.hf_model) < 0.8 * plan_loss(base.hf_model)


def test_an_openai_teacher_gets_the_timeout_asked_for(monkeypatch):
    from decompose.train.bootstrap import load_teacher

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert load_teacher("openai:teacher", timeout=900).request_timeout.read == 900
    assert load_teacher(TEACHER, timeout=900).calls == []  # other specs take no options: the timeout is theirs
