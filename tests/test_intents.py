"""Intent recognition and routing: the zero-shot router (scripted replies), the trained router (the real embedded
model), `decompose train --intents`, and a routed Conversation / `decompose chat`."""

import io
import json
import re
import sys

import pytest
from fault_server import ok, status
from helpers import plan_json
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from decompose import ConfigError, RetryPolicy, ScriptedChatModel
from decompose.agents import agent_routing, build_agent
from decompose.cli.app import main
from decompose.conversation import Conversation
from decompose.events import IntentDetected
from decompose.intents import IntentRouter, TrainedRouter, parse_intent
from decompose.models.openai import load_openai
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.routing import CUSTOMER_SERVICE_ROUTES, IntentRouting

INTENTS = ["card_arrival", "request_refund", "transfer_timing"]
FAST = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.05, jitter=0, max_total=5)


def asks_intent(messages):
    return "sort customer messages by intent" in messages[0].content


def intent_model(reply):
    """A chat model that answers the router's question with `reply` (a string or a function of the messages)."""
    return ScriptedChatModel(rules=[(asks_intent, reply)], default="?")


# ----- zero-shot --------------------------------------------------------------------------------------------


def test_zero_shot_takes_the_named_intent_and_shows_the_model_every_name():
    model = intent_model("request_refund")
    router = IntentRouter.zero_shot(model, INTENTS)
    found = router.classify("I want my money back")
    assert (found.intent, found.confidence, found.error) == ("request_refund", None, None)
    assert found.router == "zero-shot:scripted"
    prompt = model.calls[0]["prompt"]
    assert all(f"- {name}" in prompt for name in INTENTS) and "I want my money back" in prompt


@pytest.mark.parametrize(
    "reply, intent",
    [
        ('{"intent": "Transfer Timing"}', "transfer_timing"),  # JSON, other spelling
        ("The intent is: card_arrival.", "card_arrival"),  # a sentence naming it
        ("`request-refund`", "request_refund"),
    ],
)
def test_zero_shot_reads_a_free_text_reply(reply, intent):
    assert IntentRouter.zero_shot(intent_model(reply), INTENTS).classify("x").intent == intent


@pytest.mark.parametrize("reply", ["pizza_delivery", '{"intent": ', "", "card"])
def test_an_unknown_or_malformed_reply_gives_the_fallback_intent_not_a_crash(reply):
    found = IntentRouter.zero_shot(intent_model(reply), INTENTS).classify("where is it")
    assert found.intent == "other" and found.confidence == 0.0
    assert "named no known intent" in found.error


def test_a_failing_model_is_retried_then_gives_the_fallback_intent_with_the_reason():
    model = intent_model(ConnectionError("server down"))
    found = IntentRouter.zero_shot(model, INTENTS, retry=FAST).classify("hi")
    assert found.intent == "other" and found.confidence == 0.0
    assert "connection lost" in found.error and "(after 2 attempts)" in found.error
    assert len(model.calls) == 2


@pytest.mark.server
@pytest.mark.parametrize(
    "first, intent, error, hits",
    [
        (status(503), "request_refund", None, 2),  # unavailable: asked again
        (status(401), "other", "HTTP 401", 1),  # refused: not retried, the fallback intent says why
    ],
)
def test_zero_shot_calls_a_real_server_under_the_retry_policy(fault, first, intent, error, hits):
    fault.queue(first, ok('{"intent": "request_refund"}'))
    model = load_openai("router", base_url=fault.base_url, api_key="k", timeout=2.0)
    found = IntentRouter.zero_shot(model, INTENTS, retry=FAST).classify("I want my money back")
    assert found.intent == intent and len(fault.hits) == hits
    assert found.error is None if error is None else error in found.error


class StructuredModel(ScriptedChatModel):
    """A model with structured output: records the schema and returns `parsed` (None: it failed to parse)."""

    def with_structured_output(self, schema, *, include_raw=False, method=None, **kwargs):
        self.__dict__["schema_seen"] = (schema, method, include_raw)
        return RunnableLambda(
            lambda msgs: {
                "parsed": self.__dict__["parsed"],
                "raw": AIMessage(content=self.__dict__["raw"]),
                "parsing_error": None,
            }
        )


def test_structured_output_is_asked_with_an_enum_of_the_intent_names():
    model = StructuredModel()
    model.__dict__.update(parsed={"intent": "transfer_timing"}, raw='{"intent": "transfer_timing"}')
    router = IntentRouter.zero_shot(model, INTENTS)
    assert router.classify("how long does a transfer take").intent == "transfer_timing"
    schema, method, include_raw = model.__dict__["schema_seen"]
    assert schema["properties"]["intent"]["enum"] == INTENTS + ["other"]  # "none of these" is a choice
    assert method == "json_schema" and include_raw
    # a reply that did not parse under the schema is still read; one naming nothing falls back
    model.__dict__.update(parsed=None, raw="card_arrival, I think")
    assert router.classify("x").intent == "card_arrival"
    model.__dict__.update(parsed={"intent": "not_a_name"}, raw="not_a_name")
    assert router.classify("x").intent == "other"


def test_parse_intent_prefers_the_longest_name_and_refuses_part_of_a_word():
    names = ["card", "card_arrival", "top_up"]
    assert parse_intent("it is card_arrival", names) == "card_arrival"
    assert parse_intent("cardigan", names) is None
    with pytest.raises(ConfigError, match="two or more distinct"):
        IntentRouter.zero_shot(intent_model("x"), ["only_one"])


# ----- routing ----------------------------------------------------------------------------------------------


def test_customer_service_routes_group_banking77_intents():
    routing = IntentRouting(IntentRouter.zero_shot(intent_model("x"), INTENTS), CUSTOMER_SERVICE_ROUTES)
    groups = {
        name: routing.route_for(name).name
        for name in (
            "request_refund",
            "Refund_not_showing_up",
            "transaction_charged_twice",
            "top_up_by_card_charge",
            "balance_not_updated_after_bank_transfer",
            "transfer_timing",
            "declined_transfer",
            "card_arrival",
            "pin_blocked",
            "exchange_rate",
            "refunds",
            "card_issues",
            "other",
        )
    }
    assert groups == {
        "request_refund": "refunds",
        "Refund_not_showing_up": "refunds",
        "transaction_charged_twice": "refunds",
        "top_up_by_card_charge": "balance_top_up",
        "balance_not_updated_after_bank_transfer": "balance_top_up",
        "transfer_timing": "transfers",
        "declined_transfer": "transfers",
        "card_arrival": "card_issues",
        "pin_blocked": "card_issues",
        "exchange_rate": "other",
        "refunds": "refunds",
        "card_issues": "card_issues",
        "other": "other",
    }


def routed_model():
    """Routes by a word in the message; plans one step; the planner prompt is recorded in `calls`."""

    def intent(messages):
        text = messages[-1].content.lower()
        return "request_refund" if "refund" in text else "card_arrival" if "card" in text else "exchange_rate"

    return ScriptedChatModel(
        rules=[
            (asks_intent, intent),
            (asks_for_plan, plan_json("What does the customer need?")),
            (asks_to_combine, "Done."),
        ],
        default="noted",
    )


def planner_prompts(model):
    return [c["prompt"] for c in model.calls if "sort customer messages" not in c["prompt"] and "JSON" in c["prompt"]]


def offered(prompt):
    """The tools the planner prompt lists (one `- name(args): ...` line each)."""
    return set(re.findall(r"^- (\w+)\(", prompt, flags=re.M))


def test_a_routed_conversation_turn_gets_its_routes_tools_and_instructions(tmp_path):
    model = routed_model()
    agent = build_agent("customer-service", model, db_path=tmp_path / "shop.sqlite3")
    router = IntentRouter.zero_shot(model, ["request_refund", "card_arrival", "exchange_rate"])
    chat = Conversation(agent, routing=agent_routing("customer-service", router))
    seen = []

    result = chat.send("Please refund my kettle", on_event=seen.append)
    assert isinstance(seen[0], IntentDetected) and result.events[0] is seen[0]
    assert (seen[0].intent, seen[0].route, seen[0].router) == ("request_refund", "refunds", "zero-shot:scripted")
    refund_prompt = planner_prompts(model)[-1]
    assert "Worked plan: find_customer (by email)" in refund_prompt and "customer-service agent" in refund_prompt
    assert offered(refund_prompt) == {
        "find_customer",
        "list_orders",
        "order_status",
        "refund_eligibility",
        "issue_refund",
        "search_policy",
        "calculator",
    }

    result = chat.send("My card has not arrived")
    assert result.events[0].route == "card_issues"
    card_prompt = planner_prompts(model)[-1]
    assert "The tools cannot change a card" in card_prompt
    assert offered(card_prompt) == {"find_customer", "search_policy", "open_ticket"}
    assert "Please refund my kettle" in card_prompt  # the conversation's history goes along

    chat.send("What is the euro rate?")  # the catch-all route: the agent as it is, every tool
    other_prompt = planner_prompts(model)[-1]
    assert "Worked plan" not in other_prompt and len(offered(other_prompt)) == 8


def test_without_a_router_a_turn_is_unchanged(tmp_path):
    model = routed_model()
    chat = Conversation(build_agent("customer-service", model, db_path=tmp_path / "shop.sqlite3"))
    result = chat.send("Please refund my kettle")
    assert not any(isinstance(e, IntentDetected) for e in result.events)
    assert not any(asks_intent([AIMessage(content=c["prompt"])]) for c in model.calls)
    assert "Worked plan" not in planner_prompts(model)[0]


def test_a_router_that_raises_sends_the_turn_on_unrouted(tmp_path):
    class Broken(IntentRouter):
        intents, name = ["a", "b"], "broken"

        def classify_many(self, texts):
            raise RuntimeError("no vectors")

    model = routed_model()
    agent = build_agent("customer-service", model, db_path=tmp_path / "shop.sqlite3")
    result = Conversation(agent, routing=agent_routing("customer-service", Broken())).send("Please refund it")
    event = result.events[0]
    assert (event.intent, event.route, event.error) == ("other", "other", "RuntimeError: no vectors")
    assert result.answer is not None


# ----- the CLI ----------------------------------------------------------------------------------------------


def test_decompose_chat_shows_the_intent_of_each_turn(tmp_path, monkeypatch, capsys):
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine\n"
        "model = ScriptedChatModel(rules=[\n"
        "    (lambda m: 'sort customer messages' in m[0].content, 'refunds'),\n"
        '    (asks_for_plan, \'{"steps": [{"id": 1, "question": "What is owed?"}]}\'),\n'
        "    (asks_to_combine, 'Refunded.'),\n"
        "], default='noted')\n"
    )
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("I want my money back\n"))
    code = main(["chat", "--model", f"scripted:{rules}", "--agent", "customer-service", "--intents", "zero-shot"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "intent: refunds (zero-shot:scripted)" in out + err
    assert "Answer: Refunded." in out


def test_decompose_chat_zero_shot_without_names_says_how_to_give_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    rules = tmp_path / "rules.py"
    rules.write_text("from decompose.models.scripted import ScriptedChatModel\nmodel = ScriptedChatModel()\n")
    assert main(["chat", "--model", f"scripted:{rules}", "--intents", "zero-shot"]) == 2
    assert "zero-shot:NAME,NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, problem",
    [
        ("text,label_name\nhello,greet\n", "has no category column"),
        ("text,category\nhello,greet\n,refund\n", "line 3: no text"),
        ("text,category\nhello,greet\nhi,greet\n", "1 intent(s); a router needs two or more"),
    ],
)
def test_train_intents_names_what_is_wrong_with_the_csv(tmp_path, capsys, content, problem):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["train", "--intents", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert problem in err and "text,category" in err  # the fix: the expected header
    assert not (tmp_path / "r").exists()


def test_train_intents_on_a_missing_file(tmp_path, capsys):
    assert main(["train", "--intents", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err


def test_loading_a_folder_that_is_not_a_router_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="is not an intent router") as info:
        IntentRouter.load(tmp_path)
    assert "decompose train --intents" in info.value.hint


# ----- the trained router, on the real embedded model ---------------------------------------------------------

SYNTHETIC = {
    "card_arrival": [
        "My card still has not arrived",
        "When will my new card be delivered?",
        "I ordered a card two weeks ago and it never came",
        "Where is my card? It hasn't shown up",
        "How long does card delivery take?",
        "The card you sent me hasn't arrived yet",
    ],
    "request_refund": [
        "I want a refund for this purchase",
        "Please give me my money back",
        "Can I get a refund on my order?",
        "Refund the payment, the item was broken",
        "How do I ask for a refund?",
        "I returned it, where is my refund?",
    ],
    "greeting": [
        "Hello there!",
        "Hi, good morning",
        "Hey, how are you?",
        "Good evening to you",
        "Hi! Nice to meet you",
        "Hello, anyone there?",
    ],
}
HELD_OUT = [
    ("My card hasn't come in the post yet", "card_arrival"),
    ("I'd like my money refunded", "request_refund"),
    ("Hello, good afternoon", "greeting"),
]


@pytest.fixture(scope="module")
def embedded():
    from decompose.intents import base_model

    return base_model("smollm2")  # what a router trained on "smollm2" takes its vectors from


@pytest.mark.model
@pytest.mark.slow
def test_trained_router_learns_a_small_intent_set_and_survives_save_and_load(embedded, tmp_path):
    import numpy as np

    from decompose.intents import SentenceEncoder
    from decompose.train.intents import fit_router

    texts = [t for ts in SYNTHETIC.values() for t in ts]
    labels = [i for i, ts in SYNTHETIC.items() for _ in ts]
    encoder = SentenceEncoder(embedded)
    # batching and padding change nothing: one text alone has the vector it has in a batch of longer ones
    together = encoder.encode(texts[:7])
    assert np.allclose(encoder.encode([texts[6]])[0], together[6], atol=1e-4)

    router, stats = fit_router(texts, labels, encoder=encoder)
    assert stats["train_accuracy"] == 1.0 and sorted(router.intents) == sorted(SYNTHETIC)
    found = router.classify_many([t for t, _ in HELD_OUT])
    assert [f.intent for f in found] == [i for _, i in HELD_OUT]
    assert all(0.34 < f.confidence <= 1.0 for f in found) and found[0].router.startswith("trained:")

    router.save(tmp_path / "router")
    info = json.loads((tmp_path / "router" / "intent_router.json").read_text())
    assert info["intents"] == router.intents and info["format"] == "decompose-intent-router"
    again = IntentRouter.load(tmp_path / "router", model=embedded)
    assert isinstance(again, TrainedRouter)
    assert np.allclose(
        again.probabilities([t for t, _ in HELD_OUT]), router.probabilities([t for t, _ in HELD_OUT]), atol=1e-5
    )
    unsure = IntentRouter.load(tmp_path / "router", model=embedded, min_confidence=1.01).classify("Hello there!")
    assert unsure.intent == "other" and "below min_confidence" in unsure.error


@pytest.mark.model
@pytest.mark.slow
def test_decompose_train_intents_writes_a_router_that_loads(embedded, tmp_path, capsys):
    csv_path = tmp_path / "tiny.csv"
    rows = ["text,category"] + [f'"{t}",{i}' for i, ts in SYNTHETIC.items() for t in ts]
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "router"
    assert main(["train", "--intents", str(csv_path), "--per-intent", "4", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["intents"], report["per_intent"]) == (12, 3, 4)
    info = json.loads((out / "intent_router.json").read_text())
    assert info["model"] == "smollm2" and info["trained_on"]["per_intent"] == 4
    router = IntentRouter.load(out, model=embedded)
    assert router.classify("Hi, good morning").intent == "greeting"
