"""The uvloop run (`nox -s tests_uvloop`) really runs the suite on uvloop."""

from __future__ import annotations

import asyncio

import pytest
from conftest import TEST_LOOP

from pcsid_async import PcsidClient
from pcsid_async.testing import FakeClearTax


@pytest.mark.skipif(TEST_LOOP != "uvloop", reason="PCSID_TEST_LOOP=uvloop not set")
async def test_the_loop_is_uvloop(client: PcsidClient, fake: FakeClearTax) -> None:
    import uvloop

    loop = asyncio.get_running_loop()
    assert isinstance(loop, uvloop.Loop)
    # And the client works on it, end to end.
    activity_id = fake.create_activity(delay=0.0)
    status = await client.get_status(activity_id)
    assert status.activity_id == activity_id
    assert status.succeeded
