"""Helpers shared by the tests of the command line (its fixtures `server`, `env`: conftest)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pcsid_async.testing import FakeClearTax

TOKEN = "cli-token-SECRET-7c3e91"
VAT = "300000000000003"
_T = TypeVar("_T")


class ThreadedFake:
    """A FakeClearTax serving from its own event loop in a background thread."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = self.run(self._start(kwargs))

    async def _start(self, kwargs: dict[str, Any]) -> FakeClearTax:
        fake = FakeClearTax(token=TOKEN, vats=(VAT,), **kwargs)
        await fake.start()
        return fake

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        async def on_loop() -> _T:
            return fn(*args, **kwargs)

        return self.run(on_loop())

    @property
    def url(self) -> str:
        return self.fake.url

    def close(self) -> None:
        self.run(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def otp_of(i: int) -> str:
    return f"OTP-SECRET-{i:04d}"


def write_csv(path: Path, rows: list[str], header: str = "device_id,otp") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def add_devices(server: ThreadedFake, n: int, **kwargs: Any) -> list[str]:
    return server.call(server.fake.add_devices, n, **kwargs)


def device_csv(tmp_path: Path, ids: list[str], name: str = "devices.csv") -> Path:
    return write_csv(tmp_path / name, [f"{d},{otp_of(i)}" for i, d in enumerate(ids)])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def renew_args(server: ThreadedFake, csv_path: Path, out: Path) -> list[str]:
    return ["renew", str(csv_path), "--out", str(out), "--base-url", server.url, "--vat", VAT]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert "OTP-SECRET" not in text
