"""Training data: the converters on fixed rows, the synthetic templates, row checks and the compact prompt."""

import json

import pytest

from decompose.chains.decompose import trained_prompt
from decompose.errors import ConfigError
from decompose.plan import Plan
from decompose.tools.calculator import calculator_tools
from decompose.tools.cs_seed import demo_customers, demo_order_ids
from decompose.train.convert import gsm8k_example, strategyqa_example
from decompose.train.data import TrainDataError, check_row, pack_tools, read_examples, tool_set
from decompose.train.dataset import build_dataset
from decompose.train.prompt import PROMPT_NAME, compact_messages, compact_prompt, plan_target, tool_signature
from decompose.train.score import spread
from decompose.train.templates import TEMPLATES, Draws, synthetic_examples

NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
GENGHIS = {
    "question": "Are more people today related to Genghis Khan than Julius Caesar?",
    "decomposition": [
        "How many kids did Julius Caesar have?",
        "How many kids did Genghis Khan have?",
        "Is #2 greater than #1?",
    ],
}


def row(**overrides):
    base = {
        "question": "What do 3 pens at 2 dollars cost?",
        "tools": ["calculator"],
        "plan": {"steps": [{"id": 1, "question": "3 * 2?", "tool": "calculator", "args": {"expression": "3 * 2"}}]},
    }
    return {**base, **overrides}


def test_gsm8k_calculations_become_calculator_steps_with_references():
    example = gsm8k_example(NATALIA)
    steps = example.plan.spec()["steps"]
    assert [(s["tool"], s["args"]) for s in steps] == [
        ("calculator", {"expression": "48/2"}),
        ("calculator", {"expression": "48+{1}"}),
    ]
    assert steps[1]["depends_on"] == [1] and example.tools == ["calculator"]
    assert "24" not in steps[0]["question"]  # the result it computes is not given away in its question


def test_gsm8k_number_of_the_question_stays_literal_even_when_a_step_gives_it():
    row = {
        "question": "Tom has 6 apples and 3 pears. He doubles the pears.",
        "answer": "Pears: 3*2=<<3*2=6>>6.\nAll: 6+6=<<6+6=12>>12.\n#### 12",
    }
    assert gsm8k_example(row).plan.steps[1].args == {"expression": "6+6"}


@pytest.mark.parametrize(
    "answer",
    [
        "Wrong: 2+2=<<2+2=5>>5.\n#### 5",  # the calculator disagrees with the annotation
        "No calculation here.\n#### 4",
        "Half: 8/2=<<8/2=4>>4.\n#### 5",  # the last result is not the final answer
    ],
)
def test_gsm8k_rows_the_calculator_cannot_reproduce_are_left_out(answer):
    assert gsm8k_example({"question": "q?", "answer": answer}) is None


def test_strategyqa_hash_references_become_braces():
    plan = strategyqa_example(GENGHIS).plan
    assert plan.steps[2].question == "Is {2} greater than {1}?" and plan.steps[2].depends_on == [1, 2]
    assert all(s.tool is None for s in plan.steps)


def test_strategyqa_reference_to_a_missing_step_is_left_out():
    assert strategyqa_example({"question": "q?", "decomposition": ["Who?", "What is #3?"]}) is None
    assert strategyqa_example({"question": "q?", "decomposition": []}) is None


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_every_synthetic_plan_is_valid_with_valid_tool_arguments(template):
    known, rng = pack_tools(), Draws(3, shop_share=0.5)
    for _ in range(10):
        example = template.example(rng)
        checked = check_row(json.loads(json.dumps(example.to_row())), known)  # as read back from JSONL
        assert checked.tools == list(tool_set(template.pack))
        assert any(s.tool for s in checked.plan.steps)


def test_templates_vary_wording_and_values_and_hold_out_their_own_templates():
    train = {t.name for t in TEMPLATES if not t.held_out}
    held = {t.name for t in TEMPLATES if t.held_out}
    assert held and not train & held
    assert {t.pack for t in TEMPLATES if t.held_out} == {"calculator", "finance", "customer-service"}
    questions = [e.question for e in synthetic_examples(20, seed=1)]
    assert len(set(questions)) > 0.9 * len(questions)
    assert not set(questions) & {e.question for e in synthetic_examples(20, held_out=True, seed=1)}


def test_held_out_customers_and_orders_are_the_demo_shops_so_answers_can_be_checked():
    emails = {email for _, email, _ in demo_customers()}
    orders = set(demo_order_ids())

    def ids(examples):
        found = {"customer": set(), "email": set(), "order_id": set()}
        for example in examples:
            for step in example.plan.steps:
                for key, value in step.args.items():
                    if key in found and "{" not in str(value):
                        found[key].add(value)
        return found["customer"] | found["email"], found["order_id"]

    held_emails, held_orders = ids(synthetic_examples(10, seed=2, shop_share=1.0))
    assert held_emails and held_emails <= emails and held_orders and held_orders <= orders
    train_emails, train_orders = ids(synthetic_examples(10, seed=2))
    assert train_emails & emails and train_emails - emails  # half the shop's, half made up: ids are copied
    assert train_orders & orders and train_orders - orders


def test_a_score_limit_spreads_over_the_file():
    rows = list(range(100))
    assert spread(rows, 10) == list(range(0, 100, 10))
    assert spread(rows, None) == rows and spread(rows[:5], 10) == rows[:5] and spread(rows, 0) == []


def test_synthetic_examples_are_reproducible_from_the_seed():
    first = [e.to_row() for e in synthetic_examples(2, seed=7)]
    assert first == [e.to_row() for e in synthetic_examples(2, seed=7)]
    assert first != [e.to_row() for e in synthetic_examples(2, seed=8)]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"plan": {"steps": []}}, "question"),
        (row(tools=["teleport"]), "unknown tool 'teleport'"),
        (row(plan={"steps": [{"id": 1, "question": "a", "depends_on": [2]}]}), "does not exist"),
        (row(plan={"steps": [{"id": 1, "question": "a", "tool": "calculator", "args": {"expr": "1"}}]}), "'expr'"),
        (row(tools=[]), 'not in the row\'s "tools"'),
    ],
)
def test_a_bad_row_is_named_with_a_fix(bad, message):
    with pytest.raises(TrainDataError, match=message) as err:
        check_row(bad, pack_tools(), where="data.jsonl:3")
    assert str(err.value).startswith("data.jsonl:3") and err.value.hint
    assert isinstance(err.value, ConfigError)  # the CLI exits with the usage code


def test_references_stand_in_for_values_the_arguments_need():
    plan = {
        "steps": [
            {"id": 1, "question": "a", "tool": "calculator", "args": {"expression": "2"}},
            {
                "id": 2,
                "question": "b",
                "tool": "currency_convert",
                "args": {"amount": "{1}", "from_currency": "USD", "to_currency": "EUR"},
            },
        ]
    }
    assert check_row(row(plan=plan, tools=["calculator", "currency_convert"]), pack_tools()).plan.steps[
        1
    ].depends_on == [1]


def test_read_examples_errors(tmp_path):
    with pytest.raises(TrainDataError, match="does not exist") as err:
        read_examples(tmp_path / "missing.jsonl")
    assert "--build-data" in err.value.hint
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TrainDataError, match="holds no rows"):
        read_examples(tmp_path / "empty.jsonl")
    (tmp_path / "broken.jsonl").write_text(json.dumps(row()) + "\n{not json\n")
    with pytest.raises(TrainDataError, match=r"broken.jsonl:2 is not JSON"):
        read_examples(tmp_path / "broken.jsonl")


def test_read_examples_accepts_extra_tools(tmp_path):
    from langchain_core.tools import tool

    @tool
    def stock_level(sku: str) -> int:
        """Units of `sku` on the shelf."""
        return 3

    plan = {"steps": [{"id": 1, "question": "How many?", "tool": "stock_level", "args": {"sku": "KET-01"}}]}
    (tmp_path / "shop.jsonl").write_text(json.dumps(row(plan=plan, tools=["stock_level"])) + "\n")
    assert read_examples(tmp_path / "shop.jsonl", tools=[stock_level])[0].tools == ["stock_level"]


def test_build_dataset_splits_sources_and_templates(tmp_path):
    source = tmp_path / "train"
    source.mkdir()
    (source / "gsm8k_train.jsonl").write_text("\n".join(json.dumps(NATALIA) for _ in range(4)) + "\n")
    (source / "strategyqa_train.jsonl").write_text("\n".join(json.dumps(GENGHIS) for _ in range(4)) + "\n")
    built = build_dataset(source, tmp_path / "out", synthetic=2, held_out_every=2)
    train, held = read_examples(built.train), read_examples(built.held_out)
    assert (built.train_rows, built.held_out_rows) == (len(train), len(held))
    held_questions = {e.question for e in held}
    assert NATALIA["question"] in held_questions and GENGHIS["question"] in held_questions  # every 2nd row
    assert sum(e.question == NATALIA["question"] for e in train) == 2
    with pytest.raises(TrainDataError, match="has no gsm8k_train.jsonl"):
        build_dataset(tmp_path / "out", tmp_path / "x")


def test_compact_prompt_is_one_and_the_same_for_training_and_inference():
    tools = calculator_tools()
    trained = compact_prompt(tools).format_messages(
        question="What is 2 + {1}?", max_steps=5, tool_rules="x", tool_examples=[], history=[], repair=[]
    )
    assert trained == compact_messages("What is 2 + {1}?", tools)
    assert [m.type for m in trained] == ["system", "human"] and "calculator(expression)" in trained[0].content


def test_tool_signature_marks_optional_arguments():
    tools = pack_tools()
    assert tool_signature(tools["calculator"]) == "calculator(expression)"
    assert tool_signature(tools["open_ticket"]) == "open_ticket(customer, subject, body, order_id?)"  # no injected key


def test_plan_target_is_the_compact_json_a_grammar_writes():
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "a"},
                {"id": 2, "question": "b {1}", "tool": "calculator", "args": {"expression": "{1}"}},
            ]
        }
    )
    assert plan_target(plan) == (
        '{"steps":[{"id":1,"question":"a","depends_on":[]},{"id":2,"question":"b {1}",'
        '"depends_on":[1],"tool":"calculator","args":{"expression":"{1}"}}]}'
    )


def test_trained_prompt_only_for_a_model_with_a_decomposer_adapter():
    from decompose.models.scripted import ScriptedChatModel

    class Trained(ScriptedChatModel):
        plan_prompt: str | None = PROMPT_NAME

    tools = calculator_tools()
    assert trained_prompt([ScriptedChatModel()], tools) is None
    assert trained_prompt([Trained()], tools) is not None
    assert trained_prompt([Trained().bind(temperature=0)], tools) is not None  # through a binding too
