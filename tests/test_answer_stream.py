"""The answer as the synthesis writes it (`Orchestrator.arun(on_answer=...)`, `chains/answer_stream.py`): pieces
that add up to the answer, nothing of the reasoning before the "Answer:" line, no word twice after a retry, no
sentence the checks rewrite, and no streamed call at all for a run that did not ask."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from helpers import plan_json
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.outputs import ChatGenerationChunk

from decompose import Orchestrator, RetryPolicy
from decompose.chains.answer_line import final_answer_line
from decompose.chains.answer_stream import AnswerStream, Draft
from decompose.chains.decompose import Decomposer
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine

QUESTION = "Who directed Titanic, and when was that person born?"
REPLY = (
    "Step 1 names the director and step 2 his birth year.\n"
    "Answer: **James Cameron**, who directed Titanic, was born in 1954."
)
ANSWER = "James Cameron, who directed Titanic, was born in 1954."


def model(reply=REPLY, **kwargs) -> ScriptedChatModel:
    return ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("Who directed Titanic?", "When was {1} born?")),
            (asks_to_combine, reply),
            (r"Who directed", "James Cameron"),
            (r"born", "1954"),
        ],
        default="I do not know",
        **kwargs,
    )


class CountTokens(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens = 0

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens += 1


def test_the_answer_arrives_in_pieces_that_add_up_to_it():
    pieces: list[str] = []
    result = asyncio.run(Orchestrator(model()).arun(QUESTION, on_answer=pieces.append))
    assert result.answer == ANSWER
    assert len(pieces) > 5 and "".join(pieces) == ANSWER
    assert not any("Step 1" in p or "**" in p for p in pieces)  # the reasoning and the markup stay out


def test_a_run_that_asks_for_no_pieces_streams_no_call():
    counter = CountTokens()
    orch = Orchestrator(model(callbacks=[counter]))
    plain = asyncio.run(orch.arun(QUESTION))
    assert plain.answer == ANSWER and counter.tokens == 0  # every call one ainvoke, as before
    streamed = asyncio.run(orch.arun(QUESTION, on_answer=lambda _: None))
    assert streamed.answer == ANSWER and counter.tokens > 0
    assert streamed.usage.to_dict() == plain.usage.to_dict()  # the streamed call's usage counts the same


class FailsMidReply(ScriptedChatModel):
    """Its first synthesis attempt breaks after a few words (a dropped connection), the next ones do not."""

    broke: int = 0

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[ChatGenerationChunk]:
        sent = 0
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk
            sent += 1
            if asks_to_combine(messages) and self.broke == 0 and sent == 16:
                self.broke += 1
                raise ConnectionError("connection reset by peer")


def test_a_retried_synthesis_sends_no_word_twice():
    broken = FailsMidReply(**model().model_dump(include={"rules", "default"}))
    orch = Orchestrator(broken, retry=RetryPolicy(initial_wait=0, jitter=0))
    pieces: list[str] = []
    result = asyncio.run(orch.arun(QUESTION, on_answer=pieces.append))
    assert broken.broke == 1 and result.usage.transport_retries == 1
    assert "".join(pieces) == result.answer == ANSWER


def test_a_reply_asking_for_a_replan_is_not_sent():
    replies = ["INSUFFICIENT: the birth year of the director", REPLY]
    pieces: list[str] = []
    orch = Orchestrator(model(reply=replies), decomposer=Decomposer(max_replans=1))
    result = asyncio.run(orch.arun(QUESTION, on_answer=pieces.append))
    assert "".join(pieces) == result.answer == ANSWER


def test_the_direct_answer_streams_too():
    # A plan whose steps all fail is answered directly (on_failure="direct"): that answer is streamed as well.
    direct = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("Who directed Titanic?")),
            (r"Question: Who directed Titanic\?", ValueError("the step's model broke")),
            (r"Question:", "James Cameron directed Titanic in 1997."),
        ],
        default="I do not know",
    )
    pieces: list[str] = []
    orch = Orchestrator(direct, decomposer=Decomposer(on_failure="direct"))
    result = asyncio.run(orch.arun(QUESTION, on_answer=pieces.append))
    assert result.plan.steps[0].status == "failed"
    assert result.answer == "James Cameron directed Titanic in 1997."
    assert len(pieces) > 3 and "".join(pieces) == result.answer


def feed(draft: Draft, text: str) -> None:
    for word in text.split(" "):
        draft(word + " ")


def test_a_sentence_the_checks_rewrite_is_never_sent():
    sent: list[str] = []
    stream = AnswerStream(sent.append)

    def checked(reply: str) -> str:  # as keep_tool_facts replaces a sentence that contradicts a tool
        return final_answer_line(reply).replace("is pending.", "has shipped.")

    draft = Draft(stream, checked, marked=True, by_sentence=True)
    feed(draft, "Answer: We found your order. Order A1003 is pending. It left on Monday.")
    assert "".join(sent) == "We found your order."  # only whole sentences, and only those kept as written
    stream.offer("We found your order. Order A1003 has shipped. It left on Monday.")
    assert stream.sent == "We found your order. Order A1003 has shipped. It left on Monday."


def test_a_later_answer_line_stops_the_stream_where_it_disagrees():
    sent: list[str] = []
    stream = AnswerStream(sent.append)
    draft = Draft(stream, final_answer_line, marked=True)
    feed(draft, "Answer: Paris is the capital\nWait, the question asks for the largest city.\nAnswer: Lyon is")
    assert "".join(sent) == "Paris is the"  # the first line's words, held once the second line disagrees
    stream.offer("Lyon")
    assert stream.sent == "Paris is the"  # the owner of the stream sees it cannot continue (openai_compat corrects)
