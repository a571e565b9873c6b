"""Send spans computed from the log through the OpenTelemetry SDK's OTLP/HTTP exporter.

The spans already carry their ids and times, so they are handed to the exporter as
finished ``ReadableSpan`` values instead of being re-created by a tracer (which would
stamp the current time and random ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agentledger.errors import RuntimeFailure
from agentledger.otel.spans import SpanRecord

SCOPE = InstrumentationScope("agentledger.otel", "0.1.0")
BATCH = 512


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(
        trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def to_readable(span: SpanRecord, resource: Resource) -> ReadableSpan:
    status = (
        Status(StatusCode.ERROR, span.error_message or span.error_type)
        if span.error_type
        else Status(StatusCode.OK)
    )
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id),
        parent=_context(span.trace_id, span.parent_span_id) if span.parent_span_id else None,
        resource=resource,
        attributes=span.attributes,
        kind=SpanKind.CLIENT if span.kind == "CLIENT" else SpanKind.INTERNAL,
        status=status,
        start_time=_ns(span.start),
        end_time=_ns(span.end),
        instrumentation_scope=SCOPE,
    )


class SpanSender:
    """An OTLP/HTTP exporter for spans from the log.

    ``endpoint`` is the full traces URL (``http://host:4318/v1/traces``); without it the
    exporter reads ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        service_name: str = "agentledger",
        resource_attributes: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.resource = Resource.create(
            {"service.name": service_name} | (resource_attributes or {})
        )
        self.exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s)
        self.sent = 0

    def send(self, spans: Sequence[SpanRecord]) -> int:
        """Export ``spans``; raise ``RuntimeFailure`` when the receiver refuses them."""
        for i in range(0, len(spans), BATCH):
            chunk = [to_readable(s, self.resource) for s in spans[i : i + BATCH]]
            if self.exporter.export(chunk) is not SpanExportResult.SUCCESS:
                raise RuntimeFailure(
                    f"the OTLP receiver did not accept {len(chunk)} spans "
                    f"(endpoint {self.exporter._endpoint}); is it running?"
                )
            self.sent += len(chunk)
        return len(spans)

    def close(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]
