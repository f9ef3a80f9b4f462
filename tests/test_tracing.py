"""Tracing: OpenTelemetry's aiohttp client instrumentation sees the client's own session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")

from conftest import ClientFactory
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

from pcsid_async.testing import FakeClearTax


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


def text_of(span: ReadableSpan) -> str:
    parts = [span.name, repr(dict(span.attributes or {}))]
    parts += [e.name + repr(dict(e.attributes or {})) for e in span.events]
    return " ".join(parts)


async def test_one_client_span_per_request_and_no_secret(
    exporter: InMemorySpanExporter, fake: FakeClearTax, make_client: ClientFactory
) -> None:
    client = make_client(fake.url)  # created after instrument(): its session is instrumented
    device = fake.add_device()
    otp = fake.issue_otp()
    await client.renew(device, otp)
    activity = fake.create_activity(device)
    await client.get_status(activity)
    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(spans) == fake.count() == 2
    methods = [
        (s.attributes or {}).get("http.request.method", (s.attributes or {}).get("http.method"))
        for s in spans
    ]
    assert methods == ["POST", "GET"]
    for span in spans:
        attrs = span.attributes or {}
        assert attrs.get("http.response.status_code", attrs.get("http.status_code")) == 200
        text = text_of(span)
        assert fake.token not in text
        assert otp not in text
        assert "x-cleartax-auth-token" not in text.lower()
