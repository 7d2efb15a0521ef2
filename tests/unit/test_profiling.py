"""Schema inference and validation on plaintext streams (no database)."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

from dataspace.catalog import profiling
from dataspace.catalog.profiling import IngestError, profile_table
from dataspace.errors import ErrorCode
from tests.support.files import parquet_bytes, parquet_lying_about_rows

pytestmark = pytest.mark.smoke


def profile_csv(content: bytes, **kwargs: object) -> profiling.TableProfile:
    return profile_table(io.BytesIO(content), file_format="csv", size=len(content), **kwargs)  # type: ignore[arg-type]


def error_code(content: bytes, file_format: str = "csv") -> str:
    with pytest.raises(IngestError) as error:
        profile_table(io.BytesIO(content), file_format=file_format, size=len(content))
    return str(error.value.code)


def test_infers_every_column_type() -> None:
    rows = [
        f"{i},{i * 0.5},{'true' if i % 2 else 'false'},{['a', 'b', 'c'][i % 3]},2024-01-{1 + i % 28:02d},note {i}"
        for i in range(60)
    ]
    profile = profile_csv(("n,x,flag,group,day,remark\n" + "\n".join(rows) + "\n").encode())
    assert profile.rows == 60
    assert [(c.name, c.type) for c in profile.columns] == [
        ("n", "integer"),
        ("x", "float"),
        ("flag", "boolean"),
        ("group", "categorical"),
        ("day", "date"),
        ("remark", "text"),
    ]
    group = profile.columns[3]
    assert (group.cardinality, group.categories) == (3, ["a", "b", "c"])


def test_counts_nulls() -> None:
    profile = profile_csv(b"a,b\n1,\n,x\n3,y\n")
    assert [c.nulls for c in profile.columns] == [1, 1]


def test_a_late_value_widens_its_column() -> None:
    # pyarrow infers from the first block; the odd values come long after it.
    head = b"a,b\n" + b"1,2\n" * 400_000
    profile = profile_csv(head + b"2.5,x\n")
    assert [c.type for c in profile.columns] == ["float", "categorical"]  # b: "2" and "x"
    assert profile.rows == 400_001


def test_high_cardinality_strings_are_text() -> None:
    content = "id\n" + "\n".join(f"id-{i}" for i in range(500)) + "\n"
    assert profile_csv(content.encode()).columns[0].type == "text"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", ErrorCode.FILE_EMPTY),
        (b"   \n", ErrorCode.FILE_EMPTY),
        (b"a,b\n", ErrorCode.NO_ROWS),
        (b"a,b\n1,2\n3,4,5\n6,7\n", ErrorCode.RAGGED_ROWS),
        (b"a,b,c\n1,2,3\n4,5\n", ErrorCode.RAGGED_ROWS),
        (b"a,b\n1,\xff\xfe\n", ErrorCode.INVALID_ENCODING),
        (b"\xff\xfea,b\n1,2\n", ErrorCode.INVALID_ENCODING),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ErrorCode.BINARY_CONTENT),
        (b"a,a\n1,2\n", ErrorCode.DUPLICATE_COLUMN),
        (b"a,,c\n1,2,3\n", ErrorCode.EMPTY_COLUMN_NAME),
        (b'a,"x\'; DROP TABLE datasets;--"\n1,2\n', ErrorCode.INVALID_COLUMN_NAME),
        (b"a,<script>alert(1)</script>\n1,2\n", ErrorCode.INVALID_COLUMN_NAME),
    ],
)
def test_bad_csv_is_refused_with_a_named_reason(content: bytes, code: ErrorCode) -> None:
    assert error_code(content) == code


def test_ragged_row_error_names_the_line_not_the_content() -> None:
    with pytest.raises(IngestError) as error:
        profile_csv(b"a,b\n1,2\nSECRET,4,5\n6,7\n")
    assert "line 3" in error.value.message
    assert "SECRET" not in error.value.message


def test_conversion_errors_never_quote_values() -> None:
    with pytest.raises(IngestError) as error:
        profile_csv(b"a\n" + b"1\n" * 300_000 + b"\xffSECRET\n")
    assert "SECRET" not in error.value.message


def test_parquet_is_profiled() -> None:
    table = pa.table({"age": list(range(100)), "sex": ["F", "M"] * 50, "w": [1.5] * 100})
    profile = profile_table(io.BytesIO(data := parquet_bytes(table)), file_format="parquet", size=len(data))
    assert profile.rows == 100
    assert [c.type for c in profile.columns] == ["integer", "categorical", "float"]


def test_parquet_lying_about_its_rows_is_refused() -> None:
    table = pa.table({"age": [1, 2, 3], "name": ["a", "b", "c"]})
    assert error_code(parquet_lying_about_rows(table, 50), "parquet") == ErrorCode.PARQUET_SCHEMA_MISMATCH


def test_not_parquet_is_refused() -> None:
    assert error_code(b"a,b\n1,2\n", "parquet") == ErrorCode.MALFORMED_PARQUET


def test_corrupt_parquet_footer_is_refused() -> None:
    data = bytearray(parquet_bytes(pa.table({"a": [1, 2]})))
    data[-20:-8] = b"\xff" * 12
    assert error_code(bytes(data), "parquet") == ErrorCode.MALFORMED_PARQUET


def test_nested_parquet_columns_are_refused() -> None:
    data = parquet_bytes(pa.table({"a": [[1], [2]]}))
    assert error_code(data, "parquet") == ErrorCode.UNSUPPORTED_COLUMN_TYPE


def test_other_delimiters() -> None:
    profile = profile_csv(b"a;b\n1;x\n2;y\n", delimiter=";")
    assert [c.name for c in profile.columns] == ["a", "b"]
