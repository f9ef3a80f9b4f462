"""Shared fixtures: the fake ClearTax server, clients pointed at it, and tiny retry delays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _scripted import OTHER_VAT, TOKEN, VAT, quick_retry

from pcsid_async import PcsidClient
from pcsid_async.testing import FakeClearTax

ClientFactory = Callable[..., PcsidClient]


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
