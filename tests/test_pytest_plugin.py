"""The pytest plugin: fixtures and markers, in pytest-asyncio's auto and strict modes (pytester).

Each inner run loads the plugin the way a user's run does: through the installed package's
``pytest11`` entry point, with nothing in its ini or conftest. The README's example runs in a
fresh interpreter (a subprocess, as a user's run); the other inner runs are in-process, where a
run costs a tenth of a new interpreter's start.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import INNER_PYTEST_QUIET

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("### The pytest plugin", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's plugin section has no python block"
    return match.group(1)


# A user's test file, exactly as the README shows it: runs in auto mode unchanged, and in
# strict mode with the asyncio marker added.
README_EXAMPLE = _readme_example()

FIXTURE_BEHAVIOUR = """
import gc

import aiohttp
import pytest
from pcsid_async import APITimeoutError, RateLimitError, RetryPolicy
from pcsid_async.testing import EndpointFaults, FakeClearTax, FaultPlan
from pcsid_async.testing.pytest_plugin import TEST_RETRY

seen = {}


async def test_the_fixtures_are_bound_together(pcsid_client, fake_cleartax, fake_cleartax_devices):
    assert isinstance(fake_cleartax, FakeClearTax)
    assert fake_cleartax.url.startswith("http://127.0.0.1:")
    assert fake_cleartax_devices == []
    device = fake_cleartax.add_device()
    result = await pcsid_client.renew(device, fake_cleartax.issue_otp())
    assert result.device_id == device
    seen["url"] = fake_cleartax.url
    seen["client"] = pcsid_client


async def test_both_were_closed_after_the_previous_test():
    assert seen["client"].closed
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(seen["url"])


async def test_each_test_gets_its_own_fake(fake_cleartax):
    assert fake_cleartax.url != seen["url"]
    assert fake_cleartax.count() == 0


@pytest.mark.fake_cleartax(
    devices=3, faults=FaultPlan(status=EndpointFaults(rate_limit=1.0)), token="tok-custom"
)
async def test_the_marker_configures_the_fake(pcsid_client, fake_cleartax, fake_cleartax_devices):
    assert len(fake_cleartax_devices) == 3
    assert fake_cleartax.token == "tok-custom"
    activity = fake_cleartax.create_activity(fake_cleartax_devices[0])
    with pytest.raises(RateLimitError):
        await pcsid_client.get_status(activity)
    assert fake_cleartax.count("status") == TEST_RETRY.max_attempts


async def test_a_fault_retry_after_is_short_by_default(pcsid_client, fake_cleartax):
    activity = fake_cleartax.create_activity()
    fake_cleartax.inject("status", "rate_limit")
    status = await pcsid_client.get_status(activity)
    assert status.activity_id == activity
    assert fake_cleartax.count("status") == 2


@pytest.mark.pcsid_client(timeout=0.2, retry=RetryPolicy.no_retries())
@pytest.mark.fake_cleartax(latency={"status": 1.0})
async def test_the_client_marker_overrides_the_defaults(pcsid_client, fake_cleartax):
    assert pcsid_client.retry.max_attempts == 1
    with pytest.raises(APITimeoutError):
        await pcsid_client.get_status(fake_cleartax.create_activity())
    assert fake_cleartax.count("status") == 1


def test_garbage_leaves_no_unclosed_resources():
    gc.collect()
"""


def configure(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(
        textwrap.dedent(
            f"""
            [pytest]
            addopts = --strict-markers -p no:cacheprovider {" ".join(INNER_PYTEST_QUIET)}
            asyncio_mode = {mode}
            asyncio_default_fixture_loop_scope = function
            filterwarnings = error
            """
        )
    )


def strict(source: str) -> str:
    """The same file for strict mode: every async test marked ``@pytest.mark.asyncio``."""
    return source.replace("\nasync def ", "\n@pytest.mark.asyncio\nasync def ")


@pytest.mark.parametrize("mode", ["auto", "strict"])
class TestModes:
    def test_the_readme_example_passes(self, pytester: pytest.Pytester, mode: str) -> None:
        configure(pytester, mode)
        pytester.makepyfile(
            test_readme=README_EXAMPLE if mode == "auto" else strict(README_EXAMPLE)
        )
        result = pytester.runpytest_subprocess("-W", "error")
        result.assert_outcomes(passed=2)

    def test_fixture_behaviour(self, pytester: pytest.Pytester, mode: str) -> None:
        configure(pytester, mode)
        source = FIXTURE_BEHAVIOUR if mode == "auto" else strict(FIXTURE_BEHAVIOUR)
        pytester.makepyfile(test_fixtures=source)
        result = pytester.runpytest_inprocess(
            "-W", "error", "-W", "error::ResourceWarning", "-p", "no:randomly"
        )
        result.assert_outcomes(passed=7)
        assert "Unclosed" not in result.stdout.str() + result.stderr.str()


class TestStrictMode:
    def test_an_unmarked_async_test_is_not_run_in_strict_mode(
        self, pytester: pytest.Pytester
    ) -> None:
        """Strict mode keeps its rule: the plugin does not turn tests into asyncio tests."""
        configure(pytester, "strict")
        pytester.makepyfile(
            """
            async def test_unmarked(pcsid_client):
                raise AssertionError("must not run")
            """
        )
        result = pytester.runpytest_inprocess()
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
        assert "must not run" not in result.stdout.str()


class TestMarkers:
    def test_the_markers_are_registered(self, pytester: pytest.Pytester) -> None:
        configure(pytester, "auto")
        result = pytester.runpytest_inprocess("--markers")
        result.stdout.fnmatch_lines(
            ["*fake_cleartax(devices=0, **options)*", "*pcsid_client(**options)*"]
        )

    def test_positional_marker_arguments_are_refused(self, pytester: pytest.Pytester) -> None:
        configure(pytester, "auto")
        pytester.makepyfile(
            """
            import pytest

            @pytest.mark.fake_cleartax(3)
            async def test_positional(fake_cleartax):
                pass
            """
        )
        result = pytester.runpytest_inprocess()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*keyword arguments only*"])

    def test_an_unknown_fake_option_is_an_error(self, pytester: pytest.Pytester) -> None:
        configure(pytester, "auto")
        pytester.makepyfile(
            """
            import pytest

            @pytest.mark.fake_cleartax(no_such_option=1)
            async def test_unknown(fake_cleartax):
                pass
            """
        )
        result = pytester.runpytest_inprocess()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*no_such_option*"])
