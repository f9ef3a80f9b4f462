"""The ``status`` command."""

from __future__ import annotations

import io
import json
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from _cli_support import (
    TOKEN,
    VAT,
    ThreadedFake,
)

from pcsid_async import (
    ActivityState,
    ActivityStatus,
    ErrorDetail,
)
from pcsid_async.cli import main
from pcsid_async.cli.status import print_status


class TestStatusCommand:
    @pytest.fixture
    def server(self) -> Iterator[ThreadedFake]:
        threaded = ThreadedFake(activity_polls=1)
        try:
            yield threaded
        finally:
            threaded.close()

    def test_a_succeeded_activity_prints_a_table_and_exits_0(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity)
        code = main(["status", activity, "--base-url", server.url, "--vat", VAT])
        out = capsys.readouterr().out
        assert code == 0
        assert activity in out
        assert "SUCCEEDED" in out
        assert "StandardTaxInvoice" in out

    def test_json_output_carries_the_failed_checks_and_a_failed_activity_exits_1(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(
            server.fake.create_activity, failing_checks={"SimplifiedTaxInvoice": "BR-1, BR-2"}
        )
        code = main(["status", activity, "--json", "--base-url", server.url, "--vat", VAT])
        assert code == 1
        record = json.loads(capsys.readouterr().out)
        assert record["state"] == "FAILED"
        assert record["failed_checks"] == ["SimplifiedTaxInvoice"]
        assert record["checks"]["SimplifiedTaxInvoice"]["messages"] == ["BR-1", "BR-2"]

    def test_wait_follows_the_activity_to_its_end(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity, polls=3)
        args = ["status", activity, "--wait", "--interval", "0.01", "--base-url", server.url]
        assert main([*args, "--vat", VAT]) == 0
        captured = capsys.readouterr()
        assert "IN_PROGRESS" in captured.err
        assert "SUCCEEDED" in captured.out
        assert server.fake.count("status") == 3

    def test_wait_past_the_timeout_exits_1_with_the_last_status(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity, polls=10_000)
        args = ["status", activity, "--wait", "--timeout", "0.05", "--interval", "0.01"]
        assert main([*args, "--base-url", server.url, "--vat", VAT]) == 1
        captured = capsys.readouterr()
        assert "did not finish" in captured.err
        assert "IN_PROGRESS" in captured.out

    def test_a_read_past_the_timeout_exits_1(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity)
        server.call(server.fake.inject, "status", "slow", delay=2.0)
        args = ["status", activity, "--timeout", "0.1", "--base-url", server.url, "--vat", VAT]
        assert main(args) == 1
        assert "no answer within 0.1 s" in capsys.readouterr().err

    def test_an_unknown_activity_exits_1_with_the_servers_error(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["status", "nope", "--base-url", server.url, "--vat", VAT]) == 1
        err = capsys.readouterr().err
        assert "BadRequestError" in err
        assert TOKEN not in err

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["a/b"], "activity_id must be a single path segment"),
            (["a b"], "ACTIVITY_ID must not contain whitespace"),
            (["abc", "--vat", ""], "no VAT"),
        ],
    )
    def test_bad_arguments_are_usage_errors(
        self,
        server: ThreadedFake,
        env: None,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        expected: str,
    ) -> None:
        vat = [] if "--vat" in args else ["--vat", VAT]
        assert main(["status", *args, *vat, "--base-url", server.url]) == 2
        assert expected in capsys.readouterr().err

    def test_an_interrupt_exits_130(
        self, server: ThreadedFake, env: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def interrupted(coro: Coroutine[Any, Any, Any]) -> None:
            coro.close()
            raise KeyboardInterrupt

        monkeypatch.setattr("pcsid_async.cli.status.asyncio.run", interrupted)
        assert main(["status", "abc", "--base-url", server.url, "--vat", VAT]) == 130

    def test_a_status_without_counts_or_checks_still_prints(self) -> None:
        status = ActivityStatus(
            activity_id="abc",
            activity_type=None,
            state=ActivityState.IN_PROGRESS,
            errors=(ErrorDetail("6003", "Activity not found"),),
        )
        stream = io.StringIO()
        print_status(status, stream)
        text = stream.getvalue()
        assert "IN_PROGRESS" in text
        assert "[6003] Activity not found" in text
        assert "checks     -" in text
