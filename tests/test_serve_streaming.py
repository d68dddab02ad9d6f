"""/v1/chat/completions with `stream: true` over real HTTP on 127.0.0.1, read with the official OpenAI client: the
answer arrives word by word as the synthesis writes it, progress only for a client that asks, and every request
and run is logged (`decompose.serve.access`, `decompose.serve.runs`)."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from helpers import TITANIC, plan_json
from langchain_core.outputs import ChatGenerationChunk
from servers import serving

pytest.importorskip("sqlalchemy")
import openai  # noqa: E402

from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine  # noqa: E402
from decompose.serve import create_app  # noqa: E402

pytestmark = pytest.mark.server
REPLY = (
    "The steps fit the question.\n"
    "Answer: James Cameron directed Titanic; he was born in 1954, so he was 43 when it was released."
)
ANSWER = REPLY.split("Answer: ")[1]
WORD_SECONDS = 0.05


class WritesSlowly(ScriptedChatModel):
    """A model that writes its replies a word every `WORD_SECONDS` when streamed, as a server does."""

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            await asyncio.sleep(WORD_SECONDS)
            yield chunk


@pytest.fixture
def url(tmp_path):
    model = WritesSlowly(
        rules=[
            (asks_for_plan, plan_json("Who directed Titanic?", "When was {1} born?")),
            (asks_to_combine, REPLY),
            (r"Question: Who directed Titanic", "James Cameron"),
            (r"Question: When was James Cameron born", "1954"),
        ],
        default="I do not know",
    )
    with serving(create_app(model, db=f"sqlite:///{tmp_path / 'serve.sqlite3'}")) as base:
        yield base


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def ask(url: str, **kwargs):
    return client(url).chat.completions.create(
        model="decompose", messages=[{"role": "user", "content": TITANIC}], **kwargs
    )


@pytest.mark.slow  # over a second: the scripted model writes word by word, as a server does
def test_the_answer_arrives_word_by_word_as_the_synthesis_writes_it(url):
    arrived = [(chunk, time.monotonic()) for chunk in ask(url, stream=True)]
    content = [(c.choices[0].delta.content, t) for c, t in arrived if c.choices and c.choices[0].delta.content]
    finish = [i for i, (c, _) in enumerate(arrived) if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(content) > 10  # a piece per word, not one chunk at the end
    assert content[-1][1] - content[0][1] > 10 * WORD_SECONDS * 0.8  # sent as written, not buffered
    assert finish == [len(arrived) - 1]  # the last chunk ends it, after every piece
    assert not any("steps fit" in text for text, _ in content)  # the reasoning before the Answer line stays out
    streamed = "".join(text for text, _ in content)
    assert streamed == ANSWER == ask(url).choices[0].message.content  # the same answer as without streaming


@pytest.mark.slow  # over a second: the scripted model writes word by word, as a server does
def test_progress_only_for_a_client_that_asks(url):
    plain = list(ask(url, stream=True))
    assert not any((c.model_extra or {}).get("decompose") for c in plain)

    chunks = list(ask(url, stream=True, extra_body={"decompose": {"progress": True}}))
    progress = [c.model_extra["decompose"] for c in chunks if (c.model_extra or {}).get("decompose")]
    types = [p["type"] for p in progress]
    assert types[0] == "PlanReady" and types[-1] == "Answered" and types.count("StepFinished") == 2
    assert progress[-1]["answer"] == ANSWER
    # Progress chunks are standard chunks with an empty delta: the content still adds up to the answer.
    assert all(c.object == "chat.completion.chunk" and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER

    with pytest.raises(openai.UnprocessableEntityError, match="decompose must be an object"):
        ask(url, stream=True, extra_body={"decompose": {"progress": "yes"}})


def test_each_request_and_each_run_is_logged(url, caplog):
    caplog.set_level(logging.INFO, logger="decompose.serve")
    reply = ask(url)
    with pytest.raises(openai.NotFoundError):
        client(url).chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])

    runs = [r for r in caplog.records if r.name == "decompose.serve.runs"]
    assert len(runs) == 1
    run = runs[0]
    assert (run.run_id, run.agent, run.status) == (reply.id, "decompose", "answered")
    assert run.input_tokens == reply.usage.prompt_tokens and run.output_tokens == reply.usage.completion_tokens
    assert run.model_calls == 4 and run.duration_s > 0
    assert f"run {reply.id} agent=decompose status=answered" in run.getMessage()

    deadline = time.monotonic() + 5  # a line is written once its response has been sent
    while len([r for r in caplog.records if r.name == "decompose.serve.access"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    access = sorted((r.method, r.path, r.status) for r in caplog.records if r.name == "decompose.serve.access")
    assert access == [("POST", "/v1/chat/completions", 200), ("POST", "/v1/chat/completions", 404)]
    assert all(r.duration_s >= 0 for r in caplog.records if r.name == "decompose.serve.access")
