"""The package's own cattrs converter: wire-name rule, tolerant nesting, error details.

The wire speaks PascalCase (``DeviceId``); models are snake_case (``device_id``). The rule is
:func:`wire_name`, applied to every attrs model by a hook factory, so models carry no
wire annotations. Unknown keys are ignored everywhere. cattrs' validation errors become a
single :class:`~pcsid_async.ResponseDecodeError` whose reason names the wire field.
Timestamps are read by :mod:`pcsid_async._timestamps`; the usual answers skip this module's
converter through :mod:`pcsid_async._fastpath`, which builds equal models or defers here.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._errors import ResponseDecodeError
from ._models import (
    ActivityStatus,
    CheckOutcome,
    ComplianceCheck,
    CsidGenerationResult,
    ErrorDetail,
    FrozenMap,
    RenewalResult,
)
from ._timestamps import parse_timestamp

__all__ = [
    "converter",
    "errors_from_body",
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
