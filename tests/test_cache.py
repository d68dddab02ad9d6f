"""The model-call cache: a real SQLite file, real models (scripted, and OpenAI's client against a real HTTP server)."""

import json
import sqlite3

import pytest
from fault_server import ok, status
from langchain_core.caches import InMemoryCache
from langchain_core.messages import HumanMessage

from decompose import Orchestrator
from decompose.cache import SQLiteCache
from decompose.call_cache import CachedCall
from decompose.chains.decompose import Decomposer, structured_plan_output
from decompose.errors import ConfigError, ModelError
from decompose.limits import Limits
from decompose.models import load_model
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.retry import RetryPolicy
from decompose.solvers import SelfConsistencySolver

QUESTION = "Who directed Titanic and when was he born?"


def shop_model(**settings):
    return ScriptedChatModel(
        rules=[
            (
                asks_for_plan,
                '{"steps": [{"id": 1, "question": "Who directed Titanic?"}, '
                '{"id": 2, "question": "When was {1} born?"}]}',
            ),
            (asks_to_combine, "James Cameron, born 1954"),
            (r"Who directed", "James Cameron"),
            (r"born", "1954"),
        ],
        **settings,
    )


def test_a_second_run_is_answered_from_the_file_with_no_model_call(tmp_path):
    path = tmp_path / "replies.sqlite"
    first_model, second_model = shop_model(), shop_model()
    first = Orchestrator(first_model, cache=str(path)).run(QUESTION)
    second = Orchestrator(second_model, cache=path).run(QUESTION)  # a new process would see the same file

    assert first.usage.model_calls == 4 and first.usage.cache_hits == 0 and len(first_model.calls) == 4
    assert second.answer == first.answer == "James Cameron, born 1954"
    assert [s.answer for s in second.plan.steps] == [s.answer for s in first.plan.steps]
    assert second_model.calls == [] and second.usage.model_calls == 0 and second.usage.cache_hits == 4
    assert second.usage.total_tokens == 0  # spent by the first run, not again
    assert second.usage.cached.total == first.usage.total_tokens  # what the cache saved
    assert second.usage.to_dict()["cache_hits"] == 4
    assert len(SQLiteCache(path)) == 4
    with sqlite3.connect(path) as db:  # a real SQLite file, readable by anything
        assert db.execute("SELECT COUNT(*) FROM replies").fetchone() == (4,)


async def test_a_streamed_answer_found_in_the_cache_arrives_whole(tmp_path):
    path = tmp_path / "replies.sqlite"
    await Orchestrator(shop_model(), cache=path).arun(QUESTION)
    pieces: list[str] = []
    again = await Orchestrator(shop_model(), cache=path).arun(QUESTION, on_answer=pieces.append)
    assert again.usage.model_calls == 0 and "".join(pieces) == again.answer == "James Cameron, born 1954"


def test_another_model_or_other_settings_miss(tmp_path):
    path = tmp_path / "replies.sqlite"
    Orchestrator(shop_model(), cache=path).run(QUESTION)
    for other in (shop_model(model_name="another"), shop_model(latency=0.001)):
        result = Orchestrator(other, cache=path).run(QUESTION)
        assert result.usage.cache_hits == 0 and len(other.calls) == 4


def test_any_langchain_cache_plugs_in_and_hits_cost_no_call_budget():
    cache = InMemoryCache()
    Orchestrator(shop_model(), cache=cache).run(QUESTION)
    model = shop_model()
    result = Orchestrator(model, cache=cache, limits=Limits(max_model_calls=1)).run(QUESTION)
    assert result.error is None and result.usage.cache_hits == 4 and model.calls == []


def test_sampled_calls_are_never_cached(tmp_path):
    path = tmp_path / "replies.sqlite"
    runs = []
    for _ in range(2):
        model = shop_model()
        orch = Orchestrator(model, cache=path, strategy=SelfConsistencySolver(samples=3, temperature=0.7))
        runs.append((orch.run(QUESTION), model))
    (_, first_model), (second, second_model) = runs
    assert len(first_model.calls) == 2 + 2 * 3  # plan, synthesis, 3 samples for each of 2 steps
    assert second.usage.cache_hits == 2  # the plan and the synthesis, at temperature 0
    assert len(second_model.calls) == 6 and all(c["kwargs"].get("temperature") == 0.7 for c in second_model.calls)


def test_a_failed_call_is_not_cached(tmp_path):
    path = tmp_path / "replies.sqlite"
    broken = ScriptedChatModel(rules=[(r".", ValueError("the model broke"))])
    with pytest.raises(ModelError):
        Orchestrator(broken, cache=path).run(QUESTION)
    assert len(SQLiteCache(path)) == 0


def test_openai_models_over_http(fault, tmp_path):
    """Temperature 0: the second call is not sent. Unset (the server samples), another model, an HTTP error: sent."""
    cache = SQLiteCache(tmp_path / "replies.sqlite")
    no_retry = RetryPolicy(max_attempts=1)
    question = "What is the capital of France?"

    def ask(name="small", **settings):
        model = load_model(f"openai:{name}", base_url=fault.base_url, api_key="k", **settings)
        return Orchestrator(model, cache=cache, strategy="direct", retry=no_retry).execute(
            {"steps": [{"id": 1, "question": question}]}, question=question
        )

    fault.default = ok("Paris")
    first, second = ask(temperature=0), ask(temperature=0)
    assert len(fault.hits) == 1 and second.answer == first.answer and second.usage.cache_hits == 1
    ask()  # temperature unset: the server's default samples
    ask(temperature=0.7)
    ask("large", temperature=0)
    ask(temperature=0, max_tokens=5)
    assert len(fault.hits) == 5 and len(cache) == 3  # 0.0 small, 0.0 large, 0.0 small with max_tokens

    fault.reset()
    fault.queue(status(400, message="bad request"))
    failed = ask("broken", temperature=0)
    assert failed.plan.steps[0].status == "failed" and len(fault.hits) == 1
    assert len(cache) == 3


def test_structured_output_and_plain_text_never_share_a_key(fault):
    """The Decomposer asks a model for a plan under structured output, and in plain text after a refusal: the same
    messages, two different calls."""
    model = load_model("openai:small", base_url=fault.base_url, api_key="k", temperature=0)
    cache, messages = InMemoryCache(), [HumanMessage("Plan: who directed Titanic?")]
    structured = structured_plan_output(model, Decomposer().schema)
    keys = {CachedCall.of(cache, runnable, messages).llm_string for runnable in (model, structured)}
    assert len(keys) == 2


def test_a_local_models_adapter_is_part_of_its_key(tmp_path):
    """Two local models differing only in the LoRA adapter they carry (cheap stand-ins: no weights loaded)."""
    from decompose.models.hf import ChatTransformers

    class Unloaded(ChatTransformers):
        def model_post_init(self, context):  # no weights: no batch worker
            pass

    adapter_a, adapter_b = tmp_path / "a", tmp_path / "b"
    for folder in (adapter_a, adapter_b):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
    cache, messages = InMemoryCache(), [HumanMessage("hi")]

    def key(adapter, **settings):
        model = Unloaded.model_construct(model_path="m", adapter=str(adapter), **settings)
        call = CachedCall.of(cache, model, messages)
        return None if call is None else call.llm_string

    assert key(adapter_a) != key(adapter_b)
    first = key(adapter_a)
    (adapter_a / "adapter_model.safetensors").write_bytes(b"retrained in place")
    assert key(adapter_a) != first
    assert key(adapter_a, temperature=0.7) is None  # a local model that samples


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "replies.sqlite"
    path.write_text("not a database, a note")
    with pytest.raises(ConfigError) as err:
        Orchestrator(shop_model(), cache=path)
    assert str(path) in str(err.value) and "delete it" in err.value.hint


@pytest.mark.parametrize("where", ["missing folder", "a folder"])
def test_a_path_that_cannot_hold_the_cache_is_a_clear_error(tmp_path, where):
    path = tmp_path / "nowhere" / "replies.sqlite" if where == "missing folder" else tmp_path
    with pytest.raises(ConfigError) as err:
        Orchestrator(shop_model(), cache=path)
    assert str(path) in str(err.value) and err.value.hint


def test_a_read_only_file_is_a_clear_error(tmp_path):
    path = tmp_path / "replies.sqlite"
    SQLiteCache(path)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db, pytest.raises(sqlite3.OperationalError):
        db.execute("CREATE TABLE probe (x)")  # what our open does on a read-only file
    path.chmod(0o444)
    try:
        if _can_write(path):
            pytest.skip("this user writes read-only files (root)")
        with pytest.raises(ConfigError) as err:
            SQLiteCache(path)
        assert str(path) in str(err.value) and "writable" in err.value.hint
    finally:
        path.chmod(0o644)


def test_a_cache_of_the_wrong_type_is_a_clear_error():
    with pytest.raises(ConfigError, match="cache must be a file path or a LangChain BaseCache"):
        Orchestrator(shop_model(), cache=42)


@pytest.fixture
def main_in_process(tmp_path, monkeypatch, capsys):
    """`decompose.cli.main(ARGS)` in this process, in tmp_path: (code, stdout, stderr)."""
    from decompose.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)

    def run(*args):
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_commands_take_a_cache_file(tmp_path, main_in_process):
    (tmp_path / "rules.py").write_text(
        "from decompose.models.scripted import ScriptedChatModel, asks_for_plan\n"
        'model = ScriptedChatModel(rules=[(asks_for_plan, \'{"steps": [{"id": 1, "question": "Who?"}]}\')],'
        " default='James Cameron')\n"
    )
    runs = [
        main_in_process("run", QUESTION, "--model", "scripted:rules.py", "--cache", "c.sqlite", "--json")
        for _ in range(2)
    ]
    (code1, out1, _), (code2, out2, err2) = runs
    assert code1 == code2 == 0, err2
    first, second = json.loads(out1), json.loads(out2)
    assert second["answer"] == first["answer"] == "James Cameron"
    assert second["usage"]["model_calls"] == 0 and second["usage"]["cache_hits"] == first["usage"]["model_calls"]

    (tmp_path / "bad.sqlite").write_text("garbage")
    code, _, err = main_in_process("run", QUESTION, "--model", "scripted:rules.py", "--cache", "bad.sqlite")
    assert code != 0 and "bad.sqlite" in err and "delete it" in err


def _can_write(path) -> bool:
    try:
        with open(path, "a"):
            return True
    except OSError:
        return False
