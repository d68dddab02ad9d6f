"""Cost in money: `result.usage.cost` from the price table (shipped, extended by `prices=`), `Limits(max_cost=...)`."""

import json

import pytest
from fault_server import ok
from helpers import TITANIC
from langchain_core.caches import InMemoryCache

from decompose import ConfigError, Limits, Orchestrator, ScriptedChatModel
from decompose.events import Usage
from decompose.models import load_model
from decompose.pricing import SHIPPED, Prices

# A dollar a token in, two out: a run's cost is plain to read from its tokens.
DEAR = {"scripted": (1_000_000, 2_000_000)}


def test_a_run_is_priced_from_the_users_prices(titanic_model):
    usage = Orchestrator(titanic_model, prices=DEAR).run(TITANIC).usage
    assert usage.model_calls == 6 and usage.input_tokens > 0
    assert usage.cost == pytest.approx(usage.input_tokens + 2 * usage.output_tokens)
    assert usage.to_dict()["cost"] == usage.cost


def test_a_local_or_scripted_model_costs_nothing(titanic_model):
    usage = Orchestrator(titanic_model).run(TITANIC).usage
    assert usage.total_tokens > 0 and usage.cost == 0.0


def test_a_shipped_price_prices_a_remote_model_and_an_unknown_one_is_unpriced(fault):
    fault.default = ok("Paris")  # every reply: 5 tokens in, 1 out

    def usage(name):
        model = load_model(f"openai:{name}", base_url=fault.base_url, api_key="k")
        return Orchestrator(model).execute({"steps": [{"id": 1, "question": "Capital of France?"}]}).usage

    input_price, output_price = SHIPPED["gpt-4o-mini"]
    per_call = (5 * input_price + 1 * output_price) / 1_000_000
    priced = usage("gpt-4o-mini")
    assert priced.model_calls == 1 and priced.cost == pytest.approx(per_call)
    assert usage("gpt-4o-mini-2024-07-18").cost == pytest.approx(per_call)  # a dated name: its model's price
    assert usage("my-own-model").cost is None  # not 0: nobody knows what it cost


def test_one_unpriced_call_makes_the_whole_cost_unknown():
    usage = Usage()
    usage.add("decompose", None, cost=0.5)
    usage.add("solve", None, cost=None)
    usage.add("synthesize", None, cost=0.5)
    assert usage.cost is None and usage.to_dict()["cost"] is None


def test_the_users_price_overrides_the_shipped_one():
    model = ScriptedChatModel(model_name="gpt-4o")
    assert Prices().price_of(model) == (0.0, 0.0)  # a scripted model is never billed...
    assert Prices({"gpt-4o": [1, 2]}).price_of(model) == (1.0, 2.0)  # ...unless the user prices it


def test_max_cost_refuses_the_call_after_the_limit_is_reached(titanic_model):
    tokens = Orchestrator(titanic_model).run(TITANIC).usage.phases["decompose"]
    planning = float(tokens.input + 2 * tokens.output)
    result = Orchestrator(titanic_model, prices=DEAR, limits=Limits(max_cost=planning)).run(TITANIC)
    assert result.usage.model_calls == 1 and result.usage.cost == planning  # nothing spent past the limit
    assert result.answer is None and result.error.startswith(f"cost limit reached: ${planning:.6f} spent")


def test_max_cost_passed_by_a_reply_ends_the_run_with_its_partial_result(titanic_model):
    orch = Orchestrator(titanic_model, prices=DEAR)
    full = orch.run(TITANIC).usage.cost
    result = orch.run(TITANIC, limits=Limits(max_cost=full - 1))  # the synthesis passes it
    assert result.answer is None and "cost limit reached" in result.error
    assert result.plan.step(4).answer == "43"  # the steps done are kept
    assert result.usage.cost == pytest.approx(full)


def test_a_cache_hit_costs_nothing():
    cache, plan = InMemoryCache(), {"steps": [{"id": 1, "question": "Who?"}, {"id": 2, "question": "When?"}]}
    first = Orchestrator(ScriptedChatModel(default="x"), cache=cache, prices=DEAR).execute(plan)
    assert first.usage.model_calls == 3 and first.usage.cost > 0
    model = ScriptedChatModel(default="x")
    again = Orchestrator(model, cache=cache, prices=DEAR, limits=Limits(max_cost=first.usage.cost / 10))
    second = again.execute(plan)
    assert second.error is None and second.usage.cache_hits == 3 and second.usage.cost == 0.0 and model.calls == []


def test_max_cost_with_an_unpriced_model_fails_at_the_start_naming_it(fault):
    model = load_model("openai:my-own-model", base_url=fault.base_url, api_key="k")
    orch = Orchestrator(model, limits=Limits(max_cost=1))
    with pytest.raises(ConfigError, match="max_cost is set but model 'my-own-model' has no price") as caught:
        orch.run("Capital of France?")
    assert "prices=" in caught.value.hint and fault.hits == []  # nothing was sent
    unlimited = orch.replace(limits=Limits()).execute({"steps": [{"id": 1, "question": "Capital of France?"}]})
    assert unlimited.error is None and unlimited.usage.cost is None  # no cost limit: it runs, unpriced


@pytest.mark.parametrize("value", [0, -0.5, "1", True])
def test_max_cost_must_be_a_positive_number(value):
    with pytest.raises(ConfigError, match="Limits.max_cost must be a positive number"):
        Limits(max_cost=value)


@pytest.mark.parametrize(
    "prices",
    [{"m": (1,)}, {"m": (1, -2)}, {"m": "cheap"}, {"m": (1, float("nan"))}, {"m": (True, 1)}, {"": (1, 2)}],
)
def test_a_malformed_price_names_the_entry_and_the_fix(prices):
    name = next(iter(prices))
    with pytest.raises(ConfigError, match=f"price of {name!r} must be two non-negative numbers") as caught:
        Orchestrator(ScriptedChatModel(), prices=prices)
    assert "[input_per_1m, output_per_1m]" in caught.value.hint


def test_a_bad_prices_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read prices file"):
        Orchestrator(ScriptedChatModel(), prices=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        Orchestrator(ScriptedChatModel(), prices=str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="holds a list, not an object"):
        Orchestrator(ScriptedChatModel(), prices=str(tmp_path / "list.json"))
    with pytest.raises(ConfigError, match="prices must be a mapping"):
        Orchestrator(ScriptedChatModel(), prices=[("m", 1, 2)])


@pytest.fixture
def main_in_process(tmp_path, monkeypatch, capsys):
    """`decompose.cli.main(ARGS)` in this process, in tmp_path: (code, stdout, stderr)."""
    from decompose.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "rules.py").write_text(
        "from decompose.models.scripted import ScriptedChatModel, asks_for_plan\n"
        'model = ScriptedChatModel(rules=[(asks_for_plan, \'{"steps": [{"id": 1, "question": "Who?"}]}\')],'
        " default='James Cameron')\n"
    )

    def run(*args):
        code = main(["run", "Who directed Titanic?", "--model", "scripted:rules.py", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_commands_take_prices_and_a_cost_limit(tmp_path, main_in_process):
    (tmp_path / "prices.json").write_text(json.dumps(DEAR))
    code, out, err = main_in_process("--prices", "prices.json", "--json")
    assert code == 0, err
    usage = json.loads(out)["usage"]
    assert usage["cost"] == pytest.approx(usage["input_tokens"] + 2 * usage["output_tokens"])

    code, out, _ = main_in_process("--prices", "prices.json")
    assert code == 0 and f" · ${usage['cost']:,.2f} · " in out.splitlines()[-1]
    assert "$" not in main_in_process()[1].splitlines()[-1]  # a scripted model is free: no cost to show

    code, out, _ = main_in_process("--prices", "prices.json", "--max-cost", "1", "--json")
    result = json.loads(out)
    assert code != 0 and result["error"].startswith("cost limit reached") and result["usage"]["model_calls"] == 1

    (tmp_path / "bad.json").write_text('{"scripted": [1]}')
    code, _, err = main_in_process("--prices", "bad.json")
    assert code != 0 and "price of 'scripted'" in err
    with pytest.raises(SystemExit):
        main_in_process("--max-cost", "-1")


def test_the_summary_line_says_what_a_billed_run_cost_or_that_it_is_unpriced():
    from decompose.cli.output import summary_line
    from decompose.result import Result

    def line(cost):
        return summary_line(Result(question="q", answer="a", plan=None, usage=Usage(cost=cost)))

    assert " · $0.001350 · " in line(0.00135) and " · $12.50 · " in line(12.5)
    assert " · unpriced · " in line(None) and "$" not in line(0.0)
