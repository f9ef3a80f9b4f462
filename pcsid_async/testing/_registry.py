"""The device and OTP registry: devices, single-use OTPs, the sandbox sample OTP, the ledger.

Single use: an OTP from ``issue_otp`` works for one performed renew, generate or
register-device call, with its VAT, until it expires. With ``sandbox_otp`` the sandbox's
documented sample OTP ``123345`` is also accepted, for any device of an Admin VAT, once per
device (a second performed call for that device with it answers ``Invalid-OTP``, as a spent
OTP would; register-device always makes a new device, so it is always accepted there).
``any_otp`` overrides both. register-device and generate-csr keep one device per VAT and
``EgsSerialNumber`` (``device_by_serial``).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal

from pcsid_async.testing import _wire
from pcsid_async.testing._activities import _Activities
from pcsid_async.testing._records import (
    DeviceView,
    PerformedEndpoint,
    ProcessedRenewal,
    SampleCredentials,
)
from pcsid_async.testing._state import _checks_of, _Device, _failing_of, _non_blank, _Otp

_MAX_OTPS: Final = 900_000  # of the 10**6 six-digit strings: random picks stay fast

#: The device ids the README's quickstart uses: one to renew, one to generate a PCSID for.
QUICKSTART_RENEW_DEVICE: Final = "eb645fd8-ee2e-4bdd-82b6-b69c91c9178d"
QUICKSTART_GENERATE_DEVICE: Final = "3f2c1d6e-8a4b-4c1e-9f0a-2b7d5e6c8a91"


class _Registry(_Activities):
    """Devices and OTPs: ``add_device(s)``, ``device``, ``issue_otp(s)``, ``expire_otp`` ..."""

    def add_device(
        self,
        device_id: str | None = None,
        *,
        vat: str | None = None,
        has_pcsid: bool = True,
        checks: Sequence[str] | None = None,
        failing_checks: Mapping[str, str] | None = None,
        renew_error: tuple[str, str] | None = None,
    ) -> str:
        """Register an EGS device and return its id.

        Args:
            device_id: the id; ``None`` draws a UUID4 string from the seeded generator.
            vat: the VAT it belongs to (default: the first of ``vats``); using it with any
                other VAT answers 400 ``6003`` (resource not found).
            has_pcsid: whether it already holds a production CSID (renewable) or still needs
                generate-csid.
            checks: the compliance checks its activities run (default: all six); e.g. the
                three ``Simplified*`` checks for a device issuing only simplified invoices.
            failing_checks: check name to the message text (comma-separated messages
                allowed) its activities report; with any, its activities end FAILED.
            renew_error: ``(ErrorCode, ErrorMessage)``: its renewals fail with a 400
                ``ErrorList`` from ``ZATCA`` (a planted permanent failure; nothing consumed).

        Raises:
            ValueError: on a duplicate id or an invalid check configuration.
        """
        if device_id is None:
            device_id = self._new_device_id()
        else:
            _non_blank(device_id, "device_id")
            if device_id in self._devices:
                raise ValueError(f"device {device_id!r} is already registered")
        if renew_error is not None:
            code, message = renew_error
            renew_error = (_non_blank(code, "renew_error code"), str(message))
        run = _checks_of(checks)
        self._devices[device_id] = _Device(
            device_id,
            self._vat_of(vat),
            has_pcsid=has_pcsid,
            checks=run,
            failing_checks=_failing_of(failing_checks, run),
            renew_error=renew_error,
        )
        return device_id

    def add_devices(
        self,
        n: int,
        *,
        vat: str | None = None,
        has_pcsid: bool = True,
        checks: Sequence[str] | None = None,
        failing_checks: Mapping[str, str] | None = None,
        renew_error: tuple[str, str] | None = None,
    ) -> list[str]:
        """Register ``n`` devices with generated ids (see ``add_device``); return their ids."""
        return [
            self.add_device(
                vat=vat,
                has_pcsid=has_pcsid,
                checks=checks,
                failing_checks=failing_checks,
                renew_error=renew_error,
            )
            for _ in range(n)
        ]

    def device(self, device_id: str) -> DeviceView:
        """Return a snapshot of a registered device.

        Raises:
            KeyError: if no such device is registered.
        """
        device = self._devices[device_id]
        if device.pending_activity is not None:
            self._settle(self._activities[device.pending_activity], time.monotonic())
        return DeviceView(
            device_id=device.device_id,
            vat=device.vat,
            has_pcsid=device.has_pcsid,
            renewals=device.renewals,
            generations=device.generations,
            pending_activity=device.pending_activity,
            checks=device.checks,
            failing_checks=MappingProxyType(dict(device.failing_checks)),
            renew_error=device.renew_error,
            egs_serial_number=device.egs_serial_number,
            common_name=device.common_name,
            invoice_type=device.invoice_type,
            created_by=device.created_by,
        )

    def device_by_serial(self, egs_serial_number: str, *, vat: str | None = None) -> DeviceView:
        """Return the device register-device or generate-csr made for a VAT and serial number.

        Args:
            egs_serial_number: the ``EgsSerialNumber`` sent.
            vat: the VAT it was made for (default: the first VAT).

        Raises:
            KeyError: if no such device was made over HTTP.
        """
        return self.device(self._serials[(self._vat_of(vat), egs_serial_number)])

    def issue_otp(self, *, vat: str | None = None, ttl: float | None = None) -> str:
        """Issue a fresh six-digit OTP for ``vat`` (default: the first VAT), valid ``ttl`` seconds.

        The OTP works once, for renew or generate, with that VAT, until ``ttl`` (default
        ``otp_ttl``) seconds of monotonic time have passed. OTPs are unique within the fake and
        never equal the sandbox sample ``"123345"``.
        """
        lifetime = self._otp_ttl if ttl is None else ttl
        if not lifetime >= 0.0:
            raise ValueError(f"ttl must be >= 0, got {ttl!r}")
        if len(self._otps) >= _MAX_OTPS:
            raise RuntimeError(f"this fake has issued {_MAX_OTPS} OTPs; use any_otp=True")
        owner = self._vat_of(vat)
        while True:
            otp = f"{self._otp_rng.randrange(1_000_000):06d}"
            if otp not in self._otps and otp != _wire.SANDBOX_OTP:
                break
        self._otps[otp] = _Otp(owner, time.monotonic() + lifetime)
        return otp

    def issue_otps(self, n: int, *, vat: str | None = None, ttl: float | None = None) -> list[str]:
        """Issue ``n`` OTPs at once (see ``issue_otp``), like the portal's batch."""
        return [self.issue_otp(vat=vat, ttl=ttl) for _ in range(n)]

    def expire_otp(self, otp: str) -> None:
        """Make an issued OTP expired now (it then answers ``Invalid-OTP`` "OTP has expired").

        Raises:
            KeyError: if the fake never issued ``otp``.
        """
        if otp not in self._otps:
            raise KeyError("no such OTP was issued by this fake")
        self._otps[otp].expires_at = float("-inf")

    def sample_credentials(self) -> SampleCredentials:
        """Pair every registered device with an unused OTP of its VAT, issuing OTPs as needed.

        Unused, unexpired OTPs are reused in issue order, so calling this twice without any
        renewal in between gives the same pairs. Meant for a CLI that prints what to use: it
        also names a device to renew and one to generate a PCSID for (in the default VAT), and
        the sandbox sample OTP when ``sandbox_otp`` is on.

        Raises:
            RuntimeError: before ``start()`` (the URL is not known yet).
        """
        now = time.monotonic()
        available: dict[str, deque[str]] = {}
        for otp, record in self._otps.items():
            if not record.used and record.expires_at > now:
                available.setdefault(record.vat, deque()).append(otp)
        pairs: list[tuple[str, str]] = []
        for device in self._devices.values():
            queue = available.get(device.vat)
            otp = queue.popleft() if queue else self.issue_otp(vat=device.vat)
            pairs.append((device.device_id, otp))
        return SampleCredentials(
            url=self.url,
            token=self._token,
            vat=self.vat,
            devices=tuple(pairs),
            renew_device=self._first_device(renewable=True),
            generate_device=self._first_device(renewable=False),
            sandbox_otp=_wire.SANDBOX_OTP if self._sandbox_otp else None,
        )

    def add_quickstart_devices(self) -> tuple[str, str]:
        """Register the README quickstart's two devices; return ``(to_renew, to_generate)``.

        The first (``eb645fd8-...``) holds a PCSID, for ``renew``; the second
        (``3f2c1d6e-...``) has none, for ``generate_csid``; both in the default VAT. With
        ``sandbox_otp=True`` the quickstart then runs as written against ``url``. A device
        already registered is left as it is.
        """
        for device_id, has_pcsid in (
            (QUICKSTART_RENEW_DEVICE, True),
            (QUICKSTART_GENERATE_DEVICE, False),
        ):
            if device_id not in self._devices:
                self.add_device(device_id, has_pcsid=has_pcsid)
        return QUICKSTART_RENEW_DEVICE, QUICKSTART_GENERATE_DEVICE

    def _first_device(self, *, renewable: bool) -> str | None:
        """The first device of the default VAT that renew (or generate) would accept now."""
        for device in self._devices.values():
            if device.vat != self.vat or device.pending_activity is not None:
                continue
            if renewable and device.has_pcsid and device.renew_error is None:
                return device.device_id
            if not renewable and not device.has_pcsid:
                return device.device_id
        return None

    def _new_device_id(self) -> str:
        while True:
            device_id = str(uuid.UUID(int=self._device_rng.getrandbits(128), version=4))
            if device_id not in self._devices:
                return device_id

    def _otp_problem(self, vat: str, otp: str, device_id: str, now: float) -> str | None:
        if self._any_otp:
            return None
        if self._sandbox_otp and otp == _wire.SANDBOX_OTP:
            return _wire.MSG_OTP_INVALID if device_id in self._sandbox_spent else None
        record = self._otps.get(otp)
        if record is None or record.vat != vat or record.used:
            return _wire.MSG_OTP_INVALID
        if now >= record.expires_at:
            return _wire.MSG_OTP_EXPIRED
        return None

    def _device_for(
        self, vat: str, device_id: str, *, endpoint: Literal["renew", "generate"]
    ) -> _Device | None:
        device = self._devices.get(device_id)
        if device is None and self._auto_register:
            device = _Device(
                device_id,
                vat,
                has_pcsid=endpoint == "renew",
                checks=_wire.CHECK_NAMES,
                failing_checks={},
                renew_error=None,
            )
            self._devices[device_id] = device
        if device is None or device.vat != vat:
            return None
        return device

    def _onboard_device(
        self,
        vat: str,
        fields: Mapping[str, str],
        created_by: Literal["register", "generate_csr"],
    ) -> _Device:
        """Create the device of a register-device or generate-csr call (no PCSID yet)."""
        device = _Device(
            self._new_device_id(),
            vat,
            has_pcsid=False,
            checks=_wire.CHECK_NAMES,
            failing_checks={},
            renew_error=None,
        )
        serial = fields["egs_serial_number"]
        device.egs_serial_number = serial
        device.common_name = fields["common_name"]
        device.invoice_type = fields["invoice_type"]
        device.created_by = created_by
        self._devices[device.device_id] = device
        self._serials[(vat, serial)] = device.device_id
        return device

    def _perform(self, device: _Device, otp: str, endpoint: PerformedEndpoint) -> str | None:
        """Consume the OTP, start an activity when due, write the ledger; return the activity id."""
        if self._any_otp:
            pass  # never consumed
        elif otp in self._otps:
            self._otps[otp].used = True
        else:  # the sandbox sample: spent for this device only
            self._sandbox_spent.add(device.device_id)
        activity_id = None
        if endpoint != "renew" or self._renew_starts_activity:
            activity = self._new_activity(
                device_id=device.device_id,
                device=device,
                vat=device.vat,
                origin=endpoint,
                checks=device.checks,
                failing_checks=device.failing_checks,
            )
            activity_id = activity.activity_id
        entry = ProcessedRenewal(
            device_id=device.device_id,
            otp=otp,
            endpoint=endpoint,
            at=time.monotonic(),
            activity_id=activity_id,
        )
        entries = self._ledger.get(device.device_id)
        if entries is None:
            self._ledger[device.device_id] = [entry]
        else:
            entries.append(entry)
        return activity_id
