"""A fake ClearTax KSA onboarding server for tests, demos and benchmarks.

``FakeClearTax`` serves the three onboarding endpoints (renew-pcsid, generate-csid,
pcsid-status) on 127.0.0.1 with the contract's status codes and JSON shapes, keeps a device
registry, single-use OTPs and PCSID generation activities, logs every request (without
secrets), keeps a ledger of the renewals it actually performed, and injects faults either
deterministically (``inject``) or at random from a seeded ``FaultPlan``. It imports nothing
else from ``pcsid_async``: it is an independent referee of the client.

Example::

    from pcsid_async.testing import FakeClearTax, FaultPlan

    async def test_renewal_survives_a_lost_answer():
        async with FakeClearTax(faults=FaultPlan.uniform(rate_limit=0.1), seed=7) as fake:
            device = fake.add_device()
            otp = fake.issue_otp()
            fake.inject("renew", "drop_after")  # performed, but the answer is lost
            ...  # call the client with fake.url, fake.token, fake.vat, device, otp
            assert len(fake.ledger[device]) == 1  # renewed exactly once
"""

from pcsid_async.testing._fake import FakeClearTax, run_fake_server
from pcsid_async.testing._faults import FAULT_NAMES, EndpointFaults, FaultPlan
from pcsid_async.testing._records import (
    ActivityView,
    DeviceView,
    ProcessedRenewal,
    RecordedRequest,
    SampleCredentials,
)
from pcsid_async.testing._wire import API_PREFIX, CHECK_NAMES

__all__ = [
    "API_PREFIX",
    "ActivityView",
    "CHECK_NAMES",
    "DeviceView",
    "EndpointFaults",
    "FAULT_NAMES",
    "FakeClearTax",
    "FaultPlan",
    "ProcessedRenewal",
    "RecordedRequest",
    "SampleCredentials",
    "run_fake_server",
]
