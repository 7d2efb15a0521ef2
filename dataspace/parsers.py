"""The JSON door: every JSON body (and JSON carried in a form field) is bounded before it is parsed.

Invariant: no JSON from outside reaches the JSON parser if it is larger than
``API_JSON_MAX_BYTES`` or nested deeper than ``API_JSON_MAX_DEPTH``. The depth is measured on the
text, without recursing into it, so the interpreter's recursion limit is never what protects us.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import IO, Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from dataspace.errors import DomainError, ErrorCode

# Escapes first (an escaped backslash, then an escaped quote), so that every quote left delimits a
# string; then whole strings, so that the brackets left are structure. On a valid prefix of a JSON
# text this is exact; past the first syntax error the parser stops anyway, so counting too much
# there only refuses a body that would have been refused.
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text, measured without parsing it."""
    structure = _NOT_BRACKET.sub("", _STRING.sub("", text.replace("\\\\", "").replace('\\"', "")))
    return max(accumulate(map(_STEP.__getitem__, structure)), default=0)


def refuse_oversize(size: int, *, what: str) -> None:
    limit = settings.API_JSON_MAX_BYTES
    if size > limit:
        raise DomainError(
            f"{what} exceeds the limit of {limit} bytes.", code=ErrorCode.BODY_TOO_LARGE, details={"limit_bytes": limit}
        )


def refuse_deep(text: str, *, what: str) -> None:
    max_depth = settings.API_JSON_MAX_DEPTH
    if nesting_depth(text) > max_depth:
        raise DomainError(
            f"{what} nests arrays and objects deeper than {max_depth} levels.",
            code=ErrorCode.NESTING_TOO_DEEP,
            details={"max_depth": max_depth},
        )


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind the size and nesting limits: the default parser of every API view."""

    def parse(
        self, stream: IO[Any] | None, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        what = "The JSON body"
        # DRF hands JSON parsers the body already read (Django caps it at
        # DATA_UPLOAD_MAX_MEMORY_SIZE); one byte past our own limit is enough to refuse it.
        raw = stream.read(settings.API_JSON_MAX_BYTES + 1) if stream is not None else b""
        refuse_oversize(len(raw), what=what)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (LookupError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}.") from exc
        refuse_deep(text, what=what)  # on the text as the parser will read it, whatever the charset
        return super().parse(io.BytesIO(raw), media_type, parser_context)


class BoundedJSONField(serializers.JSONField):
    """A serializer field holding JSON text (a form field, ``binary=True``): bounded like a body."""

    def to_internal_value(self, data: Any) -> Any:
        if (self.binary or getattr(data, "is_json_string", False)) and isinstance(data, str | bytes):
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            what = f"The field {self.field_name!r}"
            refuse_oversize(len(text.encode("utf-8", "surrogatepass")), what=what)
            refuse_deep(text, what=what)
        return super().to_internal_value(data)


# ISSUE-14: a field the API does not know is refused (400 ``validation_failed`` naming each), not
# ignored: a misspelt ``epsilon`` or a ``provider`` smuggled into a body must not pass silently as
# if it had been applied.
# (A comment, not a docstring: drf-spectacular would print a docstring as every subclass's
# description in the OpenAPI document.)
class StrictInputSerializer(serializers.Serializer[Any]):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["This field is not accepted here."] for key in unknown})
        return super().to_internal_value(data)


UINT256_MAX = 2**256 - 1


def uint256_or_refuse(value: int) -> None:
    """A field validator for numbers the chain stores as uint256. (Not ``max_value``: the OpenAPI
    document would then call the field int64, which it is not.)"""
    if value > UINT256_MAX:
        raise serializers.ValidationError("Ensure this value is at most 2**256 - 1.")
