"""`decompose train`: prompt/label encoding, adapters, the Decomposer hook, clear errors, and a real tiny run."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: everything loads from disk

import json
from pathlib import Path

import pytest
from langchain_core.messages import SystemMessage

from decompose.cli.app import main
from decompose.errors import ConfigError
from decompose.models import load_model
from decompose.models.adapter import INFO_FILE, adapter_info
from decompose.models.scripted import ScriptedChatModel
from decompose.orchestrator import Orchestrator
from decompose.tools.calculator import calculator_tools
from decompose.train.data import TrainDataError, pack_tools, read_examples
from decompose.train.prompt import COMPACT_SYSTEM, PROMPT_NAME, compact_messages, plan_target

ROWS = [
    {
        "question": f"What do {n} pens at {p} dollars cost?",
        "tools": ["calculator"],
        "plan": {
            "steps": [
                {"id": 1, "question": f"What is {n} * {p}?", "tool": "calculator", "args": {"expression": f"{n} * {p}"}}
            ]
        },
    }
    for n, p in [(3, 2), (4, 5), (6, 7), (2, 9), (5, 3), (8, 4)]
]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class CharTokenizer:
    """A tokenizer without a chat template: one id per character, 0 as the end token."""

    chat_template = None
    eos_token_id = 0
    pad_token_id = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


@pytest.mark.slow  # imports torch, transformers and peft (seconds)
def test_labels_cover_only_the_plan_and_its_end_token(tmp_path):
    from decompose.train.sft import IGNORE, encode

    example = read_examples(write_rows(tmp_path / "d.jsonl", ROWS[:1]))[0]
    row = encode(example, CharTokenizer(), pack_tools(), max_length=10_000)
    prompt_length = row["labels"].count(IGNORE)
    from decompose.models.hf import chat_prompt_ids

    assert row["input_ids"][:prompt_length] == chat_prompt_ids(
        CharTokenizer(), compact_messages(example.question, calculator_tools())
    )  # the inference prompt, exactly
    plan = row["labels"][prompt_length:]
    assert "".join(map(chr, plan[:-1])) == plan_target(example.plan) and plan[-1] == 0
    assert encode(example, CharTokenizer(), pack_tools(), max_length=prompt_length) is None  # too long: left out


@pytest.mark.slow  # imports torch, transformers and peft (seconds)
def test_collator_pads_on_the_right_and_ignores_the_padding():
    from decompose.train.sft import IGNORE, Collator

    batch = Collator(pad_id=7)([{"input_ids": [1, 2, 3], "labels": [IGNORE, 2, 3]}, {"input_ids": [4], "labels": [4]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_decomposer_asks_a_trained_model_with_the_compact_prompt():
    class Trained(ScriptedChatModel):
        plan_prompt: str | None = PROMPT_NAME

    plan = '{"steps":[{"id":1,"question":"3 * 2?","tool":"calculator","args":{"expression":"3 * 2"}}]}'
    model = Trained(rules=[(lambda msgs: msgs[0].content.startswith(COMPACT_SYSTEM), plan)], default="6")
    result = Orchestrator(model, tools=calculator_tools()).run("What do 3 pens at 2 dollars cost?")
    assert result.plan.steps[0].answer == 6
    first = model.calls[0]["prompt"]
    assert "calculator(expression)" in first and "Rules:" not in first  # no long rules, no worked examples


def test_the_planner_writes_the_plan_and_the_base_model_answers():
    class Planner(ScriptedChatModel):
        plan_prompt: str | None = PROMPT_NAME

    class WithPlanner(ScriptedChatModel):
        planner: Planner | None = None  # as a local model loaded with a decomposer adapter carries it

    plan = (
        '{"steps":[{"id":1,"question":"Who directed Titanic?"},'
        '{"id":2,"question":"When was {1} born?","depends_on":[1]}]}'
    )
    planner = Planner(rules=[(lambda msgs: msgs[0].content.startswith(COMPACT_SYSTEM), plan)], default="no")
    model = WithPlanner(
        rules=[("When was James Cameron born", "1954"), ("Who directed", "James Cameron")],
        default="Answer: 1954",
        planner=planner,
    )
    result = Orchestrator(model).run("When was the director of Titanic born?")
    assert [s.answer for s in result.plan.steps] == ["James Cameron", "1954"]
    assert len(planner.calls) == 1  # the plan only: no step or synthesis reaches the adapter
    assert not any(COMPACT_SYSTEM in c["prompt"] for c in model.calls) and len(model.calls) == 3


@pytest.mark.slow  # imports torch, transformers and peft (seconds)
def test_train_errors_name_the_file_and_the_fix(tmp_path):
    from decompose.train.sft import train

    with pytest.raises(TrainDataError, match="does not exist"):
        train(tmp_path / "missing.jsonl", out=tmp_path / "a")
    bad = write_rows(tmp_path / "bad.jsonl", [ROWS[0], {"question": "q", "plan": {"steps": "no"}}])
    with pytest.raises(TrainDataError, match=r"bad.jsonl:2: .*must be a list"):
        train(bad, out=tmp_path / "a")


def test_a_missing_or_wrong_adapter_folder_fails_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as err:
        adapter_info(tmp_path / "nope")
    assert "decompose train" in err.value.hint
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        adapter_info(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # a model folder: the adapter is checked before the weights load
    with pytest.raises(ConfigError, match="adapter folder .* does not exist"):
        load_model(f"hf:{model}", adapter=str(tmp_path / "nope"))


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "scripted:rules.py"])
def test_an_adapter_needs_a_local_model(spec, tmp_path):
    with pytest.raises(ConfigError, match="an adapter needs a local model"):
        load_model(spec, adapter=str(tmp_path))


def test_cli_train_without_a_file_is_a_usage_error(capsys):
    assert main(["train"]) == 2
    assert "needs a training file" in capsys.readouterr().err


def test_cli_run_with_a_missing_adapter_is_a_usage_error(tmp_path, capsys):
    assert main(["run", "--adapter", str(tmp_path / "nope"), "hi"]) == 2
    assert "adapter folder" in capsys.readouterr().err


def test_cli_build_data_writes_both_files(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "gsm8k_train.jsonl").write_text("")
    (source / "strategyqa_train.jsonl").write_text("")
    assert main(["train", "--build-data", str(source), "--out", str(tmp_path / "data"), "--synthetic", "1"]) == 0
    assert "heldout.jsonl" in capsys.readouterr().out
    assert read_examples(tmp_path / "data" / "train.jsonl") and read_examples(tmp_path / "data" / "heldout.jsonl")


# --- a real run on the embedded model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(cache_dir, tmp_path_factory):
    """Two steps on four rows, two held out and scored; checkpoints every step."""
    from decompose.train.sft import train

    folder = tmp_path_factory.mktemp("train")
    data = write_rows(folder / "train.jsonl", ROWS)
    report = train(
        data,
        out=folder / "adapter",
        held_out_fraction=1 / 3,
        max_steps=2,
        batch_size=2,
        learning_rate=1e-3,
        save_steps=1,
        progress=False,
    )
    return data, folder / "adapter", report


@pytest.mark.slow
@pytest.mark.model
def test_tiny_run_writes_an_adapter_and_scores_the_held_out_rows(trained):
    _, adapter, report = trained
    assert report.steps == 2 and report.examples == 4 and report.tokens_per_s > 0
    assert report.first_loss is not None and report.last_loss is not None
    info = json.loads((adapter / INFO_FILE).read_text())
    assert info["prompt"] == PROMPT_NAME and info["base"] == "smollm2"
    scores = json.loads((adapter / "held_out_scores.json").read_text())
    assert scores["rows"] == 2 and 0 <= scores["valid"] <= 1 and scores["tool_rows"] == 2
    assert len((adapter / "held_out_plans.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
@pytest.mark.model
def test_the_adapter_loads_merged_and_changes_the_logits(trained):
    import torch

    _, adapter, _ = trained
    base, tuned = load_model("smollm2", adapter="none"), load_model("smollm2", adapter=str(adapter))
    planner = tuned.planner
    assert base.planner is None and planner.adapter == str(adapter) and planner.plan_prompt == PROMPT_NAME
    messages = compact_messages("What do 7 pens at 3 dollars cost?", calculator_tools())
    ids = torch.tensor([base._prompt_ids(messages)])
    with torch.no_grad():
        before, planned, answered = (m.hf_model(ids).logits for m in (base, planner, tuned))
    assert not torch.allclose(before, planned, atol=1e-4)
    assert torch.equal(before, answered)  # steps and synthesis are answered by the base weights
    assert not any("lora" in name for name, _ in planner.hf_model.named_parameters())  # merged, not wrapped


@pytest.mark.slow
@pytest.mark.model
def test_an_hf_model_folder_takes_the_adapter_too(trained, cache_dir):
    _, adapter, _ = trained
    folder = next((cache_dir / "models").iterdir())  # the embedded model, converted into a Transformers folder
    assert load_model(f"hf:{folder}", adapter=str(adapter)).planner.plan_prompt == PROMPT_NAME
    assert load_model(f"hf:{folder}").planner is None  # no adapter ships for an arbitrary model


@pytest.mark.slow
@pytest.mark.model
def test_an_interrupted_run_resumes_from_its_last_checkpoint(trained):
    from decompose.train.sft import train

    data, adapter, _ = trained
    with pytest.raises(ConfigError, match="checkpoints of an earlier run") as err:
        train(data, out=adapter, max_steps=3, batch_size=2, progress=False)
    assert "--resume" in err.value.hint
    report = train(
        data,
        out=adapter,
        held_out_fraction=1 / 3,
        score_limit=0,
        max_steps=3,
        batch_size=2,
        save_steps=1,
        resume=True,
        progress=False,
    )  # the same split as the first run, not scored
    assert (report.resumed_at, report.steps, report.scores) == (2, 3, None)  # one step more, not three
    assert sorted(p.name for p in (adapter / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]


@pytest.mark.slow
@pytest.mark.model
def test_cli_train_prints_its_report_as_json(trained, tmp_path, capsys):
    data, _, _ = trained
    argv = [
        "train",
        str(data),
        "--out",
        str(tmp_path / "a"),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--held-out-fraction",
        "0",
        "--json",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 1 and report["adapter"] == str(tmp_path / "a") and report["scores"] is None
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()


def test_compact_system_message_lists_the_tools():
    system = compact_messages("q", calculator_tools())[0]
    assert isinstance(system, SystemMessage) and system.content.endswith("Tools: calculator(expression)")


@pytest.mark.slow
@pytest.mark.model
def test_the_shipped_adapter_plans_a_held_out_tool_question_right():
    from decompose.models.adapter import DEFAULT_ADAPTER
    from decompose.train.templates import synthetic_examples

    model = load_model("smollm2")  # the embedded default plans with the shipped adapter
    assert model.planner.adapter == str(DEFAULT_ADAPTER) and model.planner.plan_prompt == PROMPT_NAME
    trained_on = {e.question for e in synthetic_examples(120, seed=0)}  # what the shipped adapter saw
    question = "How much is 35% of 1460 dollars?"
    assert question not in trained_on
    result = Orchestrator(model, tools=calculator_tools()).run(question)
    assert [(s.tool, s.answer) for s in result.plan.steps] == [("calculator", 511)]
    assert "511" in result.answer
    assert load_model("smollm2", adapter="none").planner is None


@pytest.mark.slow
@pytest.mark.model
def test_the_readme_first_command_is_answered_right(capsys):
    """The README's first command, as written there: the embedded default with its shipped adapter."""
    question = "A jacket costs 1460 dollars. How much is 35% of that?"
    assert question in (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert main(["run", "--tools", "decompose.tools.calculator:calculator_tools", "--json", question]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(s["tool"], s["answer"]) for s in result["steps"]] == [("calculator", 511)]
    assert "511" in result["answer"]
