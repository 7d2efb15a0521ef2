"""DCAT-AP 3 metadata as JSON-LD: the catalogue and each dataset at stable URLs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from dataspace.catalog.models import Dataset
from dataspace.catalog.public_profile import approximate_count

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "spdx": "http://spdx.org/rdf/terms#",
    "csvw": "http://www.w3.org/ns/csvw#",
    "redlake": "urn:redlake:terms:",
}
_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _absolute(path: str) -> str:
    base: str = settings.CATALOG_BASE_URI
    return base.rstrip("/") + path


def dataset_uri(dataset: Dataset) -> str:
    return _absolute(reverse("catalog-dataset-dcat", kwargs={"dataset_id": dataset.id}))


def dataset_node(dataset: Dataset) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": dataset_uri(dataset),
        "@type": "dcat:Dataset",
        "dct:identifier": str(dataset.id),
        "dct:title": dataset.title,
        "dct:description": dataset.description,
        "dcat:keyword": dataset.keywords,
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": dataset.provider.username},
        "dct:issued": {"@value": dataset.created_at.isoformat(), "@type": "xsd:dateTime"},
        "dct:modified": {"@value": dataset.updated_at.isoformat(), "@type": "xsd:dateTime"},
        "dcat:distribution": [
            {
                "@type": "dcat:Distribution",
                "dct:format": dataset.file_format,
                "dcat:mediaType": _MEDIA_TYPES.get(dataset.file_format, "application/octet-stream"),
                # Content is never downloadable: it is usable through permitted computations only.
                "dcat:accessURL": {"@id": _absolute(reverse("dataset-detail", kwargs={"dataset_id": dataset.id}))},
                "spdx:checksum": {
                    "@type": "spdx:Checksum",
                    "spdx:algorithm": "spdx:checksumAlgorithm_sha256",
                    "spdx:checksumValue": dataset.content_sha256,
                },
                "dcat:byteSize": {"@value": str(dataset.size_bytes), "@type": "xsd:nonNegativeInteger"},
            }
        ],
        "csvw:tableSchema": {
            "csvw:column": [{"csvw:name": c["name"], "csvw:datatype": c["type"]} for c in dataset.schema]
        },
        "dct:extent": f"about {approximate_count(dataset.row_count)} rows",
        # The privacy terms: a personal dataset answers with noise within its total epsilon.
        "redlake:nonPersonal": dataset.non_personal,
        "redlake:privacyBudget": {"redlake:epsilon": dataset.privacy_epsilon, "redlake:delta": settings.PRIVACY_DELTA},
    }
    if dataset.licence:
        node["dct:license"] = dataset.licence
    return node


def catalog_document(datasets: list[Dataset]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "@id": _absolute(reverse("catalog-dcat")),
        "@type": "dcat:Catalog",
        "dct:title": "Redlake data space catalogue",
        "dct:description": "Datasets usable through permitted computations; raw rows are never released.",
        "dcat:dataset": [dataset_node(d) for d in datasets],
    }


def dataset_document(dataset: Dataset) -> dict[str, Any]:
    return {"@context": CONTEXT, **dataset_node(dataset)}
