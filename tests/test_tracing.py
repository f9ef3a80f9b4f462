"""Tracing: OpenTelemetry's aiohttp client instrumentation sees the client's own session."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

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


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_tracing_setup() -> str:
    section = README.read_text(encoding="utf-8").split("## Tracing and error hints", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's tracing section has no python block"
    return match.group(1)


async def test_the_readme_setup_prints_a_span_per_request_without_secrets(
    fake: FakeClearTax, tmp_path: Path
) -> None:
    device, otp = fake.add_device(), fake.issue_otp()
    script = tmp_path / "traced.py"
    script.write_text(
        _readme_tracing_setup()
        + textwrap.dedent(
            f"""
            import asyncio, os
            from pcsid_async import PcsidClient

            async def main():
                token, vat = os.environ["CLEARTAX_AUTH_TOKEN"], os.environ["CLEARTAX_VAT"]
                async with PcsidClient(token, vat, base_url={fake.url!r}) as client:
                    await client.renew({device!r}, os.environ["OTP"])

            asyncio.run(main())
            provider.shutdown()
            """
        )
    )
    env = dict(os.environ, CLEARTAX_AUTH_TOKEN=fake.token, CLEARTAX_VAT=fake.vat, OTP=otp)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    spans = [json.loads(chunk) for chunk in _json_objects(out.decode())]
    assert [s["kind"] for s in spans] == ["SpanKind.CLIENT"]
    assert "renew-pcsid" in json.dumps(spans[0]["attributes"])
    for secret in (fake.token, otp):
        assert secret not in out.decode() + err.decode()


def _json_objects(text: str) -> list[str]:
    """The top-level JSON objects ConsoleSpanExporter printed one after another."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (start := text.find("{", index)) != -1:
        _, end = decoder.raw_decode(text, start)
        found.append(text[start:end])
        index = end
    return found
