"""OpenAPI helpers: every endpoint documents the error codes it can answer with, and what it returns."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from drf_spectacular.drainage import set_override
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from dataspace.errors import ErrorCode, http_status_for

ERRORS_AUTH = (ErrorCode.NOT_AUTHENTICATED, ErrorCode.AUTHENTICATION_FAILED)
ERRORS_COMMON = (ErrorCode.VALIDATION_FAILED, *ERRORS_AUTH)
# What the JSON parser itself refuses (dataspace.parsers); added to every operation with a JSON body.
ERRORS_JSON_BODY = (ErrorCode.VALIDATION_FAILED, ErrorCode.NESTING_TOO_DEEP, ErrorCode.BODY_TOO_LARGE)

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
_ERRORS_PREFIX = "error codes: "


def error_responses(*codes: ErrorCode) -> dict[int, Any]:
    """OpenAPI responses for these error codes, grouped by HTTP status."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[http_status_for(code)].append(str(code))
    return {
        status: OpenApiResponse(response=_ERROR_ENVELOPE, description=_ERRORS_PREFIX + ", ".join(sorted(names)))
        for status, names in by_status.items()
    }


PAGE_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Items per page (default 50)."),
    OpenApiParameter("offset", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Items to skip."),
]


def paginated(serializer_class: type[serializers.Serializer[Any]]) -> serializers.ListSerializer[Any]:
    """The 200 body of a list endpoint: one LimitOffsetPagination page of ``serializer_class``
    items, ``{count, next, previous, results}``. Use with ``PAGE_PARAMETERS``."""
    name = serializer_class.__name__.removesuffix("Serializer").removesuffix("Output")
    page = inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "count": serializers.IntegerField(help_text="Items in the whole list."),
            "next": serializers.URLField(allow_null=True, help_text="The next page; null on the last."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page; null on the first."),
            "results": serializer_class(many=True),
        },
    )
    # drf-spectacular calls an operation ``…_list`` (not ``…_retrieve``) only when its body is a
    # list serializer; "many" switched off keeps it from wrapping the page in an array.
    listed: serializers.ListSerializer[Any] = serializers.ListSerializer(child=page)
    set_override(listed, "many", False)
    return listed


def document_json_door(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation that takes a JSON body documents what
    the JSON parser refuses, whatever its view declares."""
    by_status: dict[str, set[str]] = defaultdict(set)
    for code in ERRORS_JSON_BODY:
        by_status[str(http_status_for(code))].add(str(code))
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            responses = operation["responses"]
            for status, codes in by_status.items():
                response = responses.setdefault(
                    status,
                    {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
                        "description": _ERRORS_PREFIX,
                    },
                )
                named = set(response["description"].removeprefix(_ERRORS_PREFIX).split(", ")) - {""}
                response["description"] = _ERRORS_PREFIX + ", ".join(sorted(named | codes))
    return result
