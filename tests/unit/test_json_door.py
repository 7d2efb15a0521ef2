"""The JSON door measures a body's size and nesting before anything parses it."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.exceptions import ParseError

from dataspace.errors import DomainError
from dataspace.parsers import BoundedJSONParser, nesting_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("{}", 1),
        ('[[1, {"a": []}]]', 4),
        ('"[[[[{{{{"', 0),  # brackets in a string are text
        ('{"a": "\\"[[[["}', 1),  # an escaped quote does not end the string
        ('["\\\\", [[]]]', 3),  # an escaped backslash does not escape the closing quote
        ('["\\\\\\"[[", [1]]', 2),
        ("[" + "[]," * 10_000 + "[]]", 2),  # wide is not deep
    ],
)
def test_nesting_depth_counts_structure_only(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth
    assert nesting_depth(text) == _parsed_depth(json.loads(text))


def _parsed_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_parsed_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_parsed_depth, value), default=0)
    return 0


def parse(body: bytes, encoding: str = "utf-8") -> Any:
    return BoundedJSONParser().parse(io.BytesIO(body), "application/json", {"encoding": encoding})


def refusal(body: bytes, encoding: str = "utf-8") -> DomainError:
    with pytest.raises(DomainError) as refused:
        parse(body, encoding)
    return refused.value


def test_hostile_nesting_is_refused_without_parsing() -> None:
    started = time.monotonic()
    error = refusal(b"[" * 100_000 + b"]" * 100_000)
    assert error.code == "nesting_too_deep"
    assert error.details == {"max_depth": 32}
    assert time.monotonic() - started < 1


def test_unclosed_nesting_is_refused_too() -> None:
    assert refusal(b'{"a":' * 50_000).code == "nesting_too_deep"


def test_nesting_up_to_the_limit_is_parsed() -> None:
    assert nesting_depth(json.dumps(parse(b"[" * 32 + b"]" * 32))) == 32
    assert refusal(b"[" * 33 + b"]" * 33).code == "nesting_too_deep"


@override_settings(API_JSON_MAX_BYTES=1000)
def test_oversize_body_is_refused() -> None:
    assert parse(json.dumps({"a": "x" * 900}).encode()) == {"a": "x" * 900}
    error = refusal(json.dumps({"a": "x" * 1000}).encode())
    assert error.code == "body_too_large"
    assert error.details == {"limit_bytes": 1000}


def test_depth_is_measured_on_the_declared_charset() -> None:
    # In UTF-16 the escaped quote is not the byte pair a byte scan would look for.
    body = ('{"a": "\\"", "b": ' + "[" * 40 + "]" * 40 + "}").encode("utf-16")
    assert refusal(body, "utf-16").code == "nesting_too_deep"


def test_undecodable_body_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse(b'{"a": "\xff"}')
