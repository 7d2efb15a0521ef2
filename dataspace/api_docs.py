"""OpenAPI helpers: every endpoint documents the error codes it can answer with."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from dataspace.errors import ErrorCode, http_status_for

ERRORS_AUTH = (ErrorCode.NOT_AUTHENTICATED, ErrorCode.AUTHENTICATION_FAILED)
ERRORS_COMMON = (ErrorCode.VALIDATION_FAILED, *ERRORS_AUTH)

_ERROR_ENVELOPE = inline_serializer(
    name="ErrorEnvelope",
    fields={
        "error": inline_serializer(
            name="Error",
            fields={
                "code": serializers.ChoiceField(choices=[str(c) for c in ErrorCode]),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)


def error_responses(*codes: ErrorCode) -> dict[int, Any]:
    """OpenAPI responses for these error codes, grouped by HTTP status."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[http_status_for(code)].append(str(code))
    return {
        status: OpenApiResponse(response=_ERROR_ENVELOPE, description="error codes: " + ", ".join(sorted(names)))
        for status, names in by_status.items()
    }
