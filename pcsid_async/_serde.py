"""The package's own cattrs converter: wire-name rule, tolerant nesting, timestamps.

The wire speaks PascalCase (``DeviceId``); models are snake_case (``device_id``). The rule is
:func:`wire_name`, applied to every attrs model by a hook factory, so models carry no
wire annotations. Unknown keys are ignored everywhere. cattrs' validation errors become a
single :class:`~pcsid_async.ResponseDecodeError` whose reason names the wire field.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._errors import ResponseDecodeError
from ._models import (
    ActivityState,
    ActivityStatus,
    CheckOutcome,
    ComplianceCheck,
    CsidGenerationResult,
    ErrorDetail,
    FrozenMap,
    GenerationStatus,
    RenewalResult,
)

__all__ = [
    "converter",
    "errors_from_body",
    "fast_activity",
    "fast_renewal",
    "parse_timestamp",
    "structure_activity",
    "structure_csid",
    "structure_renewal",
    "wire_name",
]

_T = TypeVar("_T")

# Field names whose wire name is not simply the field's PascalCase.
_WIRE_EXCEPTIONS: Final[Mapping[str, str]] = {
    "errors": "ErrorList",
    "activity_id": "PcsidGenerationActivityId",
    "state": "Status",
    "code": "ErrorCode",
    "message": "ErrorMessage",
    "source": "ErrorSource",
}


# Model fields the decoder sets (the answer's request id and HTTP status; generate-csr's
# warnings, split from its ErrorList), never read from a body under a wire name.
_NOT_FROM_BODY: Final = frozenset({"request_id", "status_code", "warnings"})


@functools.cache  # the request bodies ask for their two keys on every call
def wire_name(field: str) -> str:
    """Return the wire name of a model field: ``device_id`` -> ``DeviceId``."""
    try:
        return _WIRE_EXCEPTIONS[field]
    except KeyError:
        return "".join(part[:1].upper() + part[1:] for part in field.split("_"))


# --- timestamps ------------------------------------------------------------------------------

_ISO_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# Epoch values above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD: Final = 100_000_000_000
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _from_epoch(value: float) -> dt.datetime:
    if abs(value) >= _MS_THRESHOLD:
        # Exact timedelta arithmetic: value / 1000 in floats can land a microsecond off.
        return _EPOCH + dt.timedelta(milliseconds=value)
    return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def _parse_iso_slow(text: str) -> dt.datetime:
    match = _ISO_RE.match(text)
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = dt.timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        tz = dt.timezone(sign * offset)
    parsed = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )
    return parsed.astimezone(dt.timezone.utc)


def _parse_iso_fast(text: str) -> dt.datetime:
    # Python 3.11's fromisoformat reads every ISO-8601 form we accept ("Z" included).
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return _parse_iso_slow(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


_parse_iso: Final = _parse_iso_fast if sys.version_info >= (3, 11) else _parse_iso_slow
_fromisoformat: Final = dt.datetime.fromisoformat if sys.version_info >= (3, 11) else None
_UTC: Final = dt.timezone.utc


def parse_timestamp(value: object) -> dt.datetime:
    """Parse a wire timestamp into an aware UTC datetime.

    Accepts ISO-8601 (``Z`` or an offset, with or without fractions; no zone means UTC) and
    epoch seconds or milliseconds, as numbers or numeric strings.

    Raises:
        ValueError: for anything else.

    """
    if isinstance(value, bool):
        raise ValueError("expected a timestamp, got a boolean")
    if isinstance(value, (int, float)):
        try:
            return _from_epoch(value)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"epoch value out of range: {value!r}") from exc
    if isinstance(value, str):
        text = value.strip()
        if text[4:5] == "-" and text[:4].isdigit():
            # An ISO date, which float() can never parse: skip the cost of its exception.
            return _parse_iso(text)
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text)
        return parse_timestamp(number)
    raise ValueError(f"expected a timestamp, got {type(value).__name__}")


# --- the converter ---------------------------------------------------------------------------

converter: Final = cattrs.Converter(forbid_extra_keys=False)


def _structure_str(value: object, _: object) -> str:
    # cattrs' default str() would turn a dict into "{...}"; a number is a tolerable id/code.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _structure_int(value: object, _: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"expected a whole number, got {value!r:.40}")


def _structure_datetime(value: object, _: object) -> dt.datetime:
    return parse_timestamp(value)


def _structure_error_detail(value: object, _: object) -> ErrorDetail:
    detail = _error_detail(value)
    if detail is None:
        raise ValueError("expected an Error Details object")
    return detail


def _structure_errors(value: object, _: object) -> tuple[ErrorDetail, ...]:
    if not value:  # null, [] or {}: the usual answer, and never any details
        return ()
    return errors_from_body(value)


def _structure_enum(value: object, cls: type[enum.Enum]) -> enum.Enum:
    # A dict lookup first: calling the enum class costs a microsecond per field decoded.
    member = cls._value2member_map_.get(value) if isinstance(value, str) else None
    if member is not None:
        return member
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in cls)
        raise ValueError(f"{value!r:.40} is not one of {allowed}") from None


def _structure_check(value: object, _: object) -> CheckOutcome:
    if value == "SUCCEEDED":
        return _PASSED
    return CheckOutcome.from_raw(_structure_str(value, None))


def _structure_checks(value: object, _: object) -> Mapping[ComplianceCheck, CheckOutcome]:
    if not isinstance(value, Mapping):
        raise ValueError("expected an object of checks")
    checks = {}
    for name, text in value.items():
        try:
            check = _CHECK_BY_NAME.get(name)
            if check is None:
                check = ComplianceCheck(name)  # raises the ValueError for an unknown name
            checks[check] = _PASSED if text == "SUCCEEDED" else _structure_check(text, None)
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
    return FrozenMap(checks)


# What nearly every check answers, built once (CheckOutcome is frozen): decoding a status is
# on the hot path of every poll.
_PASSED: Final = CheckOutcome.from_raw("SUCCEEDED")
_CHECK_BY_NAME: Final = {c.value: c for c in ComplianceCheck}
_DIRECT_HOOKS: Final[Mapping[Any, Callable[[Any, Any], Any]]] = {
    str: _structure_str,
    int: _structure_int,
    dt.datetime: _structure_datetime,
}


def _optional_of(type_: Any) -> Any:
    """``X`` for an ``X | None`` whose ``X`` has one of our hooks (or is an enum), else None."""
    args = typing.get_args(type_)
    if typing.get_origin(type_) not in (typing.Union, types.UnionType) or len(args) != 2:
        return None
    if type(None) not in args:
        return None
    inner = args[0] if args[1] is type(None) else args[1]
    if inner in _DIRECT_HOOKS or (isinstance(inner, type) and issubclass(inner, enum.Enum)):
        return inner
    return None


def _optional_hook_factory(type_: Any) -> Callable[[Any, Any], Any]:
    # cattrs' generic Optional hook looks the inner hook up on every call; bind it once.
    inner = _optional_of(type_)
    hook = _DIRECT_HOOKS.get(inner, _structure_enum)

    def structure_optional(value: object, _: object) -> Any:
        return None if value is None else hook(value, inner)

    return structure_optional


def _attrs_hook_factory(cls: type[Any]) -> Callable[[Any, Any], Any]:
    renames = {
        a.name: override(omit=True)
        if a.name in _NOT_FROM_BODY
        else override(rename=wire_name(a.name))
        for a in attrs.fields(cls)
    }
    return make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(dt.datetime, _structure_datetime)
converter.register_structure_hook(ErrorDetail, _structure_error_detail)
converter.register_structure_hook_func(lambda t: t == tuple[ErrorDetail, ...], _structure_errors)
converter.register_structure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _structure_enum
)
converter.register_structure_hook(CheckOutcome, _structure_check)
converter.register_structure_hook_func(
    lambda t: t == Mapping[ComplianceCheck, CheckOutcome], _structure_checks
)
converter.register_structure_hook_factory(
    lambda t: _optional_of(t) is not None, _optional_hook_factory
)
converter.register_structure_hook_factory(attrs.has, _attrs_hook_factory)


# --- error details (never fail: they describe a failure already) ------------------------------


def _error_detail(item: object) -> ErrorDetail | None:
    if not isinstance(item, Mapping):
        return None
    code = item.get("ErrorCode")
    message = item.get("ErrorMessage")
    if code is None and message is None:
        return None
    source = item.get("ErrorSource")
    path = item.get("Path")
    return ErrorDetail(
        code="" if code is None else str(code),
        message="" if message is None else str(message),
        source=None if source is None else str(source),
        path=None if path is None else str(path),
    )


def errors_from_body(body: object) -> tuple[ErrorDetail, ...]:
    """Extract error details from any error body shape the provider uses.

    Accepts an object with ``ErrorList``, a bare Error Details object, a top-level array of
    them, or anything else (which yields no details). Never raises.
    """
    # A loop, not recursion: json on Python 3.13 parses nesting deeper than the recursion limit.
    while isinstance(body, Mapping) and "ErrorList" in body:
        body = body["ErrorList"]
    if isinstance(body, Mapping):
        single = _error_detail(body)
        return () if single is None else (single,)
    if isinstance(body, list):
        return tuple(d for d in map(_error_detail, body) if d is not None)
    return ()


# --- structuring entry points ----------------------------------------------------------------

_PATH_SEGMENT: Final = re.compile(r"\.([a-z_][a-z0-9_]*)")


def _format_exception(exc: BaseException, type_: type[Any] | None) -> str:
    # Our hooks raise ValueErrors that already say what was wrong and with what value.
    if isinstance(exc, ValueError) and not isinstance(exc, cattrs.BaseValidationError):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def _reason(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        lines = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
        # "... @ $.total_count" -> "TotalCount: ..."
        out = []
        for line in lines:
            text, _, path = line.rpartition(" @ ")
            wire = _PATH_SEGMENT.sub(lambda m: "." + wire_name(m.group(1)), path)
            out.append(f"{wire.removeprefix('$.').removeprefix('$')}: {text}")
        return "; ".join(out)
    return str(exc)


def _structure(data: object, cls: type[_T]) -> _T:
    if not isinstance(data, Mapping):
        raise ResponseDecodeError(f"expected a JSON object, got {_json_type(data)}")
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ResponseDecodeError(_reason(exc)) from None


def _json_type(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, (int, float)):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list):
        return "an array"
    return type(data).__name__  # pragma: no cover - json.loads makes nothing else


def structure_renewal(data: object) -> RenewalResult:
    """Structure a renew-pcsid answer body."""
    return _structure(data, RenewalResult)


def structure_csid(data: object) -> CsidGenerationResult:
    """Structure a generate-csid answer body."""
    return _structure(data, CsidGenerationResult)


_CHECK_NAMES: Final = tuple(c.value for c in ComplianceCheck)
_COUNT_NAMES: Final = ("TotalCount", "SuccessCount", "FailureCount")


def _as_mapping(value: object) -> Mapping[str, Any] | None:
    if type(value) is dict:  # what json.loads makes: skip the ABC check
        return value
    if value is None:
        return None
    return value if isinstance(value, Mapping) else None


def structure_activity(data: object, activity_id: str) -> ActivityStatus:
    """Structure a pcsid-status body, tolerating every nesting the contract allows.

    Counts may sit in ``RequestMetaInfo``, ``ResponseInfo`` or at top level;
    ``ResponseMetaData`` inside ``ResponseInfo`` or at top level; either container may be
    ``null`` or absent, and each check field is optional.
    """
    if type(data) is dict:
        fast = fast_activity(data, activity_id)
        if fast is not None:
            return fast
    body = _as_mapping(data)
    if body is None:
        raise ResponseDecodeError(f"expected a JSON object, got {_json_type(data)}")
    if body.get("Status") is None:
        raise ResponseDecodeError("Status: required field missing")
    request_meta = _as_mapping(body.get("RequestMetaInfo"))
    response_info = _as_mapping(body.get("ResponseInfo"))
    meta = _as_mapping(body.get("ResponseMetaData"))
    if meta is None and response_info is not None:
        meta = _as_mapping(response_info.get("ResponseMetaData"))

    containers = (request_meta, response_info, body, meta)
    flat: dict[str, Any] = {
        "PcsidGenerationActivityId": activity_id,
        "ActivityType": body.get("ActivityType"),
        "Status": body["Status"],
        "CreatedAt": body.get("CreatedAt"),
        "UpdatedAt": body.get("UpdatedAt"),
        "CompletedAt": body.get("CompletedAt"),
        "ErrorList": body.get("ErrorList"),
    }
    for name in _COUNT_NAMES:
        value = _count(containers, name)
        if value is not None:
            flat[name] = value
    if meta is not None:
        flat["PcsidGenerated"] = meta.get("PcsidGenerated")
        flat["Checks"] = {n: meta[n] for n in _CHECK_NAMES if meta.get(n) is not None}
    return _structure(flat, ActivityStatus)


def _count(containers: tuple[Mapping[str, Any] | None, ...], name: str) -> object:
    """The first non-null ``name`` in the containers, in the contract's order of precedence."""
    for container in containers:
        if container is not None:
            value = container.get(name)
            if value is not None:
                return value
    return None


_STATES: Final[Mapping[str, ActivityState]] = {s.value: s for s in ActivityState}
_GENERATION: Final[Mapping[str, GenerationStatus]] = {g.value: g for g in GenerationStatus}
_TIME_FIELDS: Final = ("CreatedAt", "UpdatedAt", "CompletedAt")
_CHECK_PAIRS: Final = tuple((c.value, c) for c in ComplianceCheck)
_NO_CHECKS: Final[FrozenMap[ComplianceCheck, CheckOutcome]] = FrozenMap()
# Check maps by their raw texts: a few shapes (all passed, none yet, a handful of failure
# texts) recur across thousands of polls, and a FrozenMap is immutable, so they are shared.
_CHECK_MAPS: dict[tuple[object, ...], FrozenMap[ComplianceCheck, CheckOutcome]] = {}
_MAX_CHECK_MAPS: Final = 256


def _fast_checks(raw: Mapping[str, object]) -> FrozenMap[ComplianceCheck, CheckOutcome] | None:
    texts = tuple(map(raw.get, _CHECK_NAMES))
    try:
        shared = _CHECK_MAPS.get(texts)
    except TypeError:  # an array or object where a text belongs
        return None
    if shared is not None:
        return shared
    checks: dict[ComplianceCheck, CheckOutcome] = {}
    for (_, check), text in zip(_CHECK_PAIRS, texts, strict=True):
        if text is None:
            continue
        if text == "SUCCEEDED":
            checks[check] = _PASSED
        elif type(text) is str:
            checks[check] = CheckOutcome.from_raw(text)
        else:
            return None
    made: FrozenMap[ComplianceCheck, CheckOutcome] = FrozenMap(checks)
    if len(_CHECK_MAPS) >= _MAX_CHECK_MAPS:
        _CHECK_MAPS.clear()
    _CHECK_MAPS[texts] = made
    return made


def fast_activity(body: dict[str, Any], activity_id: str) -> ActivityStatus | None:
    """Build the model straight from a well-typed body: what nearly every answer is.

    Every status poll decodes one, so this reads the parsed JSON directly, with no
    converter hooks and as few calls as possible (it is measured against raw aiohttp).
    It returns ``None`` at the first value that is not exactly the usual type (a container
    that is not an object, a numeric string, an epoch timestamp, an unknown enum value,
    ...), and :func:`structure_activity` then decodes the body as before, with its
    tolerances and its error messages. Both paths build equal models (tested on generated
    bodies).
    """
    get = body.get
    status = get("Status")
    activity_type = get("ActivityType")
    if type(status) is not str or (activity_type is not None and type(activity_type) is not str):
        return None
    state = _STATES.get(status)
    if state is None:
        return None
    request_meta = get("RequestMetaInfo")
    response_info = get("ResponseInfo")
    meta = get("ResponseMetaData")
    if meta is None and response_info is not None:
        if type(response_info) is not dict:
            return None
        meta = response_info.get("ResponseMetaData")
    for container in (request_meta, response_info, meta):
        if container is not None and type(container) is not dict:
            return None
    times: list[Any] = list(map(get, _TIME_FIELDS))
    for i, value in enumerate(times):
        if value is not None:
            if type(value) is not str or value[4:5] != "-":
                return None
            try:
                if _fromisoformat is not None:  # pragma: no branch - 3.11+: "...Z" at C speed
                    parsed = _fromisoformat(value)
                    if parsed.tzinfo is not _UTC:
                        parsed = _parse_iso(value)
                else:  # pragma: no cover - Python 3.10
                    parsed = _parse_iso(value)
            except (ValueError, OverflowError):  # the converter words the complaint
                return None
            times[i] = parsed
    # Counts: RequestMetaInfo first (where the contract puts them), then the other places.
    counts: list[Any] = (
        [None] * 3 if request_meta is None else list(map(request_meta.get, _COUNT_NAMES))
    )
    if None in counts:
        counts = [_count((request_meta, response_info, body, meta), name) for name in _COUNT_NAMES]
    for count in counts:
        if count is not None and type(count) is not int:
            return None
    generated: GenerationStatus | None = None
    checks = _NO_CHECKS
    if meta is not None:
        raw_generated = meta.get("PcsidGenerated")
        if raw_generated is not None:
            generated = _GENERATION.get(raw_generated) if type(raw_generated) is str else None
            if generated is None:
                return None
        found = _fast_checks(meta)
        if found is None:
            return None
        checks = found
    errors = get("ErrorList")
    return ActivityStatus(
        activity_id,
        activity_type,
        state,
        times[0],
        times[1],
        times[2],
        counts[0],
        counts[1],
        counts[2],
        generated,
        checks,
        errors_from_body(errors) if errors else (),
    )


def fast_renewal(body: dict[str, Any]) -> RenewalResult | None:
    """A renew-pcsid answer of the usual types, built directly; ``None`` for anything else.

    Answers with error details are left to the converter (and to the decoder's OTP
    scrubbing), as are numbers where text belongs and unknown statuses.
    """
    get = body.get
    status = get("Status")
    generated = _GENERATION.get(status) if type(status) is str else None
    if generated is None or get("ErrorList"):
        return None
    device_id = get("DeviceId")
    activity_id = get("PcsidGenerationActivityId")
    if (device_id is not None and type(device_id) is not str) or (
        activity_id is not None and type(activity_id) is not str
    ):
        return None
    return RenewalResult(generated, device_id, (), activity_id)
