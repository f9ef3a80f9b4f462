"""The devices CSV: read and validate it as a whole."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pcsid_async import (
    InvalidArgumentError,
)
from pcsid_async._client import check_token_like

if TYPE_CHECKING:
    pass

from ._common import COLUMNS, MAX_LISTED_PROBLEMS, REQUIRED_COLUMNS, UsageError, parse_timestamp


@attrs.frozen(repr=False)
class DeviceRow:
    """One validated CSV row (its ``repr`` hides the OTP)."""

    device_id: str
    otp: str
    vat: str | None
    otp_expires_at: dt.datetime | None
    row: int
    line: int

    def __repr__(self) -> str:
        return f"DeviceRow(device_id={self.device_id!r}, row={self.row}, line={self.line})"


def _cell_problem(value: str, column: str) -> str | None:
    if not value:
        return "blank cell"
    try:
        check_token_like(value, column)
    except InvalidArgumentError:
        return "contains whitespace or control characters"
    return None


def read_devices(
    path: Path, *, default_expiry: dt.datetime | None = None, strict_columns: bool = False
) -> list[DeviceRow]:
    """Read and validate a devices CSV as a whole; any problem refuses the file.

    Unknown columns (an operator's ``note``) are ignored with one warning on stderr, or
    refused with ``strict_columns``. OTPs whose length differs from most of the file's get
    one warning naming their rows (never the OTPs).

    Raises:
        UsageError: naming the rows and columns at fault (never an OTP's value).

    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader)
            except StopIteration:
                raise UsageError(
                    f"{path}: the file is empty; expected a header line 'device_id,otp'"
                ) from None
            names = _check_header(path, header, strict_columns=strict_columns)
            rows = _read_rows(path, names, reader, default_expiry)
            _warn_odd_otp_lengths(path, rows)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read the file: {exc}") from None


def _check_header(path: Path, header: list[str], *, strict_columns: bool) -> list[str]:
    names = [name.strip().lower() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        text = (
            f"{path}: line 1: unknown column(s) {', '.join(repr(n) for n in unknown)}; "
            f"the columns are {', '.join(COLUMNS)} (the last two optional)"
        )
        if strict_columns:
            raise UsageError(text + " (--strict-columns)")
        print(f"pcsid-async: warning: {text}: ignored", file=sys.stderr)
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise UsageError(
            f"{path}: line 1: missing column(s) {', '.join(missing)}; "
            "the header must name at least device_id,otp"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"{path}: line 1: column(s) named twice: {', '.join(repeated)}")
    return names


def _warn_odd_otp_lengths(path: Path, rows: Sequence[DeviceRow]) -> None:
    lengths = Counter(len(r.otp) for r in rows)
    if len(lengths) < 2:
        return
    usual = lengths.most_common(1)[0][0]
    odd = [r.row for r in rows if len(r.otp) != usual]
    listed = ", ".join(str(n) for n in odd[:MAX_LISTED_PROBLEMS])
    more = f" and {len(odd) - MAX_LISTED_PROBLEMS} more" if len(odd) > MAX_LISTED_PROBLEMS else ""
    print(
        f"pcsid-async: warning: {path}: the OTP of row(s) {listed}{more} has a different length "
        f"from the rest of the file ({usual} characters); a spreadsheet may have dropped a "
        "leading zero (format the otp column as text)",
        file=sys.stderr,
    )


def _read_rows(
    path: Path,
    names: list[str],
    reader: Any,
    default_expiry: dt.datetime | None,
) -> list[DeviceRow]:

    problems: list[str] = []
    rows: list[DeviceRow] = []
    first_seen: dict[str, tuple[int, int]] = {}
    number = 0
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, and a spreadsheet's empty trailing rows
        number += 1
        where = f"row {number} (line {line})"
        if len(cells) != len(names):
            problems.append(f"{where}: expected {len(names)} cells, found {len(cells)}")
            continue
        record = dict(zip(names, (cell.strip() for cell in cells), strict=True))
        row_problems: list[str] = []
        for column in REQUIRED_COLUMNS:
            problem = _cell_problem(record[column], column)
            if problem:
                row_problems.append(f"{where}, column {column}: {problem}")
        vat = record.get("vat") or None
        if vat is not None and _cell_problem(vat, "vat"):
            row_problems.append(f"{where}, column vat: contains whitespace or control characters")
        expires = default_expiry
        if record.get("otp_expires_at"):
            try:
                expires = parse_timestamp(
                    record["otp_expires_at"], f"{where}, column otp_expires_at"
                )
            except UsageError as exc:
                row_problems.append(str(exc))
        device_id = record["device_id"]
        if device_id and device_id in first_seen:
            first_row, first_line = first_seen[device_id]
            row_problems.append(
                f"{where}, column device_id: duplicate device {device_id!r} "
                f"(first in row {first_row}, line {first_line})"
            )
        elif device_id:
            first_seen[device_id] = (number, line)
        if row_problems:
            problems.extend(row_problems)
            continue
        rows.append(DeviceRow(device_id, record["otp"], vat, expires, number, line))
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        raise UsageError(
            f"{path} was refused as a whole; nothing was sent:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
        )
    if not rows:
        raise UsageError(f"{path}: no devices: the file has a header but no rows")
    return rows
