"""Batch renewal of many devices (``renew_many``); the top of the client's layers."""

from __future__ import annotations

from ._polling import PollingClient

__all__ = ["PcsidClient"]


class PcsidClient(PollingClient):
    """An asyncio client for ClearTax's KSA PCSID onboarding APIs.

    Use it as an async context manager (or call :meth:`close`)::

        async with PcsidClient(token, vat) as client:
            result = await client.renew(device_id, otp)

    Calls: :meth:`renew`, :meth:`generate_csid`, :meth:`get_status`; waiting:
    :meth:`await_activity`, :meth:`watch`.
    """

    async def __aenter__(self) -> PcsidClient:
        await super().__aenter__()
        return self


PcsidClient.__module__ = "pcsid_async"
