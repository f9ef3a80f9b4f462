"""pcsid-async: an asyncio SDK for ClearTax's Saudi (ZATCA) PCSID onboarding APIs.

Renew a device's PCSID, generate CSIDs, follow PCSID generation activities to their
final answer, and renew thousands of EGS devices within their OTPs' hour.

    async with PcsidClient(token, vat) as client:
        result = await client.renew(device_id, otp)

Where things live: ``_client`` the client (``_settings`` its checks, ``_onboarding``,
``_polling``, ``_batch``/``_renewal``/``_outcomes`` and ``_options`` its composed methods);
``_transport`` (+ ``_session``, ``_pacing``, ``_deadlines``, ``_retrying``, ``_bounded``,
``_failures``) the wire; ``_decode``/``_serde``/``_models`` answers; ``_errors``/``_hints``
errors; ``_journal*`` crash-safe batches; ``cli/`` the command line; ``testing/`` the fake server.
"""

from ._client import PRODUCTION_URL, SANDBOX_URL, PcsidClient
from ._config import RetryPolicy
from ._errors import (
    ActivityFailedError,
    ActivityTimeoutError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    EventLoopMismatchError,
    InternalServerError,
    InterruptedRenewalError,
    InvalidArgumentError,
    JournalError,
    NotFoundError,
    OtpExpiredError,
    PcsidError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._hooks import RequestEvent, ResponseEvent
from ._journal import RenewalJournal
from ._models import (
    ActivityState,
    ActivityStatus,
    CheckOutcome,
    ComplianceCheck,
    CsidGenerationResult,
    DeviceIdResult,
    DeviceRegistrationResult,
    ErrorDetail,
    GenerationStatus,
    RenewalResult,
)
from ._onboarding import DeviceDetails, OrganizationDetails
from ._outcomes import OutcomeState, RenewalOutcome, RenewalRequest
from ._version import __version__

__all__ = [
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ActivityFailedError",
    "ActivityState",
    "ActivityStatus",
    "ActivityTimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CheckOutcome",
    "ClientClosedError",
    "ComplianceCheck",
    "CsidGenerationResult",
    "DeviceDetails",
    "DeviceIdResult",
    "DeviceRegistrationResult",
    "ErrorDetail",
    "EventLoopMismatchError",
    "GenerationStatus",
    "InternalServerError",
    "InterruptedRenewalError",
    "InvalidArgumentError",
    "JournalError",
    "NotFoundError",
    "OrganizationDetails",
    "OtpExpiredError",
    "OutcomeState",
    "PcsidClient",
    "PcsidError",
    "PermissionDeniedError",
    "RateLimitError",
    "RenewalJournal",
    "RenewalOutcome",
    "RenewalRequest",
    "RenewalResult",
    "RequestEvent",
    "ResponseDecodeError",
    "ResponseEvent",
    "ResponseTooLargeError",
    "RetryPolicy",
    "__version__",
]
