"""Shared fixtures: the fake ClearTax server, clients pointed at it, and tiny retry delays."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest
from _cli_support import TOKEN as CLI_TOKEN
from _cli_support import ThreadedFake
from _scripted import OTHER_VAT, TOKEN, VAT, quick_retry

from pcsid_async import PcsidClient
from pcsid_async.testing import FakeClearTax

ClientFactory = Callable[..., PcsidClient]

# For a pytest run inside a test (pytester, or a README snippet in a subprocess): Hypothesis
# and xdist are this suite's tools, not a user's, and loading them costs each inner run time
# (Hypothesis alone imports for over a second).
INNER_PYTEST_QUIET = ("-p", "no:hypothesispytest", "-p", "no:xdist")

# PCSID_TEST_LOOP=uvloop runs every test on uvloop (`nox -s tests_uvloop`). pytest-asyncio
# (>= 1.5) chooses the loop through this hook; overriding `event_loop_policy` is deprecated.
TEST_LOOP = os.environ.get("PCSID_TEST_LOOP", "asyncio")


if TEST_LOOP == "uvloop":  # defined only then: the default run keeps the plugin's own loop

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        """Every test's loop is uvloop's."""
        import uvloop

        return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def fake() -> AsyncIterator[FakeClearTax]:
    """A running fake with the test token and two VATs (VAT is the default)."""
    async with FakeClearTax(token=TOKEN, vats=(VAT, OTHER_VAT)) as server:
        yield server


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Build clients (``make_client(base_url, **kwargs)``); every one is closed at teardown.

    Defaults: the test token and VAT, a quick retry policy and a 5 s timeout.
    """
    clients: list[PcsidClient] = []

    def build(base_url: str, **kwargs: Any) -> PcsidClient:
        kwargs.setdefault("retry", quick_retry())
        kwargs.setdefault("timeout", 5.0)
        token = kwargs.pop("auth_token", TOKEN)
        vat = kwargs.pop("vat", VAT)
        client = PcsidClient(token, vat, base_url=base_url, **kwargs)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@pytest.fixture
async def client(fake: FakeClearTax, make_client: ClientFactory) -> PcsidClient:
    """A client pointed at ``fake`` with the quick retry policy."""
    return make_client(fake.url)


@pytest.fixture
def server() -> Iterator[ThreadedFake]:
    """A fake serving from its own thread, for the CLI run in-process (any OTP accepted)."""
    threaded = ThreadedFake(any_otp=True)
    try:
        yield threaded
    finally:
        threaded.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's environment: the CLI tests' token, no VAT."""
    monkeypatch.setenv("CLEARTAX_AUTH_TOKEN", CLI_TOKEN)
    monkeypatch.delenv("CLEARTAX_VAT", raising=False)
