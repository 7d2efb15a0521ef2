"""Reading a dataset's sealed content back as typed record batches, for the one other place
that may see plaintext: building the encrypted column store at ingest (on the ingest worker)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from dataspace.catalog.models import Dataset
from dataspace.catalog.profiling import CSV_BLOCK_BYTES, PARQUET_BATCH_ROWS, ColumnType, open_parquet
from dataspace.vault import services as vault

NUMERIC = {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN}


def _arrow_type(column_type: str) -> pa.DataType:
    if column_type == ColumnType.BOOLEAN:
        return pa.bool_()
    return pa.float64() if column_type in NUMERIC else pa.string()


def _normalise(batch: pa.RecordBatch, types: dict[str, str]) -> pa.RecordBatch:
    """Numbers (booleans as 0/1) become float64, categories strings."""
    arrays = []
    for name in batch.schema.names:
        column = batch.column(name)
        target = pa.float64() if types[name] in NUMERIC else pa.string()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        arrays.append(column if column.type == target else pc.cast(column, target))
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def dataset_batches(dataset: Dataset, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Streams ``columns`` of the dataset, authenticated chunk by chunk as they are read."""
    types = {c["name"]: c["type"] for c in dataset.schema if c["name"] in columns}
    key = vault.data_key_unwrap(dataset.data_key)
    with vault.blob_open(blob_name=dataset.blob_name, key=key) as reader:
        stream = io.BufferedReader(reader, buffer_size=1 << 20)
        if dataset.file_format == "parquet":
            parquet = open_parquet(stream, reader.size)
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                yield _normalise(batch, types)
            return
        delimiter = dataset.ingest.delimiter if hasattr(dataset, "ingest") else ","
        csv_reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: _arrow_type(t) for name, t in types.items()},
                include_columns=columns,
                strings_can_be_null=True,
            ),
        )
        for batch in csv_reader:
            yield _normalise(batch, types)
