"""The devices CSV: refused as a whole, or accepted with warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_support import (
    ThreadedFake,
    add_devices,
    assert_no_secret,
    otp_of,
    read_jsonl,
    renew_args,
    write_csv,
)

from pcsid_async.cli import main
from pcsid_async.cli.csv_input import read_devices


class TestCsvIsRefusedAsAWhole:
    @pytest.mark.parametrize(
        ("header", "rows", "expected"),
        [
            ("device_id", ["dev-1"], "missing column(s) otp"),
            ("device_id,otp,otp", ["dev-1,OTP-SECRET-0001,x"], "named twice: otp"),
            ("device_id,otp", ["dev-1,"], "row 1 (line 2), column otp: blank cell"),
            ("device_id,otp", ["dev-1,OTP-SECRET-0001", ",OTP-SECRET-0002"], "row 2 (line 3)"),
            ("device_id,otp", ["dev-1,OTP-SECRET 0001"], "column otp: contains whitespace"),
            ("device_id,otp", ["dev-1,OTP-SECRET-0001,extra"], "expected 2 cells, found 3"),
            (
                "device_id,otp",
                ["dev-1,OTP-SECRET-0001", "dev-2,OTP-SECRET-0002", "dev-1,OTP-SECRET-0003"],
                "row 3 (line 4), column device_id: duplicate device 'dev-1' (first in row 1",
            ),
            ("device_id,otp,vat", ["dev-1,OTP-SECRET-0001,30 01"], "column vat"),
            (
                "device_id,otp,otp_expires_at",
                ["dev-1,OTP-SECRET-0001,2030-01-01T10:00:00"],
                "column otp_expires_at: the timestamp needs a timezone",
            ),
            (
                "device_id,otp,otp_expires_at",
                ["dev-1,OTP-SECRET-0001,next tuesday"],
                "column otp_expires_at: not an ISO-8601 timestamp",
            ),
            ("device_id,otp", [], "no devices"),
        ],
    )
    def test_a_malformed_file_exits_2_naming_row_and_column_but_no_otp(
        self,
        server: ThreadedFake,
        env: None,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        header: str,
        rows: list[str],
        expected: str,
    ) -> None:
        csv_path = write_csv(tmp_path / "devices.csv", rows, header=header)
        assert main(renew_args(server, csv_path, tmp_path / "r.jsonl")) == 2
        captured = capsys.readouterr()
        assert expected in captured.err
        assert_no_secret(captured.out, captured.err)
        assert server.fake.count() == 0
        assert not (tmp_path / "r.jsonl").exists()

    def test_unknown_columns_are_refused_with_strict_columns(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csv_path = write_csv(
            tmp_path / "d.csv", ["dev-1,OTP-SECRET-0001,red"], header="device_id,otp,colour"
        )
        args = [*renew_args(server, csv_path, tmp_path / "r.jsonl"), "--strict-columns"]
        assert main(args) == 2
        assert "unknown column(s) 'colour'" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_many_problems_are_listed_together_and_counted(
        self, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csv_path = write_csv(tmp_path / "d.csv", [f"dev-{i}," for i in range(30)])
        assert main(["renew", str(csv_path), "--out", str(tmp_path / "r.jsonl")]) == 2
        err = capsys.readouterr().err
        assert "row 20 (line 21)" in err
        assert "and 10 more" in err

    def test_blank_lines_are_ignored_and_a_bom_is_accepted(
        self, server: ThreadedFake, env: None, tmp_path: Path
    ) -> None:
        ids = add_devices(server, 2)
        csv_path = tmp_path / "d.csv"
        csv_path.write_text(
            f"\ufeffDevice_ID , OTP\n{ids[0]},{otp_of(0)}\n\n,\n{ids[1]} , {otp_of(1)} \n",
            encoding="utf-8",
        )
        assert main(renew_args(server, csv_path, tmp_path / "r.jsonl")) == 0
        assert server.fake.count("renew") == 2

    @pytest.mark.parametrize("content", [None, "", b"\xff\xfe\x00bad"])
    def test_a_missing_empty_or_unreadable_file_is_a_usage_error(
        self,
        env: None,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        content: str | bytes | None,
    ) -> None:
        csv_path = tmp_path / "d.csv"
        if isinstance(content, bytes):
            csv_path.write_bytes(content)
        elif content is not None:
            csv_path.write_text(content)
        assert main(["renew", str(csv_path), "--out", str(tmp_path / "r.jsonl")]) == 2
        assert str(csv_path) in capsys.readouterr().err


class TestCsvWarnings:
    def test_an_unknown_column_is_ignored_with_one_warning(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 3)
        rows = [f"{d},{otp_of(i)},kept in the spreadsheet" for i, d in enumerate(ids)]
        csv_path = write_csv(tmp_path / "d.csv", rows, header="device_id,otp,note")
        out = tmp_path / "r.jsonl"
        assert main(renew_args(server, csv_path, out)) == 0
        err = capsys.readouterr().err
        assert err.count("warning") == 1
        assert "unknown column(s) 'note'" in err
        assert len(read_jsonl(out)) == 3

    def test_an_otp_of_odd_length_is_named_by_row_not_printed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rows = ["dev-1,123456", "dev-2,654321", "dev-3,23456", "dev-4,111111"]
        read_devices(write_csv(tmp_path / "d.csv", rows))
        err = capsys.readouterr().err
        assert err.count("warning") == 1
        assert "row(s) 3 " in err
        assert "leading zero" in err
        assert "23456" not in err

    def test_otps_of_one_length_give_no_warning(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        read_devices(write_csv(tmp_path / "d.csv", ["dev-1,123456", "dev-2,654321"]))
        assert capsys.readouterr().err == ""
