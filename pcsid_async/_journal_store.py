"""The journal's storage: schema, the two write statements, the row type, atomic export.

:mod:`pcsid_async._journal` runs these; nothing here holds a connection.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TypeAlias

import attrs

__all__ = ["OUTCOME_SQL", "SCHEMA", "SENDING_SQL", "JournalRow", "Row", "export_atomically"]

FORMAT: Final = "pcsid-async-journal"
SCHEMA_VERSION: Final = 1
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    vat TEXT,
    state TEXT NOT NULL,
    otp_fp TEXT,
    otp_unspent INTEGER NOT NULL DEFAULT 0,
    record TEXT,
    sends INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    updated_at TEXT NOT NULL
);
"""
SENDING_SQL: Final = (
    "INSERT INTO devices (device_id, vat, state, otp_fp, otp_unspent, record, sends, sent_at, "
    "updated_at) VALUES (?, ?, ?, ?, 0, NULL, 1, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
    "vat = excluded.vat, state = excluded.state, otp_fp = excluded.otp_fp, otp_unspent = 0, "
    "record = NULL, sends = sends + 1, sent_at = excluded.sent_at, "
    "updated_at = excluded.updated_at"
)
OUTCOME_SQL: Final = (
    "INSERT INTO devices (device_id, vat, state, otp_fp, otp_unspent, record, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET vat = excluded.vat, "
    "state = excluded.state, otp_fp = excluded.otp_fp, otp_unspent = excluded.otp_unspent, "
    "record = excluded.record, updated_at = excluded.updated_at"
)
Row: TypeAlias = "tuple[Any, ...]"


@attrs.frozen
class JournalRow:
    """One device as the journal holds it (no OTP, no fingerprint)."""

    device_id: str
    vat: str | None
    state: str
    otp_unspent: bool
    record: dict[str, Any] | None
    sends: int
    sent_at: str | None
    updated_at: str


def export_atomically(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON line per record to ``path`` atomically; the number of lines.

    A temporary file beside ``path`` is written, fsynced and renamed over it (then the
    directory is fsynced), so ``path`` always holds a complete export.
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return count
