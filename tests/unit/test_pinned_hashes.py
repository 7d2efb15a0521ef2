"""Hashes the chain pins never change: each is recomputed here from a fixed document with
non-ASCII text and compared with the value the code produced before canonical JSON had one
home. If one of these fails, registered datasets, published offers or issued receipts no longer
verify against the chain."""

from __future__ import annotations

import hashlib
import uuid

from dataspace.canonical import canonical_json, canonical_json_ascii
from dataspace.catalog.models import Dataset
from dataspace.catalog.services import dataset_metadata_hash
from dataspace.compute.receipts import result_commitment
from dataspace.policies import odrl

DATASET_ID = uuid.UUID("12345678-1234-4234-8234-123456789abc")


def test_the_dataset_metadata_hash_is_unchanged() -> None:
    dataset = Dataset(
        id=DATASET_ID,
        title="Régistre hospitalier – 2026",
        description="Données «synthétiques»",
        keywords=["santé", "registry"],
        licence="CC-BY-4.0",
        file_format="csv",
        schema=[{"name": "âge", "type": "integer"}, {"name": "region", "type": "categorical"}],
    )
    assert dataset_metadata_hash(dataset).hex() == "94db786fbdc9f5daeff96f7a3b7a2ddcc15e2aaf34acd4d7bdef4b0474a12f12"


def test_the_offer_policy_hash_is_unchanged() -> None:
    terms = odrl.Terms(
        purposes=["recherche-médicale", "research"],
        operations=["mean", "count"],
        max_calls=10,
        price_per_call=10**18,
        duration_seconds=86400,
        privacy_budget=1.5,
        min_cohort=10,
    )
    document = odrl.policy_document(
        offer_id=uuid.UUID("87654321-4321-4321-8321-cba987654321"),
        dataset_id=DATASET_ID,
        provider="0x00000000000000000000000000000000000000aa",
        terms=terms,
    )
    # Offers published before datasets declared themselves non-personal have no such constraint:
    # their stored document still hashes to what the chain pinned, and still reads as personal.
    constraints = document["permission"][0]["constraint"]
    document["permission"][0]["constraint"] = [c for c in constraints if c["leftOperand"] != "redlake:nonPersonal"]
    assert odrl.policy_hash(document).hex() == "b6ff9ce2cdb757cc206ee00cbebbe1b307a534d831957fd7a8151ef02d5b7578"
    assert odrl.terms_of(document).non_personal is False


def test_the_result_commitment_is_unchanged() -> None:
    result = {"groups": {"Île-de-France": {"mean": 12.5, "count": 40}}, "note": "ü"}
    commitment = result_commitment(result, b"\x01" * 32)
    assert commitment.hex() == "e45d68dec788f1cad1193364bc107e5295f22b131a87ad6c7148d688dff3ebe9"


def test_receipts_are_signed_over_canonical_utf8_json() -> None:
    document = {"b": "é", "a": [1, 2.5, None]}
    assert canonical_json(document) == '{"a":[1,2.5,null],"b":"é"}'.encode()
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    assert digest == "41a039b5a690a0e490a416507920c9993f5d12a59eb496d685026408ea22b407"


def test_the_ascii_form_escapes_what_the_utf8_form_keeps() -> None:
    assert canonical_json_ascii({"k": "é"}) == b'{"k":"\\u00e9"}'
    assert canonical_json({"k": "é"}) == '{"k":"é"}'.encode()
