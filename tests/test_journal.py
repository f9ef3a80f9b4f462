"""RenewalJournal: resume rules, durability across a real kill -9, one run at a time, bad files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from pcsid_async import (
    APIConnectionError,
    BadRequestError,
    GenerationStatus,
    InvalidArgumentError,
    JournalError,
    OtpExpiredError,
    OutcomeState,
    PcsidError,
    RateLimitError,
    RenewalJournal,
    RenewalOutcome,
    RenewalRequest,
    RenewalResult,
)
from pcsid_async._journal import Action
from pcsid_async._journal_rules import fingerprint, otp_unspent

VAT = "300000000000003"
TOKEN = "tok-SECRET-abcdef123456"


def outcome(
    device: str, otp: str, state: OutcomeState, error: PcsidError | None = None, attempts: int = 1
) -> RenewalOutcome:
    return RenewalOutcome(
        request=RenewalRequest(device, otp),
        state=state,
        result=None,
        activity=None,
        error=error,
        attempts=attempts,
        elapsed=0.01,
    )


def conn_error(reached: bool) -> APIConnectionError:
    return APIConnectionError(
        "POST /x: reset", method="POST", path="/x", may_have_reached_server=reached
    )


def status_error(cls: type[BadRequestError] | type[RateLimitError], code: int) -> PcsidError:
    return cls("refused", status_code=code, method="POST", path="/x", request_id="rq-1")


@pytest.fixture
def journal(tmp_path: Path) -> RenewalJournal:
    with RenewalJournal(tmp_path / "j.db") as j:
        j.begin(vat=VAT)
        yield j  # type: ignore[misc]


def recorded(journal: RenewalJournal, out: RenewalOutcome) -> None:
    journal.mark_sending(out.device_id, out.request.otp)
    journal.record(out, secrets=[TOKEN])


class TestResumeRules:
    def test_new_device_is_sent(self, journal: RenewalJournal) -> None:
        assert journal.decide(RenewalRequest("d1", "otp-111111")).send

    def test_renewed_is_never_sent_again(self, journal: RenewalJournal) -> None:
        recorded(journal, outcome("d1", "otp-111111", OutcomeState.RENEWED))
        for otp in ("otp-111111", "otp-222222"):
            decision = journal.decide(RenewalRequest("d1", otp))
            assert decision.action is Action.RECORDED
            assert decision.record is not None
            assert decision.record["state"] == "RENEWED"

    def test_unknown_same_otp_not_sent_unless_opted_in(self, journal: RenewalJournal) -> None:
        recorded(journal, outcome("d1", "otp-111111", OutcomeState.UNKNOWN, conn_error(True)))
        assert journal.decide(RenewalRequest("d1", "otp-111111")).action is Action.RECORDED
        assert journal.decide(RenewalRequest("d1", "otp-111111"), retry_unknown=True).send
        assert journal.decide(RenewalRequest("d1", "otp-999999")).send

    @pytest.mark.parametrize(
        ("error", "attempts"),
        [
            (status_error(RateLimitError, 429), 4),
            (conn_error(False), 2),
            (InvalidArgumentError("otp: bad"), 0),
            (OtpExpiredError("expired"), 0),
            (PcsidError("unexpected before sending"), 0),
        ],
    )
    def test_failed_with_provably_unspent_otp_is_sent(
        self, journal: RenewalJournal, error: PcsidError, attempts: int
    ) -> None:
        out = outcome("d1", "otp-111111", OutcomeState.FAILED, error, attempts)
        assert otp_unspent(out)
        recorded(journal, out)
        assert journal.decide(RenewalRequest("d1", "otp-111111")).send

    def test_invalid_otp_same_otp_not_resent_new_otp_sent(self, journal: RenewalJournal) -> None:
        out = outcome("d1", "otp-111111", OutcomeState.FAILED, status_error(BadRequestError, 400))
        assert not otp_unspent(out)
        recorded(journal, out)
        assert journal.decide(RenewalRequest("d1", "otp-111111")).action is Action.RECORDED
        assert journal.decide(RenewalRequest("d1", "otp-222222")).send
        record = next(journal.outcomes())
        assert (record["status_code"], record["request_id"]) == (400, "rq-1")

    def test_skipped_and_pending_are_eligible(self, journal: RenewalJournal) -> None:
        journal.record(outcome("d1", "otp-111111", OutcomeState.SKIPPED, attempts=0))
        journal.mark_pending(["d2"])
        assert journal.decide(RenewalRequest("d1", "otp-111111")).send
        assert journal.decide(RenewalRequest("d2", "otp-111111")).send

    def test_sending_in_this_run_is_in_flight(self, journal: RenewalJournal) -> None:
        journal.mark_sending("d1", "otp-111111")
        assert journal.decide(RenewalRequest("d1", "otp-111111")).action is Action.IN_FLIGHT

    def test_summary_and_rows(self, journal: RenewalJournal) -> None:
        recorded(journal, outcome("d1", "otp-111111", OutcomeState.RENEWED))
        journal.mark_sending("d2", "otp-222222")
        summary = journal.summary()
        assert (summary["RENEWED"], summary["sending"], summary["total"]) == (1, 1, 2)
        assert [r.sends for r in journal.rows()] == [1, 1]

    def test_writes_need_begin(self, tmp_path: Path) -> None:
        with RenewalJournal(tmp_path / "j.db") as j, pytest.raises(JournalError, match="begin"):
            j.mark_sending("d1", "otp-111111")


CHILD = textwrap.dedent(
    """
    import sys
    from pcsid_async import RenewalJournal, RenewalRequest, RenewalOutcome, OutcomeState
    j = RenewalJournal(sys.argv[1]).open()
    j.begin(vat=sys.argv[2])
    j.mark_sending("sent", "otp-111111")
    j.mark_sending("done", "otp-222222")
    j.record(RenewalOutcome(request=RenewalRequest("done", "otp-222222"),
             state=OutcomeState.RENEWED, result=None, activity=None, error=None,
             attempts=1, elapsed=0.1))
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def start_child(path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), VAT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


class TestCrash:
    def test_kill_9_leaves_sending_as_interrupted_and_releases_the_lock(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j.db"
        child = start_child(path)
        child.kill()
        child.wait()
        child.stdin.close()  # type: ignore[union-attr]
        child.stdout.close()  # type: ignore[union-attr]
        with RenewalJournal(path) as j:
            assert j.begin(vat=VAT) == ["sent"]
            decision = j.decide(RenewalRequest("sent", "otp-111111"))
            assert decision.action is Action.INTERRUPTED
            assert decision.record is not None
            assert decision.record["error_type"] == "InterruptedRenewalError"
            assert j.decide(RenewalRequest("done", "otp-222222")).action is Action.RECORDED
            assert j.decide(RenewalRequest("sent", "otp-333333")).send

    def test_second_run_refused_while_first_runs(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        child = start_child(path)
        try:
            with RenewalJournal(path) as j:
                with pytest.raises(JournalError, match="in use by another run"):
                    j.begin(vat=VAT)
                assert j.summary()["sending"] == 1  # reading is allowed
        finally:
            child.kill()
            child.wait()
            child.stdin.close()  # type: ignore[union-attr]
            child.stdout.close()  # type: ignore[union-attr]

    def test_no_secret_in_the_journal_bytes(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with RenewalJournal(path) as j:
            j.begin(vat=VAT)
            error = PcsidError(f"boom {TOKEN} otp-555555")
            j.mark_sending("d1", "otp-555555")
            j.record(outcome("d1", "otp-555555", OutcomeState.FAILED, error), secrets=[TOKEN])
            j.mark_sending("d2", "otp-666666")
            data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("j.db"))
        for secret in (TOKEN, "otp-555555", "otp-666666"):
            assert secret.encode() not in data


class TestExport:
    def test_one_line_per_device_with_an_outcome(
        self, journal: RenewalJournal, tmp_path: Path
    ) -> None:
        out = tmp_path / "r.jsonl"
        out.write_text("old torn line\n")
        recorded(journal, outcome("d1", "otp-111111", OutcomeState.RENEWED))
        recorded(journal, outcome("d1", "otp-111111", OutcomeState.RENEWED))
        recorded(journal, outcome("d2", "otp-222222", OutcomeState.UNKNOWN, conn_error(True)))
        journal.mark_sending("d3", "otp-333333")
        assert journal.export_jsonl(out) == 2
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["device_id"] for r in lines] == ["d1", "d2"]
        assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


class TestBadJournals:
    def test_garbage(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        path.write_bytes(b"device_id,otp\n")
        with pytest.raises(JournalError, match="not an SQLite") as info:
            RenewalJournal(path).open()
        assert info.value.path == str(path)

    def test_other_sqlite_database(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE t (x)")
        db.close()
        with pytest.raises(JournalError, match="not a renewal journal"):
            RenewalJournal(path).open()

    def test_truncated_journal(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with RenewalJournal(path) as j:
            j.begin(vat=VAT)
            for i in range(300):
                j.mark_sending(f"d{i}", f"otp-{i:06d}")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

        def use() -> None:
            with RenewalJournal(path) as j:
                j.begin(vat=VAT)
                j.summary()

        with pytest.raises(JournalError, match="corrupt"):
            use()

    def test_other_vat_and_other_schema(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with RenewalJournal(path) as j:
            j.begin(vat=VAT)
        with RenewalJournal(path) as j, pytest.raises(JournalError, match="a journal of VAT"):
            j.begin(vat="399999999999993")
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        db.close()
        with pytest.raises(JournalError, match="schema version 99"):
            RenewalJournal(path).open()


class TestHousekeeping:
    def test_open_close_are_idempotent_and_repr_has_no_secret(self, tmp_path: Path) -> None:
        j = RenewalJournal(tmp_path / "j.db")
        with pytest.raises(JournalError, match="not open"):
            j.summary()
        assert j.open() is j.open()
        assert j.begin(vat=VAT) == []
        assert j.begin(vat=VAT) == []  # the lock is already ours
        assert j.vat == VAT
        assert VAT in repr(j)
        j.close()
        j.close()

    def test_unopenable_path(self, tmp_path: Path) -> None:
        with pytest.raises(JournalError, match="cannot open"):
            RenewalJournal(tmp_path / "missing-dir" / "j.db").open()
        with pytest.raises(JournalError, match="cannot read"):
            RenewalJournal(tmp_path).open()

    def test_tables_without_our_format(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE meta (key, value)")
            db.execute("CREATE TABLE devices (x)")
        db.close()
        with pytest.raises(JournalError, match="not a renewal journal"):
            RenewalJournal(path).open()

    def test_failed_export_leaves_no_temp_file(
        self, journal: RenewalJournal, tmp_path: Path
    ) -> None:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "x").write_text("")
        recorded(journal, outcome("d1", "otp-111111", OutcomeState.RENEWED))
        with pytest.raises(IsADirectoryError):
            journal.export_jsonl(tmp_path / "out")
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []

    def test_record_carries_the_generation_status(self, journal: RenewalJournal) -> None:
        result = RenewalResult(status=GenerationStatus.GENERATED, activity_id="a-1")
        out = RenewalOutcome(
            request=RenewalRequest("d1", "otp-111111", vat="311111111111113"),
            state=OutcomeState.RENEWED,
            result=result,
            activity=None,
            error=None,
            attempts=1,
            elapsed=0.5,
        )
        record = journal.record(out)
        assert (record["pcsid_generated"], record["activity_id"]) == ("GENERATED", "a-1")
        assert record["vat"] == "311111111111113"

    def test_a_non_string_otp_has_no_fingerprint(self) -> None:
        assert fingerprint(b"k", 123456) is None
        assert fingerprint(b"k", "otp-1") != fingerprint(b"j", "otp-1")
