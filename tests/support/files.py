"""Test files, good and bad, made on the fly."""

from __future__ import annotations

import io
import struct

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, store_schema=False)
    return buffer.getvalue()


def parquet_lying_about_rows(table: pa.Table, claimed_rows: int) -> bytes:
    """A Parquet file whose footer claims more rows than its row groups hold.

    FileMetaData.num_rows is the first i64 field after the schema list in the Thrift footer
    (compact protocol: field header 0x16, then a zigzag varint); only single-byte values are
    patched so the footer length stays the same.
    """
    data = parquet_bytes(table)
    rows, claimed = table.num_rows * 2, claimed_rows * 2  # zigzag encoding of small positives
    assert rows < 128
    assert claimed < 128
    footer_length = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - footer_length
    footer = data[start:-8]
    at = footer.index(bytes([0x16, rows]))
    return data[:start] + footer[:at] + bytes([0x16, claimed]) + footer[at + 2 :] + data[-8:]


def registry_csv(rows: int, *, seed: int = 3) -> bytes:
    from dataspace.demo.synthetic import registry_csv_chunks

    return b"".join(registry_csv_chunks(rows, seed=seed))
