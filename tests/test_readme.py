"""The README's examples run as written: the quickstart against the fake, the testing snippet."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import INNER_PYTEST_QUIET

from pcsid_async.testing import FakeClearTax

README = Path(__file__).resolve().parent.parent / "README.md"
TOKEN = "readme-token-77c1e0"
EXPECTED = ("renewal: GENERATED", "PCSID: GenerationStatus.GENERATED failed checks: ()")


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _block(title: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", _section(title), re.DOTALL)
    assert match is not None, f"the {title} section has no {language} block"
    return match.group(1)


def _quickstart() -> str:
    return _block("Quickstart", "python")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARTAX_")}
    env.update(extra)
    return env


async def _run_script(script: Path, env: dict[str, str]) -> tuple[int | None, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


class TestQuickstart:
    def test_quickstart_is_under_twenty_lines(self) -> None:
        lines = [line for line in _quickstart().splitlines() if line.strip()]
        assert len(lines) < 20

    def test_quickstart_defaults_to_the_sandbox(self) -> None:
        assert 'os.environ.get("CLEARTAX_BASE_URL", SANDBOX_URL)' in _quickstart()

    async def test_quickstart_runs_as_written_against_the_sandbox_spirited_fake(
        self, tmp_path: Path
    ) -> None:
        script = tmp_path / "quickstart.py"
        script.write_text(_quickstart(), encoding="utf-8")  # unchanged
        async with FakeClearTax(token=TOKEN, sandbox_otp=True, activity_polls=1) as fake:
            fake.add_quickstart_devices()
            env = _env(CLEARTAX_AUTH_TOKEN=TOKEN, CLEARTAX_VAT=fake.vat, CLEARTAX_BASE_URL=fake.url)
            code, out, err = await _run_script(script, env)
            assert code == 0, err
            for line in EXPECTED:
                assert line in out
            assert TOKEN not in out + err
            # The sample OTP works once per device, as the README says.
            code, out, err = await _run_script(script, env)
            assert code != 0
            assert "Invalid-OTP" in err

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_fake_server_sandbox_prints_the_export_line_the_quickstart_needs(
        self, tmp_path: Path
    ) -> None:
        script = tmp_path / "quickstart.py"
        script.write_text(_quickstart(), encoding="utf-8")
        server = subprocess.Popen(
            [sys.executable, "-m", "pcsid_async", "fake-server", "--sandbox"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        watchdog = threading.Timer(60, server.kill)  # never hang the suite
        watchdog.start()
        try:
            assert server.stdout is not None
            printed = []
            for line in server.stdout:
                printed.append(line)
                if line.startswith("Stop with"):
                    break
            text = "".join(printed)
            assert "The README quickstart runs against it as written:" in text
            export = next(line for line in printed if "CLEARTAX_BASE_URL=" in line).strip()
            assert export.startswith("export ")
            pairs = dict(item.split("=", 1) for item in export.removeprefix("export ").split())
            assert set(pairs) == {"CLEARTAX_AUTH_TOKEN", "CLEARTAX_VAT", "CLEARTAX_BASE_URL"}
            run = subprocess.run(
                [sys.executable, "-W", "error", str(script)],
                env=_env(**pairs),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=20)
            watchdog.cancel()
        assert run.returncode == 0, run.stderr
        for line in EXPECTED:
            assert line in run.stdout


class TestTestingSnippet:
    def test_the_snippet_passes_under_pytest_asyncio_auto_mode_as_written(
        self, tmp_path: Path
    ) -> None:
        section = "Testing your code with the fake server"
        (tmp_path / "pyproject.toml").write_text(_block(section, "toml"), encoding="utf-8")
        (tmp_path / "test_snippet.py").write_text(_block(section, "python"), encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
        run = subprocess.run(
            [*command, *INNER_PYTEST_QUIET],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "1 passed" in run.stdout

    def test_the_snippet_needs_auto_mode(self) -> None:
        toml = _block("Testing your code with the fake server", "toml")
        assert 'asyncio_mode = "auto"' in toml
        assert "pytest-asyncio" in _section("Testing your code with the fake server")


class TestExamplesHaveNoAbsoluteDates:
    def test_no_iso_date_in_any_example(self) -> None:
        text = README.read_text(encoding="utf-8")
        blocks = re.findall(r"```\w*\n(.*?)```", text, re.DOTALL)
        for block in blocks:
            assert not re.search(r"\b20\d\d-\d\d-\d\d", block), block


def _more_of_the_api() -> str:
    """The "More of the API" snippets as one script: inside the Quickstart's main()."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## More of the API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) >= 4, "the section lost its examples"
    code = "\n".join(blocks).splitlines()
    # The snippets' imports go to the top, as a reader's module would have them.
    imports = "\n".join(line for line in code if line.startswith(("from ", "import ")))
    rest = "\n".join(line for line in code if not line.startswith(("from ", "import ")))
    body = textwrap.indent(rest, " " * 8)
    return f"""\
import asyncio
import os

from pcsid_async import PcsidClient
{imports}


async def main() -> None:
    token, vat = os.environ["CLEARTAX_AUTH_TOKEN"], os.environ["CLEARTAX_VAT"]
    device_id, otp = os.environ["DEVICE_ID"], os.environ["OTP"]
    another_otp = os.environ["ANOTHER_OTP"]
    async with PcsidClient(token, vat, base_url=os.environ["BASE_URL"]) as client:
{body}

asyncio.run(main())
"""


class TestMoreOfTheApi:
    async def test_the_snippets_run_against_the_fake(self, tmp_path: Path) -> None:
        async with FakeClearTax(token=TOKEN, activity_polls=1) as fake:
            device = fake.add_device(has_pcsid=False)
            script = tmp_path / "more.py"
            script.write_text(_more_of_the_api())
            env = dict(
                os.environ,
                CLEARTAX_AUTH_TOKEN=TOKEN,
                CLEARTAX_VAT=fake.vat,
                BASE_URL=fake.url,
                DEVICE_ID=device,
                OTP=fake.issue_otp(),
                ANOTHER_OTP=fake.issue_otp(),
            )
            code, text, err = await _run_script(script, env)
            assert code == 0, err
            registered = fake.device_by_serial("1-Acme|2-T500|3-SN000777")
        assert "request id: None HTTP 200" in text
        assert "{('get_status', '200'): 1}" in text
        assert f"registered: {registered.device_id} SUCCEEDED" in text
        assert "same id: True existed: True" in text
        assert TOKEN not in text + err
