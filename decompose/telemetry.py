"""Whether a run is traced, and the tracer provider the `OTEL_*` environment variables describe.

Tracing is off unless asked for: `Orchestrator(tracer_provider=...)`, `--otel` on the commands, or an
environment that names where traces go (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or an
exporter in `OTEL_TRACES_EXPORTER`). Standard library only: while tracing is off, OpenTelemetry is never imported,
so an untraced run pays nothing for it (`decompose/tracing.py` is imported only once tracing is on).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from decompose.errors import ConfigError

if TYPE_CHECKING:
    from decompose.tracing import Tracing

# The switch OpenTelemetry's own GenAI instrumentations read for recording prompts and replies.
CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
INSTALL_HINT = 'pip install "decompose-agents[otel]"'
# Seconds an OTLP export may take, retries included, unless OTEL_EXPORTER_OTLP_TIMEOUT says: the exporter's own 10
# would hold a command's exit that long when the collector is down (its last spans are flushed at exit).
EXPORT_TIMEOUT = 3.0

_lock = threading.Lock()
_provider: Any = None  # the environment's provider, built once per process


def tracing(provider: Any = None, content: bool | None = None) -> Tracing | None:
    """How an Orchestrator traces: with `provider` (an OpenTelemetry `TracerProvider`), else with the environment's
    when it asks for traces, else not at all (None). `content` records questions, answers and tool arguments and
    results on the spans; None reads `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`."""
    from_environment = provider is None
    if from_environment:
        if not wanted(os.environ):
            return None
        provider = environment_provider()
    if content is None:
        content = os.environ.get(CONTENT_VARIABLE, "").strip().lower() == "true"
    from decompose.tracing import Tracing

    return Tracing(provider, content=content, from_environment=from_environment)


def wanted(env: Mapping[str, str]) -> bool:
    """True when the environment names where traces go (and does not turn OpenTelemetry off)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def environment_provider() -> Any:
    """The process's tracer provider as `OTEL_*` describes it: the application's own when it has set an SDK one
    (e.g. under `opentelemetry-instrument`), else one built here once, exporting in a background thread over
    OTLP/HTTP (`OTEL_TRACES_EXPORTER=otlp`, the default, to `OTEL_EXPORTER_OTLP_ENDPOINT` or localhost:4318) or to
    the console. It is not made the global provider: the application's global state stays its own."""
    global _provider
    with _lock:
        if _provider is None:
            _provider = _build_provider()
        return _provider


def _build_provider() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(f"tracing needs the OpenTelemetry SDK ({exc})", hint=INSTALL_HINT) from None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the application configured OpenTelemetry itself
        return current
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):  # no OTEL_SERVICE_NAME
        resource = resource.merge(Resource({"service.name": "decompose"}))
    provider = TracerProvider(resource=resource)  # shut down (its spans flushed) when the process exits
    for exporter in _exporters(os.environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    made: list[Any] = []
    for name in names:
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol.strip() != "http/protobuf":
                raise ConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: decompose exports OTLP over HTTP (http/protobuf) only",
                    hint="set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (a collector listens on :4318 for it), or "
                    "pass Orchestrator(tracer_provider=...) with the exporter you need",
                )
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise ConfigError(f"OTLP export needs the OTLP/HTTP exporter ({exc})", hint=INSTALL_HINT) from None
            timeout = env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")
            # endpoint, headers, compression (and a timeout given) from OTEL_EXPORTER_OTLP_*
            made.append(OTLPSpanExporter(timeout=None if timeout else EXPORT_TIMEOUT))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            made.append(ConsoleSpanExporter())
        elif name != "none":
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER names an exporter decompose does not build: {name!r}",
                hint="use otlp (OTLP over HTTP), console or none; for another exporter pass "
                "Orchestrator(tracer_provider=...)",
            )
    return made
