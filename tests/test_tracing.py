"""OpenTelemetry spans of a run, read back from the SDK's in-memory exporter: the tree, the GenAI attributes, retries
and fallbacks as span events, content only when asked, nesting in the caller's span and in serve's request spans."""

import asyncio
import json
import subprocess
import sys

import pytest
from helpers import REPO, plan_json
from langchain_core.tools import tool
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decompose import ModelError, Orchestrator, ScriptedChatModel
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.telemetry import wanted
from decompose.tools.runner import RetryableToolError

QUESTION = "What is the status of order A1, and what is the capital of France?"
PLAN = plan_json({"id": 1, "question": "Status of A1?", "tool": "lookup", "args": {"order_id": "A1"}}, "Capital?")


@pytest.fixture
def spans():
    """(provider, exporter): every span ended under the provider, in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def shop(provider, **options):
    """An Orchestrator whose primary model is down (every call falls back), whose planner first writes garbage
    (a parse re-ask) and whose one tool is busy on its first call (a tool retry)."""
    busy = iter([True])

    @tool
    def lookup(order_id: str) -> str:
        """Look up an order's status."""
        if next(busy, False):
            raise RetryableToolError("busy")
        return "shipped"

    primary = ScriptedChatModel(default=ModelError("primary is down"), model_name="primary")
    backup = ScriptedChatModel(
        rules=[(asks_for_plan, ["garbage", PLAN]), (asks_to_combine, "Shipped; Paris."), (r"Capital", "Paris")],
        model_name="backup",
    )
    return Orchestrator(primary, fallbacks=[backup], tools=[lookup], tracer_provider=provider, **options)


def tree(exporter):
    """{span name path: span}, e.g. "invoke_agent decompose/solve/step 1/execute_tool lookup"; several spans of one
    path are listed under it."""
    finished = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}

    def path(span):
        parent = by_id.get(span.parent.span_id) if span.parent else None
        return span.name if parent is None else f"{path(parent)}/{span.name}"

    paths = {}
    for span in finished:
        paths.setdefault(path(span), []).append(span)
    return paths


def test_a_run_is_a_tree_of_phases_steps_and_calls_with_genai_attributes(spans):
    provider, exporter = spans
    result = shop(provider).run(QUESTION)
    assert result.answer == "Shipped; Paris."
    paths = tree(exporter)
    root = "invoke_agent decompose"
    assert {p for p in paths if p.count("/") <= 1} == {root, f"{root}/decompose", f"{root}/solve", f"{root}/synthesize"}
    assert set(paths) >= {
        f"{root}/decompose/chat primary",
        f"{root}/decompose/chat backup",
        f"{root}/solve/step 1/execute_tool lookup",
        f"{root}/solve/step 2/chat primary",
        f"{root}/solve/step 2/chat backup",
        f"{root}/synthesize/chat backup",
    }
    (run,) = paths[root]
    assert run.parent is None  # no caller span: a trace of its own
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["decompose.plan.steps"] == 2
    assert run.attributes["decompose.usage.model_calls"] == result.usage.model_calls
    (chat,) = paths[f"{root}/solve/step 2/chat backup"]
    assert chat.kind == trace.SpanKind.CLIENT
    attributes = dict(chat.attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "scripted"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"] == "backup"
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["decompose.phase"] == "solve" and attributes["decompose.step.id"] == 2
    (step,) = paths[f"{root}/solve/step 1"]
    assert step.attributes["decompose.step.tool"] == "lookup"
    (call,) = paths[f"{root}/solve/step 1/execute_tool lookup"]
    assert call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert call.attributes["gen_ai.tool.name"] == "lookup"
    assert call.attributes["gen_ai.tool.call.id"] == f"{run.attributes['decompose.run.id']}:1"
    # every span of the run is in one trace
    assert {s.context.trace_id for group in paths.values() for s in group} == {run.context.trace_id}


def test_retries_and_fallbacks_are_span_events_on_what_they_retried(spans):
    provider, exporter = spans
    shop(provider).run(QUESTION)
    paths = tree(exporter)
    root = "invoke_agent decompose"
    (plan_phase,) = paths[f"{root}/decompose"]
    (reask,) = [e for e in plan_phase.events if e.name == "retry"]
    assert reask.attributes["decompose.retry.kind"] == "parse"
    assert "garbage" in reask.attributes["decompose.retry.reason"]
    (call,) = paths[f"{root}/solve/step 1/execute_tool lookup"]
    (retry,) = [e for e in call.events if e.name == "retry"]
    assert retry.attributes["decompose.retry.kind"] == "tool" and retry.attributes["decompose.retry.reason"] == "busy"
    (failed,) = paths[f"{root}/solve/step 2/chat primary"]
    assert failed.status.status_code == trace.StatusCode.ERROR and failed.attributes["error.type"] == "ModelError"
    (backup,) = paths[f"{root}/solve/step 2/chat backup"]
    (fallback,) = [e for e in backup.events if e.name == "fallback"]
    assert fallback.attributes["decompose.fallback.from"] == "primary"
    assert fallback.attributes["decompose.fallback.reason"] == "primary is down"


def test_a_salvaged_plan_is_a_plan_fallback_event(spans):
    provider, exporter = spans
    bad = plan_json({"id": 1, "question": "A?"}, {"id": 2, "question": "Uses {9}?"})  # step 2 cites no step
    model = ScriptedChatModel(rules=[(asks_for_plan, bad), (r"A\?", "a")], default="a")
    Orchestrator(model, tracer_provider=provider).run("A and B?")
    (plan_phase,) = tree(exporter)["invoke_agent decompose/decompose"]
    (event,) = [e for e in plan_phase.events if e.name == "plan_fallback"]
    assert event.attributes["decompose.fallback.kind"] == "salvaged"


def test_tool_arguments_and_other_content_only_when_asked(spans, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    provider, exporter = spans
    shop(provider).run(QUESTION)
    recorded = [s for group in tree(exporter).values() for s in group]
    keys = {key for span in recorded for key in span.attributes}
    assert not keys & {"gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "decompose.question"}
    assert not any("A1" in str(value) for span in recorded for value in span.attributes.values())

    exporter.clear()
    shop(provider, trace_content=True).run(QUESTION)
    paths = tree(exporter)
    (call,) = paths["invoke_agent decompose/solve/step 1/execute_tool lookup"]
    assert json.loads(call.attributes["gen_ai.tool.call.arguments"]) == {"order_id": "A1"}
    assert call.attributes["gen_ai.tool.call.result"] == "shipped"
    (run,) = paths["invoke_agent decompose"]
    assert run.attributes["decompose.question"] == QUESTION and run.attributes["decompose.answer"] == "Shipped; Paris."

    exporter.clear()  # the environment variable OpenTelemetry's GenAI instrumentations read says the same
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    shop(provider).run(QUESTION)
    (call,) = tree(exporter)["invoke_agent decompose/solve/step 1/execute_tool lookup"]
    assert "gen_ai.tool.call.arguments" in call.attributes


def test_a_run_nests_in_the_callers_current_span_sync_and_async(spans):
    provider, exporter = spans
    app = provider.get_tracer("my-app")
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json("Capital?")), (r"Capital", "Paris")])
    orch = Orchestrator(model, tracer_provider=provider)
    with app.start_as_current_span("handle request") as outer:
        orch.run("Capital of France?")  # the sync API: its loop is another thread's

    async def handler():
        with app.start_as_current_span("async handler") as span:
            await orch.arun("Capital of France?")
            return span

    inner = asyncio.run(handler())
    runs = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent decompose"]
    assert [(r.parent.span_id, r.context.trace_id) for r in runs] == [
        (outer.get_span_context().span_id, outer.get_span_context().trace_id),
        (inner.get_span_context().span_id, inner.get_span_context().trace_id),
    ]


def test_a_failed_run_ends_its_spans_with_the_error(spans):
    provider, exporter = spans
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json("A?")), (r"A\?", ValueError("boom"))])
    result = Orchestrator(model, tracer_provider=provider).run("A?")
    assert result.error is not None or result.plan.step(1).status == "failed"
    paths = tree(exporter)
    (step,) = paths["invoke_agent decompose/solve/step 1"]
    assert step.status.status_code == trace.StatusCode.ERROR and "boom" in step.status.description


def test_serve_requests_are_spans_and_a_run_is_the_child_of_its_request(spans, tmp_path):
    pytest.importorskip("sqlalchemy")
    from starlette.testclient import TestClient

    from decompose.serve import create_app

    provider, exporter = spans
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json("Capital?")), (r"Capital", "Paris")], default="Paris")
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    app = create_app(model, db=db, orchestrator_options={"tracer_provider": provider})
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # a client's W3C traceparent
    with TestClient(app) as client:
        reply = client.post("/v1/runs", json={"question": "Capital of France?"}, headers={"traceparent": caller})
        assert reply.status_code == 200
    finished = exporter.get_finished_spans()
    (request,) = [s for s in finished if s.name == "POST /v1/runs"]
    assert request.kind == trace.SpanKind.SERVER and request.attributes["http.response.status_code"] == 200
    assert request.attributes["http.route"] == "/v1/runs"
    assert format(request.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"  # the client's trace
    assert request.parent.span_id == 0xB7AD6B7169203331
    (run,) = [s for s in finished if s.name == "invoke_agent decompose"]
    assert run.parent.span_id == request.context.span_id


def test_the_environment_turns_tracing_on_only_when_it_names_where_traces_go():
    assert not wanted({})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not wanted({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not wanted({"OTEL_SERVICE_NAME": "shop"})  # naming the service alone sends nothing


@pytest.mark.slow
def test_off_by_default_a_run_never_imports_the_tracing_code():
    # (LangSmith, which langchain-core imports, loads the OpenTelemetry SDK itself when it is installed: what is
    # checked here is that decompose adds no tracing code, no tracer and no span of its own.)
    code = (
        "import sys\n"
        "from decompose import Orchestrator, ScriptedChatModel\n"
        "from decompose.models.scripted import asks_for_plan\n"
        'plan = \'{"steps": [{"id": 1, "question": "2+2?"}]}\'\n'
        "orch = Orchestrator(ScriptedChatModel(rules=[(asks_for_plan, plan)], default='4'))\n"
        "assert orch.tracing is None\n"
        "print(orch.run('What is 2+2?').answer)\n"
        "print(sorted(m for m in sys.modules if m in ('decompose.tracing', 'decompose.serve.request_spans')))\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}  # no OTEL_* variables
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["4", "[]"]


def test_asking_for_an_exporter_that_is_not_built_names_the_fix():
    from decompose.errors import ConfigError
    from decompose.telemetry import _exporters

    with pytest.raises(ConfigError, match="'zipkin'") as err:
        _exporters({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert "tracer_provider" in err.value.hint
    with pytest.raises(ConfigError, match="http/protobuf"):
        _exporters({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
