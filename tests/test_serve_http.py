"""The service over real HTTP on 127.0.0.1 (uvicorn in a thread): the OpenAI client and LangChain's ChatOpenAI
talking to an agent through /v1/chat/completions, and the event stream read as a browser would."""

import json
import time

import httpx
import pytest
from helpers import DIRECTOR_ANSWER, TITANIC, director_model
from servers import serving

pytest.importorskip("sqlalchemy")
import openai  # noqa: E402

from decompose.models.scripted import ScriptedChatModel, asks_for_plan  # noqa: E402
from decompose.serve import create_app  # noqa: E402

pytestmark = pytest.mark.server
ANSWER = DIRECTOR_ANSWER


@pytest.fixture
def model():
    return director_model()


@pytest.fixture
def url(model, tmp_path):
    with serving(create_app(model, db=f"sqlite:///{tmp_path / 'serve.sqlite3'}", api_keys=["k-123"])) as base:
        yield base


def test_the_openai_client_talks_to_an_agent(url, model):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k-123", max_retries=0)
    reply = client.chat.completions.create(model="decompose", messages=[{"role": "user", "content": TITANIC}])
    assert reply.object == "chat.completion" and reply.model == "decompose"
    assert reply.choices[0].message.content == ANSWER and reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    assert {m.id for m in client.models.list()} == {"decompose", "customer-service", "finance"}


def test_the_openai_client_streams(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k-123", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="decompose",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": TITANIC}],
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens > 0


def test_earlier_messages_are_the_history(url, model):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k-123", max_retries=0)
    client.chat.completions.create(
        model="decompose",
        messages=[
            {"role": "user", "content": TITANIC},
            {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": [{"type": "text", "text": "And where was he born?"}]},
        ],
    )
    planner = next(c["prompt"] for c in model.calls if '"steps"' in (c["reply"] or ""))
    assert TITANIC in planner and ANSWER in planner and "And where was he born?" in planner


def test_openai_errors_reach_the_client_as_its_own_exceptions(url, tmp_path):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k-123", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="unknown agent 'gpt-4o'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="last message must be the user's question"):
        client.chat.completions.create(model="finance", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()


def test_a_failed_run_is_an_error_streaming_or_not(tmp_path):
    model = ScriptedChatModel(rules=[(asks_for_plan, "no plan, sorry")], default="x")
    with serving(create_app(model, db=f"sqlite:///{tmp_path / 's.sqlite3'}")) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": TITANIC}]
        with pytest.raises(openai.UnprocessableEntityError, match="plan"):
            client.chat.completions.create(model="decompose", messages=messages)
        with pytest.raises(openai.APIError, match="plan"):
            list(client.chat.completions.create(model="decompose", messages=messages, stream=True))


def test_langchain_chat_openai_talks_to_an_agent(url):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="decompose", base_url=f"{url}/v1", api_key="k-123", max_retries=0)
    assert chat.invoke(TITANIC).content == ANSWER
    assert "".join(chunk.content for chunk in chat.stream(TITANIC)) == ANSWER


@pytest.mark.slow  # a real server and a model that takes its time, to tell streaming from buffering
def test_the_event_stream_arrives_as_it_happens(tmp_path):
    """Each event is sent when it happens, not when the run ends: the plan arrives before the answer exists."""
    model = director_model(latency=0.15)
    with (
        serving(create_app(model, db=f"sqlite:///{tmp_path / 's.sqlite3'}")) as base,
        httpx.stream("POST", f"{base}/v1/runs", json={"question": TITANIC}, timeout=30) as reply,
    ):
        assert reply.headers["content-type"].startswith("text/event-stream")
        seen = []
        for line in reply.iter_lines():
            if line.startswith("event: "):
                seen.append((line[7:], time.monotonic()))
    names = [name for name, _ in seen]
    assert names[:2] == ["run", "PlanReady"] and names[-1] == "result"
    assert seen[-1][1] - dict(seen)["PlanReady"] > 0.4  # the two steps and the synthesis came later


def test_a_conversation_over_http(url):
    headers = {"Authorization": "Bearer k-123"}
    cid = httpx.post(f"{url}/v1/conversations", json={"agent": "decompose"}, headers=headers).json()["id"]
    body = httpx.post(
        f"{url}/v1/conversations/{cid}/messages", json={"question": TITANIC}, headers=headers, timeout=30
    ).text
    result = json.loads(body.strip().split("\n\n")[-1].split("data: ", 1)[1])
    assert result["answer"] == ANSWER
    turns = httpx.get(f"{url}/v1/conversations/{cid}", headers=headers).json()["turns"]
    assert [(t["question"], t["answer"], t["status"]) for t in turns] == [(TITANIC, ANSWER, "answered")]


@pytest.mark.slow
def test_a_turn_longer_than_the_lease_stays_running_while_its_server_lives(tmp_path):
    model = director_model(latency=0.25)  # four calls, one after another: about 1 s, over three leases
    with serving(create_app(model, db=f"sqlite:///{tmp_path / 's.sqlite3'}", lease=0.3)) as base:
        cid = httpx.post(f"{base}/v1/conversations", json={}).json()["id"]
        seen = []
        with httpx.stream(
            "POST", f"{base}/v1/conversations/{cid}/messages", json={"question": TITANIC}, timeout=30
        ) as reply:
            for line in reply.iter_lines():
                if line.startswith("event: ") and line != "event: state":  # a state frame follows its event at once
                    seen.append(httpx.get(f"{base}/v1/conversations/{cid}").json()["turns"][0]["status"])
        assert set(seen[:-2]) == {"running"} and len(seen) > 5  # until Answered (then it may be stored)
        assert httpx.get(f"{base}/v1/conversations/{cid}").json()["turns"][0]["status"] == "answered"
