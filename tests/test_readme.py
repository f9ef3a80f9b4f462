"""The README's quickstart runs unchanged against FakeClearTax (only the base URL differs)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
from pathlib import Path

from pcsid_async.testing import FakeClearTax

README = Path(__file__).resolve().parent.parent / "README.md"
TOKEN = "readme-token-77c1e0"


def _quickstart() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the Quickstart section has no python block"
    return match.group(1)


async def _run(script: Path, env: dict[str, str]) -> tuple[bytes, bytes]:
    """Run ``script`` with warnings as errors; it must succeed. Returns (stdout, stderr)."""
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
    assert proc.returncode == 0, err.decode()
    return out, err


class TestQuickstart:
    def test_quickstart_is_under_twenty_lines(self) -> None:
        lines = [line for line in _quickstart().splitlines() if line.strip()]
        assert len(lines) < 20

    async def test_quickstart_runs_against_the_fake_with_only_the_base_url_changed(
        self, tmp_path: Path
    ) -> None:
        code = _quickstart()
        assert code.count("base_url=SANDBOX_URL") == 1
        async with FakeClearTax(token=TOKEN, any_otp=True, activity_polls=1) as fake:
            fake.add_device("eb645fd8-ee2e-4bdd-82b6-b69c91c9178d")
            fake.add_device("3f2c1d6e-8a4b-4c1e-9f0a-2b7d5e6c8a91", has_pcsid=False)
            script = tmp_path / "quickstart.py"
            script.write_text(code.replace("base_url=SANDBOX_URL", f"base_url={fake.url!r}"))
            env = dict(os.environ, CLEARTAX_AUTH_TOKEN=TOKEN, CLEARTAX_VAT=fake.vat)
            out, err = await _run(script, env)

        assert "renewal: GENERATED" in out.decode()
        assert "PCSID: GenerationStatus.GENERATED failed checks: ()" in out.decode()
        assert TOKEN not in out.decode() + err.decode()


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
            out, err = await _run(script, env)
            registered = fake.device_by_serial("1-Acme|2-T500|3-SN000777")
        text = out.decode()
        assert "request id: None HTTP 200" in text
        assert "{('get_status', '200'): 1}" in text
        assert f"registered: {registered.device_id} SUCCEEDED" in text
        assert "same id: True existed: True" in text
        assert TOKEN not in text + err.decode()
