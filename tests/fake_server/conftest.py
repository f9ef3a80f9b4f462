"""Fixtures of the fake server's own tests: a default fake and a raw aiohttp session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from pcsid_async.testing import FakeClearTax


@pytest.fixture
async def fake() -> AsyncIterator[FakeClearTax]:
    async with FakeClearTax() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
