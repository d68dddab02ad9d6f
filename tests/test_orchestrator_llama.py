"""The whole pipeline against a real OpenAI-compatible server: llama.cpp (xllamacpp) serving SmolLM2-135M."""

import pytest
from servers import llama_server

from decompose import Decomposer, Orchestrator
from decompose.models.openai import load_openai

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("xllamacpp")
    with llama_server() as url:
        yield load_openai("smollm2", base_url=url, max_tokens=200, temperature=0)


@pytest.mark.parametrize(
    "question",
    [
        "Who directed Titanic, and how old was that person when it was released?",
        "Which is larger, the population of France or of Spain?",
    ],
)
def test_structured_plans_from_a_real_server_run_end_to_end(model, question):
    orch = Orchestrator(model, decomposer=Decomposer(max_steps=4))
    result = orch.run(question)
    assert result.plan is not None and 1 <= len(result.plan.steps) <= 4
    assert result.usage.phases["decompose"].calls >= 1
    assert result.usage.input_tokens > 0  # the server's own counts
    assert result.ok, result.error
    assert result.answer.strip()
