"""PCSID generation activities: creating them, their completion by polls or time, their body."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from pcsid_async.testing import _wire
from pcsid_async.testing._records import ActivityOrigin, ActivityView
from pcsid_async.testing._state import (
    _Activity,
    _checks_of,
    _Device,
    _failing_of,
    _FakeState,
)


class _Activities(_FakeState):
    """The activity book of a fake: ``create_activity``, ``activity``, ``complete_activity``."""

    def create_activity(
        self,
        device_id: str | None = None,
        *,
        vat: str | None = None,
        checks: Sequence[str] | None = None,
        failing_checks: Mapping[str, str] | None = None,
        polls: int | None = None,
        delay: float | None = None,
    ) -> str:
        """Create a PCSID generation activity directly (no generate-csid call); return its id.

        A direct activity never changes a device's state. ``polls``/``delay`` override the
        fake's ``activity_polls``/``activity_delay`` for this activity (each independently).

        Args:
            device_id: the device it is about; a registered device lends its VAT, checks and
                failing checks as defaults. An unregistered id is allowed and only reported.
            vat: the VAT it belongs to (default: the device's, else the first VAT).
            checks: the checks it runs (``TotalCount`` is their number; only they appear).
            failing_checks: check name to failure message; with any, it ends FAILED.
            polls: turns terminal on this status poll (>= 1).
            delay: turns terminal this many seconds after creation (0: no time trigger).
        """
        device = self._devices.get(device_id) if device_id is not None else None
        if device is not None:
            if vat is not None and vat != device.vat:
                raise ValueError(f"device {device_id!r} belongs to VAT {device.vat!r}")
            owner = device.vat
            run = device.checks if checks is None else _checks_of(checks)
            failing = device.failing_checks if failing_checks is None else failing_checks
        else:
            owner = self._vat_of(vat)
            run = _checks_of(checks)
            failing = failing_checks or {}
        if polls is not None and polls < 1:
            raise ValueError(f"polls must be >= 1, got {polls!r}")
        if delay is not None and not delay >= 0.0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        activity = self._new_activity(
            device_id=device_id,
            device=device,
            vat=owner,
            origin="direct",
            checks=run,
            failing_checks=_failing_of(failing, run),
            polls=polls,
            delay=delay,
        )
        return activity.activity_id

    def activity(self, activity_id: str) -> ActivityView:
        """Return a snapshot of an activity (time-based completion applied first).

        Raises:
            KeyError: if no such activity exists.
        """
        activity = self._activities[activity_id]
        self._settle(activity, time.monotonic())
        return ActivityView(
            activity_id=activity.activity_id,
            device_id=activity.device_id,
            vat=activity.vat,
            origin=activity.origin,
            state=activity.state,
            polls=activity.polls,
            polls_required=activity.polls_required,
            delay=activity.delay,
            checks=activity.checks,
            failing_checks=MappingProxyType(dict(activity.failing_checks)),
            created_at=activity.created_wall,
            completed_at=activity.completed_wall,
        )

    def complete_activity(self, activity_id: str) -> None:
        """Make an activity terminal now (SUCCEEDED, or FAILED if it has failing checks).

        Raises:
            KeyError: if no such activity exists.
        """
        activity = self._activities[activity_id]
        if activity.state == "IN_PROGRESS":
            self._complete(activity, datetime.now(timezone.utc))

    def _new_activity(
        self,
        *,
        device_id: str | None,
        device: _Device | None,
        vat: str,
        origin: ActivityOrigin,
        checks: tuple[str, ...],
        failing_checks: dict[str, str],
        polls: int | None = None,
        delay: float | None = None,
    ) -> _Activity:
        polls = self._activity_polls if polls is None else polls
        delay = self._activity_delay if delay is None else delay
        if polls is None and not delay:
            polls = 1
        while True:
            self._activity_counter += 1
            # Shaped like a Mongo ObjectId: 24 lowercase hex, a counter in the low bytes.
            activity_id = (
                f"{self._activity_rng.getrandbits(72):018x}{self._activity_counter & 0xFFFFFF:06x}"
            )
            if activity_id not in self._activities:
                break
        activity = _Activity(
            activity_id,
            device_id=device_id,
            device=device,
            vat=vat,
            origin=origin,
            checks=checks,
            failing_checks=failing_checks,
            polls_required=polls,
            delay=delay or None,
        )
        self._activities[activity_id] = activity
        return activity

    def _settle(self, activity: _Activity, now: float) -> None:
        if activity.state != "IN_PROGRESS":
            return
        required = activity.polls_required
        if required is not None and activity.polls >= required:
            self._complete(activity, datetime.now(timezone.utc))
        elif activity.delay is not None and now - activity.created_mono >= activity.delay:
            self._complete(activity, activity.created_wall + timedelta(seconds=activity.delay))

    def _complete(self, activity: _Activity, at: datetime) -> None:
        activity.state = "FAILED" if activity.failing_checks else "SUCCEEDED"
        activity.completed_wall = at
        device = activity.device
        if activity.origin in ("generate", "register") and device is not None:
            if device.pending_activity == activity.activity_id:
                device.pending_activity = None
            if activity.state == "SUCCEEDED":
                device.has_pcsid = True

    def _activity_body(self, activity: _Activity) -> dict[str, Any]:
        fmt = self._timestamp_format
        created = _wire.timestamp(activity.created_wall, fmt)
        completed = activity.completed_wall
        done = None if completed is None else _wire.timestamp(completed, fmt)
        return _wire.activity_body(
            state=activity.state,
            created=created,
            updated=created if done is None else done,
            completed=done,
            checks=activity.checks,
            failing_checks=activity.failing_checks,
        )
