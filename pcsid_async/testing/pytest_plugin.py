"""pytest fixtures for code that uses pcsid-async: a running fake ClearTax and a client for it.

Installed with the package and loaded by pytest through the ``pytest11`` entry point
``pcsid_async``; nothing to import. The fixtures are async and function-scoped; with
pytest-asyncio they are ``pytest_asyncio`` fixtures on the test's own (function-scoped) event
loop, so they work in both ``asyncio_mode = "auto"`` and ``"strict"`` (mark the tests
``@pytest.mark.asyncio`` there). A test whose loop is wider than a function (``loop_scope =
"module"``) should build its own ``FakeClearTax``: an aiohttp session works on one loop only.

Fixtures:
    fake_cleartax: a started :class:`~pcsid_async.testing.FakeClearTax`, closed after the
        test. Its ``Retry-After`` for fault 429s and 503s is 10 ms unless the marker says
        otherwise, so tests with faults do not wait whole seconds.
    fake_cleartax_devices: the ids of the devices the marker's ``devices=N`` registered.
    pcsid_client: a :class:`~pcsid_async.PcsidClient` bound to ``fake_cleartax`` (its url,
        token and VAT) with :data:`TEST_RETRY` and a 5 s timeout, closed after the test.

Markers:
    ``@pytest.mark.fake_cleartax(devices=3, **options)``: ``devices`` registers that many
    devices (with a PCSID); every other keyword goes to ``FakeClearTax`` (``faults=``,
    ``latency=``, ``activity_polls=``, ``any_otp=``, ``seed=`` ...).
    ``@pytest.mark.pcsid_client(**options)``: keywords for ``PcsidClient`` (``timeout=``,
    ``retry=``, ``rate_limit=`` ...), overriding the defaults above.

Example::

    @pytest.mark.fake_cleartax(devices=2, activity_polls=1)
    async def test_renews(pcsid_client, fake_cleartax, fake_cleartax_devices):
        for device in fake_cleartax_devices:
            await pcsid_client.renew(device, fake_cleartax.issue_otp())
        assert all(len(fake_cleartax.ledger[d]) == 1 for d in fake_cleartax_devices)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar, cast

import pytest

from pcsid_async import PcsidClient, RetryPolicy
from pcsid_async.testing import FakeClearTax

__all__ = ["TEST_RETRY", "fake_cleartax", "fake_cleartax_devices", "pcsid_client"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The plugin client's retry policy: the default's shape with millisecond backoff, so a test
#: exercises retries without sleeping for them.
TEST_RETRY: Final = RetryPolicy(
    max_attempts=3,
    initial_delay=0.001,
    max_delay=0.005,
    # Ten seconds: far above a test's few milliseconds of backoff, still bounded.
    max_elapsed=10.0,
    # One second: honours the fixture fake's 10 ms Retry-After, refuses a real outage's.
    max_retry_after=1.0,
)
# Five seconds per attempt: loopback answers take milliseconds even on a loaded CI machine.
_TEST_TIMEOUT: Final = 5.0
# Ten milliseconds: a fault's Retry-After in the fixture's fake; honoured, never slow.
_TEST_RETRY_AFTER: Final = 0.01

_DEVICES = pytest.StashKey[list[str]]()


def _async_fixture(function: _F) -> _F:
    """Declare an async fixture on the test's own loop: pytest-asyncio's when installed."""
    try:
        import pytest_asyncio  # noqa: PLC0415 -- optional: only the loop scope needs it
    except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
        return cast("_F", pytest.fixture(function))
    return cast("_F", pytest_asyncio.fixture(function, loop_scope="function"))


def _marker_options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"@pytest.mark.{name} takes keyword arguments only, got {marker.args!r}")
    return dict(marker.kwargs)


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's markers (so ``--strict-markers`` accepts them)."""
    config.addinivalue_line(
        "markers",
        "fake_cleartax(devices=0, **options): devices to register in the fake_cleartax "
        "fixture and FakeClearTax keyword arguments",
    )
    config.addinivalue_line(
        "markers", "pcsid_client(**options): PcsidClient keyword arguments for pcsid_client"
    )


@_async_fixture
async def fake_cleartax(request: pytest.FixtureRequest) -> AsyncIterator[FakeClearTax]:
    """A started fake ClearTax server on 127.0.0.1, closed after the test."""
    options = _marker_options(request, "fake_cleartax")
    devices = options.pop("devices", 0)
    options.setdefault("retry_after", _TEST_RETRY_AFTER)
    async with FakeClearTax(**options) as fake:
        request.node.stash[_DEVICES] = fake.add_devices(devices) if devices else []
        yield fake


@pytest.fixture
def fake_cleartax_devices(request: pytest.FixtureRequest, fake_cleartax: FakeClearTax) -> list[str]:
    """The ids of the devices ``@pytest.mark.fake_cleartax(devices=N)`` registered."""
    return list(request.node.stash[_DEVICES])


@_async_fixture
async def pcsid_client(
    request: pytest.FixtureRequest, fake_cleartax: FakeClearTax
) -> AsyncIterator[PcsidClient]:
    """A client bound to ``fake_cleartax`` with quick retries, closed after the test."""
    options: dict[str, Any] = {"retry": TEST_RETRY, "timeout": _TEST_TIMEOUT}
    options.update(_marker_options(request, "pcsid_client"))
    client = PcsidClient(
        fake_cleartax.token, fake_cleartax.vat, base_url=fake_cleartax.url, **options
    )
    try:
        yield client
    finally:
        await client.close()
