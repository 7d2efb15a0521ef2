"""What a consumer may see of an encrypted store: per column its kind and level, its categories, or
its bounds, bucket edges and cells, and the uses the operations admit it for.

Scales stay out, and so do exact bounds (a non-personal column's extremes) and everything about
low-cardinality values and zeros: the bounds shown are the provider's or a private estimate. The
uses are asked of the operations' roles (``"<operation>.<role>"``, e.g. ``"mean.column"``,
``"count.where"``), so the view lists exactly what ``validate`` accepts.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from dataspace.compute.he.layout import ColumnKind, ColumnPlan, StoreLayout
from dataspace.compute.he.operations import REGISTRY


def column_uses(plan: ColumnPlan) -> list[str]:
    """Every ``"<operation>.<role>"`` in which some request with this column may run."""
    return [f"{op.name}.{role.name}" for op in REGISTRY.values() for role in op.roles if role.admits(plan)]


def public_view(layout: StoreLayout, *, values_of: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Per column what a consumer may ask for. Category names are listed only for the columns in
    ``values_of`` (None: every column, for the dataset's provider); elsewhere only their number,
    as in the public profile. The row count is the caller's to show or round."""
    columns = []
    for plan in layout.columns:
        entry: dict[str, Any] = {"name": plan.name, "kind": plan.kind.value, "level": plan.level.value}
        if plan.kind == ColumnKind.CATEGORICAL:
            entry["cardinality"] = len(plan.categories)
            if values_of is None or plan.name in values_of:
                entry["categories"] = list(plan.categories)
        else:
            entry["nulls"] = plan.has_nulls
            entry["bounds"] = plan.public_bounds()
            entry["bucket_edges"] = plan.public_edges()
            entry["buckets"] = plan.cells
        entry["operations"] = column_uses(plan)
        columns.append(entry)
    return columns
