"""RenewalJournal: a durable SQLite record of a batch, so a restart never re-sends a spent OTP.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk when it returns, so the
``sending`` state ``mark_sending`` commits is durable before the POST leaves. One run at a
time: ``begin`` takes an exclusive ``flock`` on ``<path>.lock`` (released by the kernel when
the process dies; ``msvcrt.locking`` on Windows). The OTP is never stored, only its
HMAC-SHA256 with a random key kept in the journal (an OTP is short: the file is mode 0600).
Calls are synchronous and short (one fsync per commit); from an event loop call them through
``asyncio.to_thread`` (a lock guards the connection for that).
"""

from __future__ import annotations

import json
import os
import secrets as secrets_module
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, cast

from . import _journal_rules as rules
from . import _journal_store as store
from ._errors import JournalError
from ._journal_lock import lock as _lock
from ._journal_rules import Action, Decision
from ._journal_store import JournalRow, Row
from ._version import __version__

if TYPE_CHECKING:
    from ._batch import RenewalOutcome, RenewalRequest

__all__ = ["Action", "Decision", "JournalRow", "RenewalJournal"]

# One encoder for every record (json.dumps builds a new one per call for these separators).
_compact_json: Final = json.JSONEncoder(separators=(",", ":")).encode
_ABSENT: Final = rules.decide(None, None, same_otp=False, unspent=False, retry_unknown=False)


class RenewalJournal:
    """A batch's durable journal: per device its state, OTP fingerprint and final outcome.

    Use as a context manager (``with RenewalJournal(path) as journal:``) or ``open``/``close``.
    Reading (``rows``, ``outcomes``, ``summary``, ``export_jsonl``) needs only ``open``; a run
    calls ``begin(vat=...)`` first, then per device ``decide``, ``mark_sending`` (before the
    POST) and ``record`` (at its outcome).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._key = b""
        self._vat: str | None = None
        self._lock_file: IO[bytes] | None = None
        self._mutex = threading.Lock()
        self._known: dict[str, tuple[str, str | None, int]] | None = None  # during a run

    def __repr__(self) -> str:
        return f"RenewalJournal({str(self.path)!r}, vat={self._vat!r})"

    def _error(self, what: str) -> JournalError:
        return JournalError(f"{self.path}: {what}", path=str(self.path))

    # --- opening -----------------------------------------------------------------------------

    def __enter__(self) -> RenewalJournal:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> RenewalJournal:
        """Open (creating if absent) and validate the journal.

        Raises:
            JournalError: not an SQLite file, not a pcsid-async journal, an incompatible
                schema version, or a corrupt database.

        """
        if self._db is not None:
            return self
        self._check_header()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(f"cannot open the journal: {exc}") from None
        try:
            self._setup(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._error(f"not a usable journal (corrupt database?): {exc}") from None
        except JournalError:
            db.close()
            raise
        self._db = db
        return self

    def _check_header(self) -> None:
        try:
            with self.path.open("rb") as handle:
                head = handle.read(len(store.SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(f"cannot read the journal: {exc}") from None
        if head and head != store.SQLITE_MAGIC:
            raise self._error("not a renewal journal (not an SQLite database)")

    def _setup(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA wal_autocheckpoint=10000")  # fewer checkpoints of hot pages
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise self._error("corrupt database (integrity check failed)")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            self._create(db)
        elif not {"meta", "devices"} <= tables:
            raise self._error("an SQLite database that is not a renewal journal")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != store.FORMAT:
            raise self._error("an SQLite database that is not a renewal journal")
        if meta.get("schema_version") != str(store.SCHEMA_VERSION):
            raise self._error(
                f"journal schema version {meta.get('schema_version')} (made by pcsid-async "
                f"{meta.get('library_version')}); this version reads {store.SCHEMA_VERSION}"
            )
        self._key = bytes.fromhex(meta["hmac_key"])
        self._vat = meta.get("vat") or None

    def _create(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        for statement in store.SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        meta = {
            "format": store.FORMAT,
            "schema_version": str(store.SCHEMA_VERSION),
            "created_at": rules.now(),
            "hmac_key": secrets_module.token_bytes(32).hex(),
            "library_version": __version__,
            "vat": "",
        }
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        db.execute("COMMIT")

    def close(self) -> None:
        """Close the database and release the run lock (idempotent)."""
        with self._mutex:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            self._known = None

    @property
    def vat(self) -> str | None:
        """The VAT this journal belongs to (set by the first ``begin``)."""
        return self._vat

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise self._error("the journal is not open")
        return self._db

    # --- a run -------------------------------------------------------------------------------

    def begin(self, *, vat: str) -> list[str]:
        """Start a run: take the run lock, bind or check the VAT, settle interrupted devices.

        Every device found ``sending`` (its POST was in flight when an earlier run ended)
        becomes UNKNOWN with an :class:`~pcsid_async.InterruptedRenewalError` record.

        Returns:
            The ids of the devices found interrupted.

        Raises:
            JournalError: another process holds the journal for a run, or it belongs to
                another VAT.

        """
        db = self._conn()
        if self._lock_file is None:
            handle = open(f"{self.path}.lock", "a+b")  # noqa: SIM115 - held until close
            if not _lock(handle):
                handle.close()
                raise self._error("in use by another run (one run at a time); nothing sent")
            self._lock_file = handle
        if self._vat is not None and self._vat != vat:  # checked with the lock held
            raise self._error(f"a journal of VAT {self._vat}, not {vat}; nothing sent")
        with self._mutex:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE meta SET value = ? WHERE key = 'vat'", (vat,))
            found = db.execute(
                "SELECT device_id, vat, sent_at FROM devices WHERE state = ?", (rules.SENDING,)
            ).fetchall()
            for device_id, row_vat, sent_at in found:
                record = rules.interrupted_record(device_id, row_vat or vat, sent_at)
                db.execute(
                    "UPDATE devices SET state = 'UNKNOWN', otp_unspent = 0, record = ?, "
                    "updated_at = ? WHERE device_id = ?",
                    (json.dumps(record), record["finished_at"], device_id),
                )
            self._known = {
                d: (state, fp, unspent)
                for d, state, fp, unspent in db.execute(
                    "SELECT device_id, state, otp_fp, otp_unspent FROM devices"
                )
            }
            db.execute("COMMIT")
        self._vat = vat
        return [row[0] for row in found]

    def _running(self) -> sqlite3.Connection:
        db = self._conn()
        if self._lock_file is None:
            raise self._error("begin(vat=...) must be called before a run writes")
        return db

    def decide(self, request: RenewalRequest, *, retry_unknown: bool = False) -> Decision:
        """Whether to send ``request``, by the resume rules (see ``_journal_rules``).

        During a run (after ``begin``) the rows' states come from memory: the run lock means
        no other process writes, and every write of this journal updates that copy.
        """
        known = self._known
        if known is not None:
            row = known.get(request.device_id)
            if row is None:
                return _ABSENT
            state, otp_fp, unspent = row
            text = None if state in (rules.PENDING, rules.SENDING) else self._record_text(request)
        else:
            query = "SELECT state, otp_fp, otp_unspent, record FROM devices WHERE device_id = ?"
            with self._mutex:
                found = self._conn().execute(query, (request.device_id,)).fetchone()
            if found is None:
                return _ABSENT
            state, otp_fp, unspent, text = found
        return rules.decide(
            state,
            None if text is None else json.loads(text),
            same_otp=otp_fp == rules.fingerprint(self._key, request.otp),
            unspent=bool(unspent),
            retry_unknown=retry_unknown,
        )

    def _record_text(self, request: RenewalRequest) -> str | None:
        with self._mutex:
            found = (
                self._conn()
                .execute("SELECT record FROM devices WHERE device_id = ?", (request.device_id,))
                .fetchone()
            )
        return None if found is None else cast("str | None", found[0])

    def mark_pending(self, device_ids: Iterable[str]) -> None:
        """Add devices not yet in the journal as ``pending`` (one commit)."""
        db = self._running()
        now = rules.now()
        with self._mutex:
            db.execute("BEGIN IMMEDIATE")
            added = [(d, rules.PENDING, now) for d in device_ids if d not in (self._known or ())]
            db.executemany(
                "INSERT OR IGNORE INTO devices (device_id, state, updated_at) VALUES (?, ?, ?)",
                added,
            )
            db.execute("COMMIT")
            if self._known is not None:
                for device_id, _, _ in added:
                    self._known.setdefault(device_id, (rules.PENDING, None, 0))

    def sending_row(self, device_id: str, otp: object, vat: str | None, now: str) -> Row:
        """The parameters of one ``sending`` write (for :meth:`write`)."""
        fp = rules.fingerprint(self._key, otp)
        return (device_id, vat or self._vat, rules.SENDING, fp, now, now)

    def outcome_row(
        self,
        outcome: RenewalOutcome,
        secrets: Iterable[str],
        now: str | None = None,
        *,
        otp_fp: str | None = None,
    ) -> tuple[Row, dict[str, Any]]:
        """The parameters of one outcome write (for :meth:`write`) and its record.

        ``otp_fp``: the OTP's fingerprint if the caller has it already (its sending row's).
        """
        record = rules.outcome_record(
            outcome, default_vat=self._vat or "", secrets=secrets, finished_at=now
        )
        fp = otp_fp if otp_fp is not None else rules.fingerprint(self._key, outcome.request.otp)
        text = _compact_json(record)
        row = (str(outcome.device_id), record["vat"], record["state"], fp,
               int(record["otp_unspent"]), text, record["finished_at"])  # fmt: skip
        return row, record

    def write(self, sending: list[Row], outcomes: list[Row]) -> None:
        """Commit ``sending`` marks, then outcomes, in one durable transaction.

        Rows come from :meth:`sending_row` / :meth:`outcome_row`; one statement per kind
        (``executemany``). Durable (WAL, ``synchronous=FULL``) when this returns.
        """
        db = self._running()
        with self._mutex:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(store.SENDING_SQL, sending)
                db.executemany(store.OUTCOME_SQL, outcomes)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            known = self._known
            if known is not None:
                for row in sending:
                    known[row[0]] = (rules.SENDING, row[3], 0)
                for row in outcomes:
                    known[row[0]] = (row[2], row[3], row[4])

    def mark_sending(self, device_id: str, otp: str, *, vat: str | None = None) -> None:
        """Record that ``device_id``'s POST is about to leave; durable when this returns."""
        self.write([self.sending_row(device_id, otp, vat, rules.now())], [])

    def record(self, outcome: RenewalOutcome, *, secrets: Iterable[str] = ()) -> dict[str, Any]:
        """Commit ``outcome`` as its device's final state; return the record written.

        Do not pass the SKIPPED outcome of a repeated device id: it would replace the first
        occurrence's row. ``secrets`` (the auth token) are scrubbed from the message.
        """
        self._running()
        row, record = self.outcome_row(outcome, secrets)
        self.write([], [row])
        return record

    # --- reading -----------------------------------------------------------------------------

    def rows(self) -> Iterator[JournalRow]:
        """Every device, in the order it entered the journal."""
        db = self._conn()
        with self._mutex:
            found = db.execute(
                "SELECT device_id, vat, state, otp_unspent, record, sends, sent_at, updated_at "
                "FROM devices ORDER BY rowid"
            ).fetchall()
        for device_id, vat, state, unspent, record, sends, sent_at, updated in found:
            yield JournalRow(
                device_id=device_id,
                vat=vat,
                state=state,
                otp_unspent=bool(unspent),
                record=None if record is None else json.loads(record),
                sends=sends,
                sent_at=sent_at,
                updated_at=updated,
            )

    def outcomes(self) -> Iterator[dict[str, Any]]:
        """The outcome record of every device that has one (the results lines)."""
        for row in self.rows():
            if row.record is not None:
                yield row.record

    def summary(self) -> dict[str, int]:
        """Devices per state (every state named, zeros included), plus ``total``."""
        counts = dict.fromkeys(rules.STATES, 0)
        db = self._conn()
        with self._mutex:
            for state, count in db.execute("SELECT state, COUNT(*) FROM devices GROUP BY state"):
                counts[state] = count
        counts["total"] = sum(counts.values())
        return counts

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write one JSON line per device with an outcome to ``path``, atomically.

        A temporary file beside ``path`` is written, fsynced and renamed over it, so ``path``
        always holds a complete export. Returns the number of lines.
        """
        return store.export_atomically(path, self.outcomes())
