"""For the soak test: a FakeClearTax under faults in its own process; prints its URL, serves."""

from __future__ import annotations

import asyncio
import sys

from pcsid_async.testing import EndpointFaults, FakeClearTax, FaultPlan

PLAN = FaultPlan(
    renew=EndpointFaults(
        rate_limit=0.02,
        server_error=0.02,
        drop_before=0.01,
        drop_after=0.01,
        slow=0.005,
        slow_delay=0.5,
        malformed=0.01,
        extra_fields=0.02,
    )
)


async def main(token: str) -> None:
    async with FakeClearTax(
        token=token,
        faults=PLAN,
        retry_after=0.01,
        any_otp=True,
        auto_register=True,
        record_requests=False,
        seed=99,
    ) as fake:
        print(fake.url, flush=True)
        # Serve until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
