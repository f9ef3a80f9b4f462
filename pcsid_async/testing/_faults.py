"""Seeded fault injection for the fake server: the plan (public) and the draw (private).

A ``FaultPlan`` holds one ``EndpointFaults`` per endpoint; each gives the probability of every
fault kind. For each eligible request (see ``FakeClearTax``) the fake draws one number from a
``random.Random`` seeded from the fake's ``seed`` and the endpoint's name, and walks the fault
kinds in ``FAULT_NAMES`` order: the first whose cumulative probability exceeds the number is
injected, or none when the number lands past the sum. One generator per endpoint keeps each
endpoint's fault sequence a function of that endpoint's request order alone, however requests
to different endpoints interleave.
"""

from __future__ import annotations

import random
from typing import Any, Final, Literal

import attrs

#: The fault kinds, in the order a draw walks them.
FAULT_NAMES: Final[tuple[str, ...]] = (
    "rate_limit",
    "server_error",
    "drop_before",
    "drop_after",
    "slow",
    "malformed",
    "extra_fields",
)

#: The endpoints a plan configures (``RecordedRequest.endpoint`` minus ``"other"``):
#: ``register`` is register-device, ``generate_csr`` is generate-csr (Generate Device ID).
FaultEndpoint = Literal["renew", "generate", "status", "register", "generate_csr"]

_FAULT_ENDPOINTS: Final[tuple[FaultEndpoint, ...]] = (
    "renew",
    "generate",
    "status",
    "register",
    "generate_csr",
)

# Float sums such as 0.1 + 0.2 + 0.7 overshoot 1.0 by an ulp or two.
_SUM_TOLERANCE: Final = 1e-9


def _probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{attribute.name} must be >= 0 seconds, got {value!r}")


@attrs.frozen(kw_only=True)
class EndpointFaults:
    """Probabilities of each fault kind for one endpoint; their sum must not exceed 1.

    Each probability applies per eligible request (one that passed the authentication, VAT and
    body-shape checks). "Processed" below means the server performed the request: for renew
    and generate the OTP is consumed and a ledger entry written; for status the poll counts.

    Attributes:
        rate_limit: answer 429 with ``Retry-After`` and a bare error object; not processed.
        server_error: answer 500, 502, 503 or 504 (drawn at random) with a JSON bare error
            object, an HTML gateway page or an empty body (drawn at random); not processed.
            A 503 carries ``Retry-After``. Never looks like an activity body.
        drop_before: read the request, then close the connection without answering; not
            processed.
        drop_after: process the request, then close the connection without answering.
        slow: process the request, then wait ``slow_delay`` seconds before answering normally
            (meant to outlast the client's timeout).
        slow_delay: seconds the ``slow`` fault waits.
        malformed: process the request, then answer with its normal status but a broken body
            (the JSON cut in half, a lone ``{``, an HTML page or nothing; drawn at random).
        extra_fields: process the request and answer normally, plus unknown keys at several
            nesting levels (a client must ignore them).

    """

    rate_limit: float = attrs.field(default=0.0, validator=_probability)
    server_error: float = attrs.field(default=0.0, validator=_probability)
    drop_before: float = attrs.field(default=0.0, validator=_probability)
    drop_after: float = attrs.field(default=0.0, validator=_probability)
    slow: float = attrs.field(default=0.0, validator=_probability)
    slow_delay: float = attrs.field(default=5.0, validator=_non_negative)
    malformed: float = attrs.field(default=0.0, validator=_probability)
    extra_fields: float = attrs.field(default=0.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        total = self.total
        if total > 1.0 + _SUM_TOLERANCE:
            raise ValueError(f"fault probabilities must sum to at most 1, got {total!r}")

    @property
    def total(self) -> float:
        """The probability that a request gets some fault."""
        return sum(getattr(self, name) for name in FAULT_NAMES)  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class FaultPlan:
    """Which faults each endpoint injects, at random but reproducibly (see ``EndpointFaults``).

    Example::

        plan = FaultPlan(
            renew=EndpointFaults(drop_after=0.05),
            status=EndpointFaults(server_error=0.1),
        )
        plan = FaultPlan.uniform(rate_limit=0.02, server_error=0.02)
    """

    renew: EndpointFaults = attrs.field(factory=EndpointFaults)
    generate: EndpointFaults = attrs.field(factory=EndpointFaults)
    status: EndpointFaults = attrs.field(factory=EndpointFaults)
    register: EndpointFaults = attrs.field(factory=EndpointFaults)
    generate_csr: EndpointFaults = attrs.field(factory=EndpointFaults)

    @classmethod
    def uniform(cls, **probabilities: float) -> FaultPlan:
        """Build a plan that gives every endpoint the same ``EndpointFaults(**probabilities)``.

        Raises:
            TypeError: on an unknown fault name.
            ValueError: on a probability outside [0, 1] or a sum above 1.

        """
        faults = EndpointFaults(**probabilities)
        return cls(
            renew=faults,
            generate=faults,
            status=faults,
            register=faults,
            generate_csr=faults,
        )

    def for_endpoint(self, endpoint: FaultEndpoint) -> EndpointFaults:
        """Return the ``EndpointFaults`` configured for one endpoint."""
        faults: EndpointFaults = getattr(self, endpoint)
        return faults


class _FaultDraw:
    """One seeded generator per endpoint; draws a fault name (or none) per eligible request."""

    __slots__ = ("_rngs",)

    def __init__(self, seed: int) -> None:
        # String seeds are hashed with SHA-512 by `random`, so they are stable across runs and
        # unaffected by PYTHONHASHSEED.
        self._rngs = {e: random.Random(f"pcsid-fake/{seed}/faults/{e}") for e in _FAULT_ENDPOINTS}

    def rng(self, endpoint: FaultEndpoint) -> random.Random:
        return self._rngs[endpoint]

    def draw(self, endpoint: FaultEndpoint, faults: EndpointFaults) -> str | None:
        point = self._rngs[endpoint].random()
        cumulative = 0.0
        for name in FAULT_NAMES:
            probability: float = getattr(faults, name)
            if probability <= 0.0:
                continue
            cumulative += probability
            if point < cumulative:
                return name
        return None


def _check_endpoint(endpoint: Any) -> FaultEndpoint:
    if endpoint not in _FAULT_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {_FAULT_ENDPOINTS}, got {endpoint!r}")
    checked: FaultEndpoint = endpoint
    return checked
