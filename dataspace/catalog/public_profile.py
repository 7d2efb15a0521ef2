"""What anyone browsing the catalogue may learn about a dataset: its shape, never its rows.

Row counts are rounded, null counts become rounded fractions, no extreme value is ever computed
or stored, and categorical values appear only for columns the provider made public.
"""

from __future__ import annotations

import math
from typing import Any

from dataspace.catalog.models import Dataset
from dataspace.catalog.profiling import ColumnType


def approximate_count(count: int) -> int:
    """Two significant figures; tens below 100 (never zero for a non-empty dataset)."""
    if count <= 0:
        return 0
    if count < 100:
        return max(10, round(count, -1))
    digits = math.floor(math.log10(count)) + 1
    return round(count, 2 - digits)


def public_profile(dataset: Dataset) -> dict[str, Any]:
    rows = dataset.row_count
    columns = []
    for column in dataset.schema:
        entry: dict[str, Any] = {
            "name": column["name"],
            "type": column["type"],
            "null_fraction": round(column["nulls"] / rows, 2) if rows else 0.0,
        }
        if column["type"] == ColumnType.CATEGORICAL:
            entry["cardinality"] = column["cardinality"]
            if column["name"] in dataset.public_value_columns:
                entry["values"] = column["categories"]
        columns.append(entry)
    return {"rows_approx": approximate_count(rows), "columns": columns}
