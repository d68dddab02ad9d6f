"""Decoding options of local models (greedy, sampling, beam search): checks up front, and on the real embedded model
(SmolLM2-135M-Instruct) what each option does, per model and per call, alone and batched."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: everything loads from disk

import asyncio
from types import SimpleNamespace

import pytest
from langchain_core.messages import convert_to_messages

from decompose.cli.app import build_parser, main
from decompose.cli.config import load_model_from_flags
from decompose.errors import ConfigError
from decompose.models import Decoding, load_model
from decompose.models.decoding import parse_options
from decompose.models.embedded import load_embedded
from decompose.models.hf import ChatTransformers

PROMPTS = ["List three colors.", "Write a haiku about the sea.", "What is the capital of France?"]
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def model():
    import torch  # here, not at the top: there every xdist worker would pay seconds to collect this module

    # One thread: on a machine shared with other jobs, torch's threads fight over the cores and beam search
    # slows tenfold. Restored afterwards, for the other test modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_embedded(adapter=False, max_new_tokens=10, max_batch_size=10, batch_wait_ms=50)  # the base model
    torch.set_num_threads(threads)


def fake_model(**options) -> ChatTransformers:
    """A ChatTransformers whose model is never run: for what must fail before generation."""
    hf = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=2))
    return ChatTransformers(
        model_path="fake", hf_model=hf, tokenizer=SimpleNamespace(eos_token_id=2, pad_token_id=2), **options
    )


# --- checked up front, no model needed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"num_beams": 0}, "num_beams=0"),
        ({"num_beams": 2.5}, "num_beams=2.5 is not a whole number"),
        ({"top_p": 0}, "top_p=0.0"),
        ({"top_p": 1.2}, "top_p=1.2"),
        ({"temperature": -0.5}, "temperature=-0.5"),
        ({"do_sample": True, "temperature": 0}, "sampling needs a temperature above 0"),
        ({"top_k": -1}, "top_k=-1"),
        ({"repetition_penalty": 0}, "repetition_penalty=0.0"),
        ({"early_stopping": "soon"}, "early_stopping='soon'"),
        ({"do_sample": "yes"}, "do_sample='yes' is not true or false"),
    ],
)
def test_impossible_settings_fail_before_loading_naming_the_option(options, named):
    with pytest.raises(ConfigError, match=named) as err:
        load_model("hf:/no/such/model", **options)  # the bad option is reported, not the missing model
    assert err.value.hint
    with pytest.raises(ConfigError, match=named):
        load_model("hf:/no/such/model", decoding=options)
    with pytest.raises(ConfigError, match=named):
        fake_model().invoke("hi", **options)  # per call too, before anything is queued


def test_unknown_names_are_refused_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"'num_beam' \(did you mean 'num_beams'\?\)"):
        load_model("hf:/no/such/model", num_beam=4)
    with pytest.raises(ConfigError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
        fake_model().invoke("hi", temprature=0.5)
    with pytest.raises(ConfigError, match=r"'top-p' \(did you mean 'top_p'\?\)"):
        Decoding.of({"top-p": 0.9})
    with pytest.raises(ConfigError, match="did you mean 'length_penalty'"):
        parse_options("num_beams=4,lenght_penalty=0.8")


def test_decoding_groups_the_options_and_clashes_are_refused():
    assert fake_model(decoding=Decoding(num_beams=4, length_penalty=0.8)).decoding == Decoding(
        num_beams=4, length_penalty=0.8
    )
    assert fake_model(decoding={"temperature": 0.7}).temperature == 0.7
    with pytest.raises(ConfigError, match=r"\['num_beams'\] given both"):
        fake_model(decoding=Decoding(num_beams=4), num_beams=2)
    with pytest.raises(ConfigError, match="decoding= is for local models"):
        load_model("openai:gpt-4o-mini", decoding={"num_beams": 4})


def test_beams_cannot_run_under_a_grammar():
    with pytest.raises(ConfigError, match="num_beams=3 cannot decode under a grammar") as err:
        fake_model().with_structured_output(CITY, num_beams=3)
    assert "structured output" in str(err.value.hint)
    with pytest.raises(ConfigError, match="cannot decode under a grammar"):
        fake_model(num_beams=2).invoke("hi", json_schema='{"type": "string"}')
    fake_model(num_beams=4).with_structured_output(CITY)  # a model's beam default is for free text: no error


def test_resolved_settings_keep_only_what_the_mode_uses():
    assert Decoding(temperature=0).resolved() == Decoding(do_sample=False, num_beams=1)  # greedy: the default
    sampled = Decoding(temperature=0.7, top_p=0.9, seed=3, length_penalty=2.0).resolved()
    assert sampled == Decoding(do_sample=True, temperature=0.7, top_p=0.9, seed=3, num_beams=1)
    assert Decoding(temperature=0.7, do_sample=False, top_p=0.5, seed=3).resolved() == Decoding().resolved()
    config = Decoding(num_beams=3, length_penalty=0.8).resolved().generation_config(max_new_tokens=5)
    assert (config.num_beams, config.length_penalty, config.do_sample, config.top_p) == (3, 0.8, False, None)


def test_cli_flag_parses_and_a_bad_one_is_a_usage_error(capsys):
    args = build_parser().parse_args(
        ["run", "--decoding", "num_beams=4,length_penalty=0.8", "--decoding", "early_stopping=never", "q"]
    )
    assert [parse_options(t) for t in args.decoding] == [
        {"num_beams": 4, "length_penalty": 0.8},
        {"early_stopping": "never"},
    ]
    assert main(["run", "--model", "hf:/no/such/model", "--decoding", "top_p=2", "q"]) == 2
    assert "top_p=2.0 is out of range" in capsys.readouterr().err


# --- on the real model -------------------------------------------------------------------------------------


def hf_generate(model: ChatTransformers, prompt: str, max_new_tokens: int = 10, **options) -> str:
    """What transformers' own `generate` writes for `prompt`: the reference for our decoding."""
    import torch

    ids = model._prompt_ids(convert_to_messages([("human", prompt)]))
    out = model.hf_model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        pad_token_id=2,
        eos_token_id=[2],
        **options,
    )
    return model.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


@pytest.mark.slow
@pytest.mark.model
def test_one_beam_is_greedy_and_three_beams_are_transformers_beam_search(model):
    greedy = [model.invoke(p).content for p in PROMPTS]
    assert [model.invoke(p, num_beams=1, length_penalty=0.5).content for p in PROMPTS] == greedy
    beams = [model.invoke(p, num_beams=3) for p in PROMPTS]
    assert all(b.content.strip() and 0 < b.usage_metadata["output_tokens"] <= 10 for b in beams)
    assert [b.content for b in beams] == [hf_generate(model, p, num_beams=3) for p in PROMPTS]
    assert [b.content for b in beams] != greedy  # beam search found another text for at least one prompt
    # The stream of a beam search arrives when it ends, and joins to the same text; stops cut it.
    assert "".join(c.content for c in model.stream(PROMPTS[1], num_beams=3)) == beams[1].content
    cut = model.invoke(PROMPTS[1], num_beams=3, stop=[","])
    assert cut.content == beams[1].content[: beams[1].content.index(",")] and "," in beams[1].content


@pytest.mark.slow
@pytest.mark.model
def test_sampling_with_a_seed_is_reproducible(model):
    sample = {"temperature": 1.2, "top_k": 0, "repetition_penalty": 1.1}
    first = model.invoke(PROMPTS[1], seed=7, **sample).content
    assert model.invoke(PROMPTS[1], seed=7, **sample).content == first
    assert {model.invoke(PROMPTS[1], seed=s, **sample).content for s in (8, 9)} != {first}
    # top_k=1 keeps only the likeliest token: sampling then is greedy decoding.
    assert model.invoke(PROMPTS[0], do_sample=True, top_k=1, seed=1).content == model.invoke(PROMPTS[0]).content


@pytest.mark.slow
@pytest.mark.model
def test_a_calls_options_beat_the_models_defaults(model):
    beamy = ChatTransformers(
        model_path=model.model_path,
        hf_model=model.hf_model,
        tokenizer=model.tokenizer,
        max_new_tokens=10,
        decoding=Decoding(num_beams=3),
    )
    prompt = PROMPTS[1]
    assert beamy.invoke(prompt).content == model.invoke(prompt, num_beams=3).content
    assert beamy.invoke(prompt, num_beams=1).content == model.invoke(prompt).content
    assert beamy.bind(num_beams=None).invoke(prompt).content == model.invoke(prompt).content  # None: unset
    sampled = model.bind(temperature=0.9, seed=5)
    assert sampled.invoke(prompt).content == model.invoke(prompt, temperature=0.9, seed=5).content
    assert sampled.invoke(prompt, do_sample=False).content == model.invoke(prompt).content
    # Structured output decodes under a grammar with the model's settings but one beam; sampling works there.
    parsed = beamy.with_structured_output(CITY, max_new_tokens=24).invoke(PROMPTS[2])
    assert parsed == model.with_structured_output(CITY, max_new_tokens=24).invoke(PROMPTS[2])
    assert set(model.with_structured_output(CITY, temperature=0.8, seed=2, max_new_tokens=24).invoke(PROMPTS[2])) == {
        "city"
    }


@pytest.mark.slow
@pytest.mark.model
def test_concurrent_requests_with_different_settings_each_get_their_own(model):
    # A longer batch window than the fixture's, so all calls land in one batch on a busy machine too.
    model = ChatTransformers(
        model_path=model.model_path,
        hf_model=model.hf_model,
        tokenizer=model.tokenizer,
        max_new_tokens=10,
        batch_wait_ms=500,
    )
    calls = [
        (PROMPTS[0], {}),
        (PROMPTS[1], {}),  # greedy: one generate call
        (PROMPTS[0], {"num_beams": 2}),
        (PROMPTS[2], {"num_beams": 2}),  # beams, same limit and stops: one call
        (PROMPTS[1], {"num_beams": 2, "max_tokens": 6}),  # another limit: a beam call of its own
        (PROMPTS[2], {"temperature": 1.0, "seed": 3}),  # seeded sampling: always alone, so reproducible
        (PROMPTS[1], {"repetition_penalty": 1.5}),
    ]

    async def run():
        alone = [(await model.ainvoke(p, **o)).content for p, o in calls]
        before = model.batch_sizes
        together = await asyncio.gather(*(model.ainvoke(p, **o) for p, o in calls))
        return alone, [m.content for m in together], model.batch_sizes - before

    alone, together, sizes = asyncio.run(run())
    assert together == alone
    assert sizes == {2: 2, 1: 3}


@pytest.mark.slow
@pytest.mark.model
def test_the_cli_flag_reaches_the_model(model):  # the fixture: one thread
    args = build_parser().parse_args(
        [
            "run",
            "--model",
            "smollm2",
            "--adapter",
            "none",
            "--decoding",
            "num_beams=3,length_penalty=0.8",
            "--decoding",
            "top_p=0.9",
            "q",
        ]
    )
    model = load_model_from_flags(args)  # smollm2 loaded again, with the flag's settings
    assert model.decoding == Decoding(num_beams=3, length_penalty=0.8, top_p=0.9)
    assert model.invoke(PROMPTS[1], max_tokens=10).content == hf_generate(
        model, PROMPTS[1], num_beams=3, length_penalty=0.8
    )
