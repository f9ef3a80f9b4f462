"""``pcsid-async status ACTIVITY_ID``: read or follow an activity."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from typing import IO, TYPE_CHECKING, Any

from pcsid_async import (
    ActivityState,
    ActivityStatus,
    ActivityTimeoutError,
    InvalidArgumentError,
    PcsidError,
)
from pcsid_async._client import check_token_like
from pcsid_async._decode import scrub

if TYPE_CHECKING:
    pass

from ._common import (
    EXIT_NOT_ALL,
    EXIT_OK,
    REQUEST_TIMEOUT,
    VAT_ENV,
    UsageError,
    _make_client,
    _token,
)


def status_record(status: ActivityStatus) -> dict[str, Any]:
    """An activity status as a JSON-ready object."""

    def when(value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "activity_id": status.activity_id,
        "activity_type": status.activity_type,
        "state": status.state.value,
        "pcsid_generated": None if status.pcsid_generated is None else status.pcsid_generated.value,
        "created_at": when(status.created_at),
        "updated_at": when(status.updated_at),
        "completed_at": when(status.completed_at),
        "total_count": status.total_count,
        "success_count": status.success_count,
        "failure_count": status.failure_count,
        "checks": {
            check.value: {"passed": outcome.passed, "messages": list(outcome.messages)}
            for check, outcome in status.checks.items()
        },
        "failed_checks": [c.value for c in status.failed_checks],
        "errors": [
            {"code": e.code, "message": e.message, "source": e.source, "path": e.path}
            for e in status.errors
        ],
    }


def print_status(status: ActivityStatus, stream: IO[str]) -> None:
    """An activity status as a small human table."""
    record = status_record(status)
    counts = "-"
    if status.total_count is not None:
        counts = (
            f"{status.success_count or 0} passed, {status.failure_count or 0} failed "
            f"of {status.total_count}"
        )
    rows = [
        ("activity", record["activity_id"]),
        ("type", record["activity_type"] or "-"),
        ("state", record["state"]),
        ("pcsid", record["pcsid_generated"] or "-"),
        ("checks", counts),
        ("created", record["created_at"] or "-"),
        ("updated", record["updated_at"] or "-"),
        ("completed", record["completed_at"] or "-"),
    ]
    for name, value in rows:
        stream.write(f"{name:<11}{value}\n")
    for check, outcome in status.checks.items():
        text = (
            "passed"
            if outcome.passed
            else "FAILED: " + "; ".join(outcome.messages or (outcome.raw,))
        )
        stream.write(f"  {check.value:<28}{text}\n")
    for error in status.errors:
        stream.write(f"error      {error}\n")


def _cmd_status(args: argparse.Namespace) -> int:
    token = _token()
    vat = args.vat or os.environ.get(VAT_ENV, "").strip()
    if not vat:
        raise UsageError(f"no VAT: pass --vat or set {VAT_ENV}")
    client = _make_client(args, token, vat, timeout=REQUEST_TIMEOUT)
    try:
        check_token_like(args.activity_id, "ACTIVITY_ID")
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None

    def update(status: ActivityStatus) -> None:
        if not args.json and not status.is_terminal:
            print(f"... {status.state.value}", file=sys.stderr, flush=True)

    async def read() -> ActivityStatus:
        async with client:
            if args.wait:
                return await client.await_activity(
                    args.activity_id,
                    timeout=args.timeout,
                    interval=args.interval,
                    max_interval=max(args.interval, 20.0),
                    on_update=update,
                )
            # One read, retries included, within the deadline. (Not also as the request's
            # timeout: aiohttp turns a cancellation that lands with its own timeout into a
            # timeout, which the retries would then ride out.)
            return await asyncio.wait_for(client.get_status(args.activity_id), args.timeout)

    try:
        status = asyncio.run(read())
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None
    except asyncio.TimeoutError:
        print(f"pcsid-async: no answer within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NOT_ALL
    except ActivityTimeoutError as exc:
        print(f"pcsid-async: {scrub(str(exc), (token,))}", file=sys.stderr)
        if exc.last_status is not None:
            _show_status(exc.last_status, as_json=args.json)
        return EXIT_NOT_ALL
    except PcsidError as exc:
        print(f"pcsid-async: {type(exc).__name__}: {scrub(str(exc), (token,))}", file=sys.stderr)
        return EXIT_NOT_ALL
    _show_status(status, as_json=args.json)
    return EXIT_NOT_ALL if status.state is ActivityState.FAILED else EXIT_OK


def _show_status(status: ActivityStatus, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status_record(status), indent=2, ensure_ascii=False))
    else:
        print_status(status, sys.stdout)
