"""Spans over the wire: a real OTLP/HTTP receiver on 127.0.0.1 (POST /v1/traces, the protobuf decoded with
opentelemetry-proto) gets a run's spans from the SDK's exporter, in process and from `decompose run --otel`; an
endpoint nobody listens on costs the run nothing and is logged."""

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import REPO, TITANIC, cli, plan_json
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from servers import free_port

from decompose import Orchestrator, ScriptedChatModel
from decompose.models.scripted import asks_for_plan, asks_to_combine

pytestmark = pytest.mark.server

RULES = (REPO / "examples" / "scripted" / "rules.py").read_text().replace("latency = 0.3", "latency = 0")


class Receiver:
    """An OTLP/HTTP trace receiver: every span posted to /v1/traces, decoded, with its resource's attributes."""

    def __init__(self):
        self.spans: list[tuple[dict, object]] = []  # (resource attributes, span)
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/v1/traces" or self.headers["Content-Type"] != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        received.extend((resource, span) for span in scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_name(self) -> dict[str, list]:
        found: dict[str, list] = {}
        for _, span in self.spans:
            found.setdefault(span.name, []).append(span)
        return found

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


def attributes(span) -> dict:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def scripted():
    plan = plan_json("Capital of France?", "Capital of Spain?")
    rules = [(asks_for_plan, plan), (asks_to_combine, "Paris, Madrid"), (r"France", "Paris"), (r"Spain", "Madrid")]
    return ScriptedChatModel(rules=rules)


def test_a_runs_spans_reach_a_real_otlp_receiver(receiver):
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    result = Orchestrator(scripted(), tracer_provider=provider).run("Capitals of France and Spain?")
    assert result.answer == "Paris, Madrid"
    assert provider.force_flush(10_000)
    names = receiver.by_name()
    assert {"invoke_agent decompose", "decompose", "solve", "synthesize", "step 1", "step 2"} <= set(names)
    assert len(names["chat scripted"]) == result.usage.model_calls
    (run,) = names["invoke_agent decompose"]
    (solve,) = names["solve"]
    assert solve.parent_span_id == run.span_id and {s.parent_span_id for s in names["step 1"]} == {solve.span_id}
    steps = {s.span_id for s in names["step 1"] + names["step 2"]}
    in_steps = [attributes(c) for c in names["chat scripted"] if c.parent_span_id in steps]
    assert len(in_steps) == 2
    assert all(a["gen_ai.request.model"] == "scripted" and a["gen_ai.usage.output_tokens"] > 0 for a in in_steps)
    assert all(a["gen_ai.response.finish_reasons"] == ["stop"] for a in in_steps)
    provider.shutdown()


@pytest.mark.slow
def test_decompose_run_otel_sends_its_spans_where_the_environment_says(receiver, tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "shop-test"}
    proc = cli("run", "--otel", "--model", "scripted:rules.py", TITANIC, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Answer: James Cameron was 43" in proc.stdout
    names = receiver.by_name()  # flushed as the command exited
    assert len(names["invoke_agent decompose"]) == 1 and len(names["chat scripted"]) == 6
    assert {f"step {i}" for i in range(1, 5)} <= set(names)
    assert {resource["service.name"] for resource, _ in receiver.spans} == {"shop-test"}


@pytest.mark.slow
def test_the_environment_alone_turns_tracing_on(receiver, tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces"}
    proc = cli("run", "--model", "scripted:rules.py", TITANIC, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(receiver.by_name()["invoke_agent decompose"]) == 1
    assert {resource["service.name"] for resource, _ in receiver.spans} == {"decompose"}  # no OTEL_SERVICE_NAME


@pytest.mark.slow
def test_an_unreachable_endpoint_costs_the_run_nothing_and_is_logged(caplog):
    nobody = f"http://127.0.0.1:{free_port()}/v1/traces"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=nobody, timeout=1)))
    traced = Orchestrator(scripted(), tracer_provider=provider)
    untraced = Orchestrator(scripted())
    untraced.run("Capitals of France and Spain?")  # warm
    started = time.perf_counter()
    result = traced.run("Capitals of France and Spain?")
    took = time.perf_counter() - started
    started = time.perf_counter()
    untraced.run("Capitals of France and Spain?")
    baseline = time.perf_counter() - started
    assert result.answer == "Paris, Madrid" and result.error is None
    assert took < baseline + 0.5  # the export runs in the background: the run does not wait for it
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        started = time.perf_counter()
        provider.force_flush(10_000)  # the export fails within its 1 s timeout, retries included
        provider.shutdown()
        assert time.perf_counter() - started < 5
    failures = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter") and r.levelno >= logging.ERROR]
    assert failures and "Failed to export" in failures[-1].getMessage()


@pytest.mark.slow
def test_decompose_run_answers_when_the_collector_is_down(tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    proc = cli("run", "--otel", "--model", "scripted:rules.py", TITANIC, cwd=tmp_path, env=env)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "Answer: James Cameron was 43" in proc.stdout
    assert "Failed to export spans" in proc.stderr  # the exporter's own log line, not a traceback
    assert "Traceback" not in proc.stderr
    assert took < 30  # start-up plus at most the 3 s export timeout at exit (a loaded CI machine included)
