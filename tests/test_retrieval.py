"""Grounded sub-answers: the local BM25 retriever, and passages retrieved per resolved sub-question."""

import json
import textwrap

import pytest
from helpers import cli, plan_json
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from decompose import ConfigError, Orchestrator, ScriptedChatModel
from decompose.events import StepFinished
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.retrieval import LocalDocsRetriever, load_documents, query_terms

FACTS = [
    ("cameron", "James Cameron directed the film Titanic, released in 1997."),
    ("born", "James Cameron was born on 16 August 1954 in Kapuskasing, Ontario."),
    ("ship", "The RMS Titanic sank in April 1912 after striking an iceberg."),
    ("eiffel", "The Eiffel Tower in Paris is 330 metres tall."),
]


@pytest.fixture
def docs_folder(tmp_path):
    folder = tmp_path / "docs"
    (folder / "films").mkdir(parents=True)
    (folder / "films" / "titanic.md").write_text(
        "# Titanic\n\nJames Cameron directed the film Titanic, released in 1997.\n\n"
        "James Cameron was born on 16 August 1954 in Kapuskasing, Ontario.\n"
    )
    (folder / "paris.txt").write_text("The Eiffel Tower in Paris is 330 metres tall.\n")
    (folder / "image.png").write_bytes(b"\x89PNG not text")  # ignored: not a text suffix
    return folder


def test_a_folder_becomes_paragraph_passages_with_file_ids(docs_folder):
    docs = load_documents(docs_folder)
    assert [d.metadata["id"] for d in docs] == [
        "films/titanic.md#1",
        "films/titanic.md#2",
        "films/titanic.md#3",
        "paris.txt#1",
    ]
    found = LocalDocsRetriever.from_path(docs_folder, k=2).invoke("When was James Cameron born?")
    assert found[0].metadata["id"] == "films/titanic.md#3"
    assert found[0].metadata["score"] > 0 and len(found) <= 2


def test_jsonl_documents_and_ranking(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in FACTS) + "\n\n")
    retriever = LocalDocsRetriever.from_path(path, k=3)
    found = retriever.invoke("How tall is the Eiffel Tower?")
    assert [d.metadata["id"] for d in found] == ["eiffel"]  # passages sharing no word are never returned
    scores = [d.metadata["score"] for d in retriever.invoke("Titanic Cameron 1997")]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 2
    assert retriever.invoke("the of a") == []  # only stop words: nothing to match


def test_plurals_match_their_singular():
    assert query_terms("Refunds for cities") == ["refund", "city"]
    retriever = LocalDocsRetriever.from_texts([("r", "A refund takes five days."), ("x", "Shipping is free.")])
    assert [d.metadata["id"] for d in retriever.invoke("refunds")] == ["r"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": 1, "text": "ok"}\nnot json\n', r"facts.jsonl:2: not valid JSON"),
        ('{"id": 1}\n', r"facts.jsonl:1: expected an object with a \"text\" string"),
        ("\n\n", "has no documents"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    path = tmp_path / "facts.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        LocalDocsRetriever.from_path(path)


def test_bad_paths_and_settings(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        LocalDocsRetriever.from_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no text found"):
        LocalDocsRetriever.from_path(tmp_path / "empty")
    with pytest.raises(ConfigError, match="k must be at least 1"):
        LocalDocsRetriever.from_texts(FACTS, k=0)
    with pytest.raises(ConfigError, match="BaseRetriever"):
        Orchestrator(ScriptedChatModel(), retriever=lambda q: [])


def titanic_model():
    return ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("Who directed Titanic?", "When was {1} born?")),
            (asks_to_combine, "James Cameron, born in 1954."),
            (r"Question: Who directed Titanic", "James Cameron"),
            (r"Question: When was James Cameron born", "1954"),
        ]
    )


def test_each_step_retrieves_for_its_resolved_question():
    model = titanic_model()
    retriever = LocalDocsRetriever.from_texts(FACTS, k=1)
    result = Orchestrator(model, retriever=retriever).run("Who directed Titanic, and when was he born?")
    assert result.ok
    step1, step2 = result.plan.steps
    assert [s["id"] for s in step1.sources] == ["cameron"]
    # step 2 asked "When was {1} born?": it searched for "When was James Cameron born?"
    assert [s["id"] for s in step2.sources] == ["born"]
    prompt = next(c["prompt"] for c in model.calls if "Question: When was James Cameron born" in c["prompt"])
    assert "[born] James Cameron was born on 16 August 1954" in prompt
    assert [c["id"] for c in result.citations] == ["cameron", "born"]
    assert result.citations[1]["steps"] == [2] and result.citations[1]["score"] > 0
    assert result.to_dict()["citations"] == result.citations
    assert result.to_dict()["steps"][1]["sources"] == step2.sources
    finished = [e for e in result.events if isinstance(e, StepFinished)]
    assert [e.sources[0]["id"] for e in finished] == ["cameron", "born"]


class Broken(BaseRetriever):
    def _get_relevant_documents(self, query, *, run_manager):
        raise ConnectionError("search server down")


class Fixed(BaseRetriever):
    def _get_relevant_documents(self, query, *, run_manager):
        return [Document(page_content="Paris is in France.", id="doc-7")]  # no score: still cited


def test_any_langchain_retriever_plugs_in():
    model = ScriptedChatModel(rules=[(r"Where is Paris", "France")])
    result = Orchestrator(model, retriever=Fixed()).execute({"steps": [{"id": 1, "question": "Where is Paris?"}]})
    assert result.answer == "France"
    assert result.citations == [{"id": "doc-7", "score": None, "steps": [1], "answer": False}]
    assert "[doc-7] Paris is in France." in model.calls[0]["prompt"]


def test_a_failing_retriever_fails_the_step_with_a_clear_message():
    result = Orchestrator(titanic_model(), retriever=Broken()).run("Who directed Titanic, and when was he born?")
    assert not result.ok
    assert result.plan.steps[0].status == "failed"
    assert "the retriever failed for step 1: ConnectionError: search server down" in result.plan.steps[0].error


RULES = textwrap.dedent("""
    from decompose.models.scripted import asks_to_combine
    rules = [(r"Question: How tall is the Eiffel Tower", "330 metres")]
""")


@pytest.mark.slow
def test_cli_docs_shows_sources(tmp_path, docs_folder):
    (tmp_path / "rules.py").write_text(RULES)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [{"id": 1, "question": "How tall is the Eiffel Tower?"}]}))
    done = cli("run", "--model", "scripted:rules.py", "--docs", str(docs_folder), "--plan", str(plan), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Answer: 330 metres" in done.stdout
    assert "Sources: paris.txt#1" in done.stdout
    bad = cli("run", "--model", "scripted:rules.py", "--docs", str(tmp_path / "nope"), "x?", cwd=tmp_path)
    assert bad.returncode == 2 and "--docs" in bad.stderr and "no such file or folder" in bad.stderr


def test_a_yes_no_answer_sees_passages_for_the_whole_question_and_cites_them():
    model = titanic_model()
    retriever = LocalDocsRetriever.from_texts(FACTS, k=1)
    question = "Was the director of the 1997 film Titanic born in 1954?"
    result = Orchestrator(model, retriever=retriever).run(question)
    combine = next(c["prompt"] for c in model.calls if "Original question:" in c["prompt"])
    # the steps' narrower questions found "cameron" and "born"; the question's own words find the film passage
    found = retriever.invoke(question)[0]
    assert f"[{found.metadata['id']}] {found.page_content}" in combine.split("Original question:")[0]
    cited = {c["id"]: c for c in result.citations}
    assert cited[found.metadata["id"]]["answer"] is True
    assert cited["born"]["answer"] is False and cited["born"]["steps"] == [2]


def test_a_multi_hop_fact_is_combined_from_the_steps_passages_only():
    model = titanic_model()
    result = Orchestrator(model, retriever=LocalDocsRetriever.from_texts(FACTS, k=1)).run(
        "When was the director of the 1997 film Titanic born?"
    )
    combine = next(c["prompt"] for c in model.calls if "Original question:" in c["prompt"])
    assert "Passages:" not in combine and not any(c["answer"] for c in result.citations)


def test_a_retriever_failing_for_the_final_answer_is_a_clear_error():
    class StepsOnly(BaseRetriever):  # answers the steps' searches, fails the final one
        def _get_relevant_documents(self, query, *, run_manager):
            if "director" in query:
                raise ConnectionError("search server down")
            return []

    result = Orchestrator(titanic_model(), retriever=StepsOnly()).run("Was the director of Titanic born in 1954?")
    assert result.answer is None
    assert "the retriever failed for the final answer: ConnectionError: search server down" in result.error
    assert [s.status for s in result.plan.steps] == ["done", "done"]  # the steps' answers are kept


def test_with_tools_the_answer_sees_passages_to_check_the_values_computed_on():
    from decompose.tools.calculator import calculator_tools

    model = titanic_model()
    retriever = LocalDocsRetriever.from_texts(FACTS, k=1)
    question = "How many years after the Titanic sank was the film Titanic released?"
    Orchestrator(model, tools=calculator_tools(), retriever=retriever).run(question)
    combine = next(c["prompt"] for c in model.calls if "Original question:" in c["prompt"])
    found = retriever.invoke(question)[0]
    assert f"[{found.metadata['id']}] {found.page_content}" in combine
