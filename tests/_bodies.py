"""Wire bodies shared by the converter tests and the fast-path tests."""

from __future__ import annotations

from typing import Any

from pcsid_async import ComplianceCheck

CHECKS = [c.value for c in ComplianceCheck]


def canonical_body(**changes: Any) -> dict[str, Any]:
    """The contract's canonical SUCCEEDED activity body, with top-level keys replaced."""
    body: dict[str, Any] = {
        "ActivityType": "ZATCA_COMPLIANCE_INVOICE",
        "Status": "SUCCEEDED",
        "CreatedAt": "2026-11-22T10:15:30.120Z",
        "UpdatedAt": "2026-11-22T10:15:41.906Z",
        "CompletedAt": "2026-11-22T10:15:41.906Z",
        "RequestMetaInfo": {"TotalCount": 6, "SuccessCount": 6, "FailureCount": 0},
        "ResponseInfo": {
            "ResponseMetaData": {
                "PcsidGenerated": "GENERATED",
                **dict.fromkeys(CHECKS, "SUCCEEDED"),
            }
        },
        "ErrorList": [],
    }
    body.update(changes)
    return body
