"""A fake ClearTax KSA onboarding server for tests, demos and benchmarks (an independent referee).

Where things live: ``_fake`` the public ``FakeClearTax`` (configuration, lifecycle) and
``run_fake_server``; ``_routes`` the HTTP pipeline; ``_endpoints`` what each endpoint does and
``ROUTES``, the one table of endpoints; ``_registry`` devices, OTPs (``sandbox_otp``) and the
ledger; ``_activities`` generation activities; ``_faults`` the seeded ``FaultPlan`` and
``_inject`` faults acted out; ``_observe`` the request log; ``_records``/``_wire``/``_state``
the snapshots handed out, the JSON shapes and the shared state.

Example::

    from pcsid_async.testing import FakeClearTax, FaultPlan

    async def test_renewal_survives_a_lost_answer():
        async with FakeClearTax(faults=FaultPlan.uniform(rate_limit=0.1), seed=7) as fake:
            device = fake.add_device()
            otp = fake.issue_otp()
            fake.inject("renew", "drop_after")  # performed, but the answer is lost
            ...  # call the client with fake.url, fake.token, fake.vat, device, otp
            assert len(fake.ledger[device]) == 1  # renewed exactly once

Besides renew-pcsid, generate-csid and pcsid-status the fake serves register-device (device,
CSID and PCSID in one call, with an OTP) and generate-csr (Generate Device ID: one device per
VAT and ``EgsSerialNumber``); ``fake.device_by_serial(serial)`` finds what they made.
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
