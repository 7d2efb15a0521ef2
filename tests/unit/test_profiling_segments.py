"""CSV parsed in line-aligned segments (issue 14): the cuts change nothing a whole-file read gives.

Segments are made tiny here so that a few hundred rows cross many of them."""

from __future__ import annotations

import io

import pytest

from dataspace.catalog import profiling
from dataspace.catalog.profiling import IngestError, TableProfile, profile_table
from dataspace.errors import ErrorCode

pytestmark = pytest.mark.smoke


def profile(content: bytes, **kwargs: object) -> TableProfile:
    return profile_table(io.BytesIO(content), file_format="csv", size=len(content), **kwargs)  # type: ignore[arg-type]


def summary(result: TableProfile) -> list[tuple[str, str, int, list[str] | None]]:
    return [(c.name, c.type, c.nulls, c.categories) for c in result.columns]


def failure(content: bytes) -> IngestError:
    with pytest.raises(IngestError) as error:
        profile(content)
    return error.value


@pytest.fixture
def segment_bytes(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(profiling, "CSV_SEGMENT_BYTES", 64)
    return 64


ROWS = b"".join(b"%03d,%s,%s\n" % (i, b"ab"[i % 2 : i % 2 + 1], b"" if i % 7 == 0 else b"%d.5" % i) for i in range(300))
FILE = b"id,group,x\n" + ROWS  # every row is 9-11 bytes, many cut inside and some right at a cut


def whole(content: bytes, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> TableProfile:
    with monkeypatch.context() as patch:
        patch.setattr(profiling, "CSV_SEGMENT_BYTES", 1 << 20)
        return profile(content, **kwargs)


def test_segments_end_at_line_ends_and_cover_the_stream(segment_bytes: int) -> None:
    segments = [bytes(s.view) for s in profiling._segments(io.BytesIO(FILE), segment_bytes)]
    assert b"".join(segments) == FILE
    assert all(s.endswith(b"\n") for s in segments)
    assert len(segments) > 20


def test_buffers_given_back_are_used_again_and_leave_nothing_stale(segment_bytes: int) -> None:
    # As the ingest does: each segment's buffer goes back once it is read, the next segment
    # (shorter, at the end) is read into it over the earlier bytes.
    buffers = profiling._Buffers(keep=4, largest=1 << 20)
    pieces, used = [], set()
    for segment in profiling._segments(io.BytesIO(FILE), segment_bytes, buffers=buffers):
        pieces.append(bytes(segment.view))
        used.add(id(segment.buffer))
        buffers.give(segment.buffer)
    assert b"".join(pieces) == FILE
    assert all(piece.endswith(b"\n") for piece in pieces)
    assert len(pieces) > 20
    assert len(used) == 1


def test_no_plaintext_waits_in_the_buffers_after_a_profile(segment_bytes: int) -> None:
    profile(FILE)
    with profiling._BUFFERS._lock:
        waiting = list(profiling._BUFFERS._free)
    assert waiting  # the profile gave its buffers back
    assert not any(any(buffer) for buffer in waiting)


def test_a_wipe_zeroes_every_buffer_used_since_the_last_one() -> None:
    buffers = profiling._Buffers(keep=4, largest=1 << 20)
    first, second = buffers.take(100), buffers.take(100)
    first[:5] = second[:5] = b"plain"
    buffers.give(first)
    buffers.wipe()
    again = buffers.take(10)  # the zeroed one, written to again
    again[:5] = b"plain"
    buffers.give(again)
    buffers.give(second)
    buffers.wipe()
    assert not any(any(buffer) for buffer in buffers._free)


def test_a_row_cut_exactly_at_a_segment_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"a,b\n" + b"1,2\n" * 100  # 4-byte lines: every 64-byte read ends on a newline
    monkeypatch.setattr(profiling, "CSV_SEGMENT_BYTES", 64)
    segments = [bytes(s.view) for s in profiling._segments(io.BytesIO(content), 64)]
    assert [len(s) for s in segments[:-1]] == [64] * (len(segments) - 1)
    result = profile(content)
    assert result.rows == 100
    assert [(c.name, c.type) for c in result.columns] == [("a", "integer"), ("b", "integer")]


def test_segmented_read_matches_a_whole_file_read(segment_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    result = profile(FILE)
    assert result.rows == 300
    assert summary(result) == summary(whole(FILE, monkeypatch))
    assert summary(result)[1] == ("group", "categorical", 0, ["a", "b"])
    assert summary(result)[2][1:3] == ("float", 43)


def test_crlf_files_read_alike(segment_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    crlf = FILE.replace(b"\n", b"\r\n")
    assert summary(profile(crlf)) == summary(whole(FILE, monkeypatch))
    assert profile(crlf).rows == 300


def test_a_ragged_row_in_a_later_segment_names_its_line(segment_bytes: int) -> None:
    lines = FILE.split(b"\n")
    lines[250] += b",SECRET"  # line 251 of the file (the header is line 1)
    lines[280] += b",9"
    error = failure(b"\n".join(lines))
    assert error.code == ErrorCode.RAGGED_ROWS
    assert error.details == {"rows": 2, "first_line": 251}
    assert "line 251" in error.message
    assert "SECRET" not in error.message


def test_a_ragged_row_in_a_crlf_file_names_its_line(segment_bytes: int) -> None:
    lines = FILE.split(b"\n")
    lines[120] = b"1,2"
    error = failure(b"\r\n".join(lines))
    assert error.details == {"rows": 1, "first_line": 121}


def test_an_integer_column_widens_to_float_in_a_later_segment(segment_bytes: int) -> None:
    content = b"n,k\n" + b"".join(b"%d,%d\n" % (i, i % 3) for i in range(200)) + b"2.5,1\n"
    result = profile(content)
    assert result.rows == 201
    assert [(c.name, c.type) for c in result.columns] == [("n", "float"), ("k", "integer")]


def test_a_column_widened_to_text_keeps_the_files_spelling(segment_bytes: int) -> None:
    # Read as integers first ("007" -> 7); the text that turns up later makes it a category,
    # whose values must be spelled as in the file.
    content = b"code,v\n" + b"".join(b"%03d,%d\n" % (i % 3, i) for i in range(200)) + b"x1,5\n"
    result = profile(content)
    assert result.rows == 201
    assert summary(result)[0] == ("code", "categorical", 0, ["000", "001", "002", "x1"])


def test_a_high_cardinality_column_widened_to_text_is_text(segment_bytes: int) -> None:
    content = b"n\n" + b"".join(b"%d\n" % i for i in range(300)) + b"late\n"
    result = profile(content)
    assert (result.rows, result.columns[0].type) == (301, "text")


def test_a_date_column_widened_to_text_in_a_later_segment(segment_bytes: int) -> None:
    content = b"d\n" + b"2024-01-01\n2024-01-02\n" * 50 + b"soon\n"
    result = profile(content)
    assert summary(result)[0] == ("d", "categorical", 0, ["2024-01-01", "2024-01-02", "soon"])


def test_invalid_utf8_in_a_later_segment_is_refused(segment_bytes: int) -> None:
    assert failure(FILE + b"301,\xff\xfe,1.5\n").code == ErrorCode.INVALID_ENCODING


def test_utf8_text_that_is_not_ascii_in_a_later_segment_is_read_and_checked(segment_bytes: int) -> None:
    # ASCII segments skip pyarrow's UTF-8 check; a segment with other bytes keeps it.
    content = FILE + "301,\u00fc,1.5\n".encode()
    segments = list(profiling._segments(io.BytesIO(content), segment_bytes))
    assert [s.ascii for s in segments] == [True] * (len(segments) - 1) + [False]
    assert profile(content).columns[1].categories == ["a", "b", "\u00fc"]


def test_declared_types_hold_in_every_segment(segment_bytes: int) -> None:
    content = b"ward,cost\n" + b"".join(b"%03d,%d\n" % (i % 4, i) for i in range(200))
    result = profile(content, column_types={"ward": "categorical", "cost": "float"})
    assert summary(result)[0] == ("ward", "categorical", 0, ["000", "001", "002", "003"])
    assert result.columns[1].type == "float"


def test_blank_lines_and_a_line_longer_than_a_segment(segment_bytes: int) -> None:
    long_text = b"y" * 500
    content = b"a,b\n1,x\n\n\n2," + long_text + b"\n" + b"\n" * 100 + b"3,z\n\n"
    result = profile(content)
    assert result.rows == 3
    assert [c.type for c in result.columns] == ["integer", "text"]


def test_a_header_and_blank_lines_only_have_no_rows(segment_bytes: int) -> None:
    assert failure(b"a,b\n" + b"\n" * 200).code == ErrorCode.NO_ROWS


def test_progress_rises_to_the_end(segment_bytes: int) -> None:
    seen: list[float] = []
    profile(FILE, on_progress=seen.append)
    assert len(seen) > 20
    assert seen == sorted(seen)
    assert seen[-1] == 1.0


QUOTED = b"id,note,x\n" + b"".join(
    b'%d,"note %d\nits second line, with a comma",%d.5\n' % (i, i, i) for i in range(300)
)


def test_segments_never_end_inside_a_quoted_value(segment_bytes: int) -> None:
    segments = list(profiling._segments(io.BytesIO(QUOTED), segment_bytes))
    assert b"".join(bytes(s.view) for s in segments) == QUOTED
    assert all(bytes(s.view).count(b'"') % 2 == 0 for s in segments)
    assert all(s.quoted for s in segments)


def test_quoted_newlines_across_segments_read_as_a_whole_file_does(
    segment_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = profile(QUOTED)
    assert result.rows == 300
    assert summary(result) == summary(whole(QUOTED, monkeypatch))
    assert [c.type for c in result.columns] == ["integer", "text", "float"]


def test_a_ragged_row_after_quoted_newlines_names_its_row(segment_bytes: int) -> None:
    lines = QUOTED.split(b"\n")
    lines[400] += b",9"  # the second physical line of row 200
    error = failure(b"\n".join(lines))
    assert error.code == ErrorCode.RAGGED_ROWS
    assert error.details is not None
    assert error.details["rows"] == 1


def test_a_column_widened_while_later_segments_parse_is_widened_once(
    segment_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Floats in several segments in a row, in the middle of the file: segments parsed on the
    # workers with the integer type before the first float was settled are parsed again as
    # floats, not widened a second time (to text).
    rows = [b"%d,%d\n" % (i, i % 3) for i in range(300)]
    for i in range(100, 140):
        rows[i] = b"%d.5,%d\n" % (i, i % 3)
    content = b"n,k\n" + b"".join(rows)
    result = profile(content)
    assert result.rows == 300
    assert [(c.name, c.type) for c in result.columns] == [("n", "float"), ("k", "integer")]
    assert summary(result) == summary(whole(content, monkeypatch))
