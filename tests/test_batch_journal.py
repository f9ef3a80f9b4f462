"""renew_many(..., journal=...): marked before sending, recorded at the end, resume rules."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _scripted import OTHER_VAT, TOKEN, VAT
from conftest import ClientFactory

from pcsid_async import (
    InterruptedRenewalError,
    InvalidArgumentError,
    JournalError,
    OutcomeState,
    PcsidClient,
    PcsidError,
    RenewalJournal,
    RenewalOutcome,
    RenewalRequest,
    _group_commit,
)
from pcsid_async._batch_journal import GroupCommitter, recorded_outcome
from pcsid_async._journal import Action, Decision
from pcsid_async._journal_store import Row
from pcsid_async.testing import FakeClearTax


async def _run(
    client_factory: ClientFactory,
    fake: FakeClearTax,
    requests: list[RenewalRequest],
    journal: RenewalJournal | None,
    **kwargs: object,
) -> dict[str, RenewalOutcome]:
    client = client_factory(fake.url)
    outcomes = client.renew_many(requests, concurrency=4, journal=journal, **kwargs)  # type: ignore[arg-type]
    async with contextlib.aclosing(outcomes):
        return {o.device_id: o async for o in outcomes}


def _requests(fake: FakeClearTax, n: int) -> list[RenewalRequest]:
    ids = fake.add_devices(n)
    return [RenewalRequest(d, otp) for d, otp in zip(ids, fake.issue_otps(n), strict=True)]


async def test_drops_after_processing_stay_unknown_and_are_never_resent(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    requests = _requests(fake, 8)
    fake.inject("renew", "drop_after", times=3)
    path = tmp_path / "j.journal"
    first = await _run(make_client, fake, requests, RenewalJournal(path))
    unknown = {d for d, o in first.items() if o.state is OutcomeState.UNKNOWN}
    assert len(unknown) == 3
    assert fake.count("renew") == 8

    second = await _run(make_client, fake, requests, RenewalJournal(path))
    assert fake.count("renew") == 8  # nothing sent again: the journal is the referee
    assert {d for d, o in second.items() if o.state is OutcomeState.UNKNOWN} == unknown
    for device, outcome in second.items():
        assert outcome.attempts == 0
        if device in unknown:
            assert isinstance(outcome.error, PcsidError)
            assert "not sent again" in str(outcome.error)
        else:
            assert outcome.ok
            assert outcome.error is None
    with RenewalJournal(path) as journal:
        assert journal.summary()["UNKNOWN"] == 3
        assert journal.summary()["RENEWED"] == 5
        assert [r.sends for r in journal.rows()] == [1] * 8


async def test_without_the_journal_the_same_resume_resends(
    fake: FakeClearTax, make_client: ClientFactory
) -> None:
    requests = _requests(fake, 3)
    fake.inject("renew", "drop_after", times=1)
    await _run(make_client, fake, requests, None)
    await _run(make_client, fake, requests, None)
    assert fake.count("renew") == 6  # the reason the journal exists


async def test_a_new_otp_is_sent_the_same_is_not_and_retry_unknown_sends_it(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    (request,) = _requests(fake, 1)
    fake.inject("renew", "drop_after")
    path = tmp_path / "j.journal"
    assert (await _run(make_client, fake, [request], RenewalJournal(path)))[
        request.device_id
    ].state is OutcomeState.UNKNOWN
    await _run(make_client, fake, [request], RenewalJournal(path))
    assert fake.count("renew") == 1
    await _run(make_client, fake, [request], RenewalJournal(path), retry_unknown=True)
    assert fake.count("renew") == 2  # opted in: sent (the fake refuses the spent OTP)
    fresh = RenewalRequest(request.device_id, fake.issue_otp())
    outcome = (await _run(make_client, fake, [fresh], RenewalJournal(path)))[fresh.device_id]
    assert fake.count("renew") == 3
    assert outcome.ok
    assert [e.otp for e in fake.ledger[fresh.device_id]] == [request.otp, fresh.otp]


async def test_an_interrupted_device_is_unknown_and_not_sent(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    (request,) = _requests(fake, 1)
    path = tmp_path / "j.journal"
    with RenewalJournal(path) as journal:
        journal.begin(vat=VAT)
        journal.mark_sending(request.device_id, request.otp)  # then the process "died"
    outcome = (await _run(make_client, fake, [request], RenewalJournal(path)))[request.device_id]
    assert outcome.state is OutcomeState.UNKNOWN
    assert isinstance(outcome.error, InterruptedRenewalError)
    assert fake.count("renew") == 0


async def test_a_journal_error_is_raised_before_anything_is_sent(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    requests = _requests(fake, 2)
    bad = tmp_path / "bad.journal"
    bad.write_text("not a journal")
    with pytest.raises(JournalError, match=r"bad\.journal"):
        await _run(make_client, fake, requests, RenewalJournal(bad))
    held = tmp_path / "held.journal"
    with RenewalJournal(held) as other_run:
        other_run.begin(vat=VAT)
        with pytest.raises(JournalError, match="in use by another run"):
            await _run(make_client, fake, requests, RenewalJournal(held))
    other_vat = tmp_path / "vat.journal"
    with RenewalJournal(other_vat) as journal:
        journal.begin(vat=OTHER_VAT)
    with pytest.raises(JournalError, match="VAT"):
        await _run(make_client, fake, requests, RenewalJournal(other_vat))
    assert fake.count() == 0
    with pytest.raises(InvalidArgumentError, match="RenewalJournal"):
        make_client(fake.url).renew_many(requests, journal=str(held))  # type: ignore[arg-type]


class _SpyJournal(RenewalJournal):
    """Notes, as each device is marked, how many renew requests for it the fake had seen."""

    def __init__(self, path: Path, fake: FakeClearTax) -> None:
        super().__init__(path)
        self.fake = fake
        self.seen_at_mark: list[int] = []
        self.seen_at_record: list[int] = []

    def write(self, sending: list[Row], outcomes: list[Row]) -> None:
        self.seen_at_record.extend(self.fake.count("renew", device_id=r[0]) for r in outcomes)
        super().write(sending, outcomes)
        self.seen_at_mark.extend(self.fake.count("renew", device_id=r[0]) for r in sending)


def _bytes_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir())


async def test_marked_sending_before_the_post_leaves_and_no_secret_stored(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    requests = _requests(fake, 3)
    journal = _SpyJournal(tmp_path / "j.journal", fake).open()
    await _run(make_client, fake, requests, journal)
    assert journal.seen_at_mark == [0, 0, 0]
    assert journal.seen_at_record == [1, 1, 1]
    assert journal.summary()["RENEWED"] == 3
    journal.close()  # the caller opened it: the batch left it open
    data = _bytes_under(tmp_path)
    assert TOKEN.encode() not in data
    for request in requests:
        assert request.otp.encode() not in data


async def test_repeated_ids_and_bad_rows_with_a_journal(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    (request,) = _requests(fake, 1)
    rows = [request, request, RenewalRequest(123, "x"), RenewalRequest("ok-id", "")]  # type: ignore[arg-type]
    client = make_client(fake.url)
    path = tmp_path / "j.journal"
    got = [o async for o in client.renew_many(rows, journal=RenewalJournal(path))]
    assert sorted(o.state.value for o in got) == ["FAILED", "FAILED", "RENEWED", "SKIPPED"]
    with RenewalJournal(path) as journal:
        states = {r.device_id: r.state for r in journal.rows()}
    assert states == {request.device_id: "RENEWED", "ok-id": "FAILED"}
    assert fake.count("renew") == 1


def _readme_journal_example() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("### Crash-safe batches", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readme_journal_example_runs_and_resumes(
    fake: FakeClearTax, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(_readme_journal_example(), namespace)
    requests = _requests(fake, 3)
    await namespace["renew_all"](TOKEN, VAT, requests, fake.url)
    await namespace["renew_all"](TOKEN, VAT, requests, fake.url)
    assert fake.count("renew") == 3
    with RenewalJournal(tmp_path / "campaign.journal") as journal:
        assert journal.summary()["RENEWED"] == 3


class _FailingJournal(RenewalJournal):
    """A journal whose disk "fails" when one device is marked."""

    def write(self, sending: list[Row], outcomes: list[Row]) -> None:
        if any(row[0] == "dev-broken" for row in sending):
            raise OSError("disk full")
        super().write(sending, outcomes)


async def test_a_failed_journal_write_means_not_sent(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    fake.add_device("dev-broken")
    broken = RenewalRequest("dev-broken", fake.issue_otp())
    got = await _run(make_client, fake, [broken], _FailingJournal(tmp_path / "j.journal"))
    outcome = got["dev-broken"]
    assert outcome.state is OutcomeState.FAILED
    assert outcome.attempts == 0
    assert "disk full" in str(outcome.error)
    assert fake.count("renew") == 0  # never marked, so never sent


async def test_each_outcome_is_durable_before_it_is_handed_out(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    requests = _requests(fake, 12)
    path = tmp_path / "j.journal"
    client = make_client(fake.url)
    seen = []
    outcomes = client.renew_many(requests, concurrency=4, journal=RenewalJournal(path))
    async with contextlib.aclosing(outcomes):
        async for outcome in outcomes:
            with contextlib.closing(sqlite3.connect(path)) as reader:
                (state,) = reader.execute(
                    "SELECT state FROM devices WHERE device_id = ?", (outcome.device_id,)
                ).fetchone()
            seen.append((outcome.state.value, state))
    assert seen == [("RENEWED", "RENEWED")] * 12


class _UnrecordableJournal(RenewalJournal):
    """A journal whose disk "fails" whenever an outcome is recorded (sending marks land)."""

    def write(self, sending: list[Row], outcomes: list[Row]) -> None:
        if outcomes:
            raise OSError(f"disk full (token {TOKEN})")
        super().write(sending, outcomes)


async def test_a_failed_record_still_hands_out_the_outcome_and_never_resends(
    fake: FakeClearTax,
    make_client: ClientFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (request,) = _requests(fake, 1)
    path = tmp_path / "j.journal"
    got = await _run(make_client, fake, [request], _UnrecordableJournal(path))
    assert got[request.device_id].ok  # the device was renewed: the caller is told so
    (warning,) = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert request.device_id in warning.getMessage()
    assert "disk full" in warning.getMessage()
    assert TOKEN not in warning.getMessage()
    with RenewalJournal(path) as journal:
        assert [r.state for r in journal.rows()] == ["sending"]
    again = (await _run(make_client, fake, [request], RenewalJournal(path)))[request.device_id]
    assert again.state is OutcomeState.UNKNOWN
    assert isinstance(again.error, InterruptedRenewalError)
    assert fake.count("renew") == 1  # sent once, never again


async def test_a_cancelled_write_still_lands_and_wait_drains_the_commits(
    fake: FakeClearTax, tmp_path: Path
) -> None:
    (request,) = _requests(fake, 1)
    journal = RenewalJournal(tmp_path / "j.journal").open()
    journal.begin(vat=VAT)
    async with PcsidClient(TOKEN, VAT, base_url=fake.url) as client:
        commits = GroupCommitter(journal, client)
        marking = asyncio.ensure_future(commits.mark_sending(request, VAT))
        await asyncio.sleep(0)  # queued, its commit started
        marking.cancel()
        await commits.wait()
    assert marking.cancelled()
    assert [r.state for r in journal.rows()] == ["sending"]  # honest: the next run says so
    journal.close()


async def test_the_writer_commits_while_the_loop_is_busy_and_stops_after_wait(
    fake: FakeClearTax, tmp_path: Path
) -> None:
    (request,) = _requests(fake, 1)
    path = tmp_path / "j.journal"
    journal = RenewalJournal(path).open()
    journal.begin(vat=VAT)
    async with PcsidClient(TOKEN, VAT, base_url=fake.url) as client:
        commits = GroupCommitter(journal, client)
        marking = asyncio.ensure_future(commits.mark_sending(request, VAT))
        await asyncio.sleep(0)  # queued
        # The loop is blocked from here on: only the writer thread can commit the mark.
        give_up = time.monotonic() + 30
        with contextlib.closing(sqlite3.connect(path)) as reader:
            query = "SELECT state FROM devices WHERE device_id = ?"
            while reader.execute(query, (request.device_id,)).fetchone() is None:
                assert time.monotonic() < give_up, "the mark never landed"
                time.sleep(0.001)  # noqa: ASYNC251 - blocking the loop is the point
        assert not marking.done()  # committed, but the loop has not run since to settle it
        await marking
        await commits.wait()
        while any(t.name == "pcsid-journal-writer" for t in threading.enumerate()):
            assert time.monotonic() < give_up, "the writer thread did not stop"
            await asyncio.sleep(0.001)
        await commits.mark_sending(RenewalRequest("dev-later", fake.issue_otp()), VAT)
        await commits.wait()  # a write after wait() starts a writer again
    assert [r.state for r in journal.rows()] == ["sending", "sending"]
    journal.close()


async def test_an_idle_writer_stops_without_wait(
    fake: FakeClearTax, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_group_commit, "_IDLE_EXIT", 0.005)
    (request,) = _requests(fake, 1)
    journal = RenewalJournal(tmp_path / "j.journal").open()
    journal.begin(vat=VAT)
    async with PcsidClient(TOKEN, VAT, base_url=fake.url) as client:
        commits = GroupCommitter(journal, client)
        await commits.mark_sending(request, VAT)  # and no wait(): an abandoned batch
        give_up = time.monotonic() + 30
        while any(t.name == "pcsid-journal-writer" for t in threading.enumerate()):
            assert time.monotonic() < give_up, "the idle writer thread did not stop"
            await asyncio.sleep(0.001)
    assert [r.state for r in journal.rows()] == ["sending"]
    journal.close()


async def test_a_journal_the_caller_opened_stays_open_when_begin_fails(
    fake: FakeClearTax, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "vat.journal"
    with RenewalJournal(path) as journal:
        journal.begin(vat=OTHER_VAT)
    mine = RenewalJournal(path).open()
    with pytest.raises(JournalError):
        await _run(make_client, fake, _requests(fake, 1), mine)
    assert mine.summary()["total"] == 0  # still open: the caller closes it
    mine.close()


def test_an_in_flight_decision_stands_for_a_skipped_outcome() -> None:
    request = RenewalRequest("dev-1", "OTP-SECRET-1")
    decision = Decision(Action.IN_FLIGHT, "already sent in this run", "sending", None)
    outcome = recorded_outcome(request, decision, OutcomeState)
    assert outcome.state is OutcomeState.SKIPPED
    assert isinstance(outcome.error, InvalidArgumentError)
    assert outcome.attempts == 0
