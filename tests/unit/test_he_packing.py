"""Packed stores (layout version 3): every operation against its plaintext reference at sizes
around the slot count, the packs' placement, and the custodian's checks of packed parts: a pack
must be the stored ciphertext byte for byte, and only the slots the custodian's own layout names
are ever added up. Stores are built with seeded ciphertexts; the same stores with full ones (as
written before) compute the same. No database."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal as ts

from dataspace.compute.he import packing
from dataspace.compute.he.encryption import encrypt_columns
from dataspace.compute.he.evaluation import tail_part
from dataspace.compute.he.keys import KeyPair, generate_keys, load_public_context, load_secret_context
from dataspace.compute.he.layout import PackedSlot, StoreLayout, pack_key
from dataspace.compute.he.operations import EncryptedResult, OperationRejected, get_operation
from dataspace.compute.he.params import LEVELS, Level
from dataspace.compute.he.profiling import StoreOptions
from dataspace.compute.he.references import CKKS_RELATIVE_TOLERANCE
from dataspace.compute.he.rotation import vector_message
from dataspace.compute.he.seeded import seeded_encryptor
from dataspace.compute.he.store import read_series
from dataspace.errors import ErrorCode
from dataspace.vault import blobs
from tests.support.he_store import stored_rows
from tests.unit.test_he_operations import CASES, SCHEMA, Built, assert_close, run, storage_at, synthetic_table

SIZES = [1, 100, 442, 4095, 4096, 4097, 10_000]
# Everything declared, nothing estimated: the same store at every size, whatever the sample.
OPTIONS = StoreOptions(
    levels={"visits": Level.SUMS},
    bounds={"age": (0, 100), "w": (-5, 5), "z": (0, 20), "y": (-20, 20), "visits": (0, 1000)},
    buckets={"age": [0, 20, 40, 60, 80, 100], "z": [0, 5, 10, 15, 20], "y": [-10, 0, 10]},
    quantile_buckets=0,
    workers=1,
    group_by={"grade": ["age"]},
)
# One row has no variance, covariance or regression (the reference's ddof=1 divides by zero).
ONE_ROW_OPERATIONS = {"count", "sum", "mean", "group_by", "histogram"}


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyPair]:
    return {level: generate_keys(level) for level in ("sums", "products")}


def build(keys: dict[str, KeyPair], storage: Path, rows: int, options: StoreOptions = OPTIONS, seed: int = 7) -> Built:
    table = synthetic_table(rows, seed=seed)
    with storage_at(storage):
        layout = encrypt_columns(
            batches=lambda: iter(table.to_batches(max_chunksize=3_000)),
            schema=SCHEMA,
            rows=rows,
            options=options,
            keys=keys,
            blob_prefix="he/packed",
        )
    return Built(
        table=table,
        layout=layout,
        keys=keys,
        public={level: load_public_context(pair.public_context) for level, pair in keys.items()},
        secret={level: load_secret_context(pair.secret_context) for level, pair in keys.items()},
        storage=storage,
    )


@pytest.fixture(scope="module")
def stores(keys: dict[str, KeyPair], tmp_path_factory: pytest.TempPathFactory) -> dict[int, Built]:
    return {rows: build(keys, tmp_path_factory.mktemp(f"packed-{rows}"), rows) for rows in SIZES}


@pytest.fixture(scope="module")
def small(stores: dict[int, Built]) -> Built:
    return stores[442]


@pytest.mark.parametrize("rows", SIZES)
def test_every_operation_matches_the_plaintext_reference(stores: dict[int, Built], rows: int) -> None:
    built = stores[rows]
    assert built.layout.packed
    for name, params in CASES:
        if rows == 1 and name not in ONE_ROW_OPERATIONS:
            continue
        released, reference, _ = run(built, name, params)
        assert_close(released, reference, f"{rows} rows {name} {params}")


@pytest.mark.parametrize("rows", SIZES)
def test_the_layout_places_every_tail_and_total_once(stores: dict[int, Built], rows: int) -> None:
    layout = stores[rows].layout
    slots = layout.slots
    assert (layout.chunks, layout.tail_rows) == (rows // slots, rows % slots)
    taken: dict[int, set[int]] = {index: set() for index in range(len(layout.packs))}

    def take(pack: int, start: int, length: int) -> None:
        span = set(range(start, start + length))
        assert start + length <= slots  # a tail never runs into the next pack
        assert not taken[pack] & span
        taken[pack] |= span

    for info in layout.series.values():
        assert info.total is not None
        assert info.total_blob is None
        assert layout.packs[info.total.pack].level == info.level
        take(info.total.pack, info.total.slot, 1)
        if layout.tail_rows:
            assert info.tail is not None
            assert layout.packs[info.tail.pack].level == info.level
            take(info.tail.pack, info.tail.slot, layout.tail_rows)
        else:
            assert info.tail is None
    for product in layout.products.values():
        assert product.total is not None
        assert product.blob_name is None
        take(product.total.pack, product.total.slot, 1)
    # First fit: no pack could have been left out.
    per_level: dict[Level, int] = {}
    for info in layout.series.values():
        per_level[info.level] = per_level.get(info.level, 0) + 1
    for level, count in per_level.items():
        packs = [index for index, pack in enumerate(layout.packs) if pack.level == level]
        tails_per_pack = slots // layout.tail_rows if layout.tail_rows else count
        totals = count + sum(1 for p in layout.products.values() if p.level == level)
        assert len(packs) <= math.ceil(count / tails_per_pack) + math.ceil(totals / slots)


@pytest.mark.parametrize("rows", [100, 4097])
def test_the_store_holds_each_series_rows_in_order(stores: dict[int, Built], rows: int) -> None:
    built = stores[rows]
    x = built.table.column("w").to_numpy()
    with storage_at(built.storage):
        stored = stored_rows(built.layout, "num:w", built.secret["products"])
    assert np.allclose(stored * built.layout.column("w").scale, x, atol=1e-6)


def test_packs_shrink_a_small_store_tenfold(keys: dict[str, KeyPair], small: Built, tmp_path: Path) -> None:
    # The store as version 2 wrote it: unpacked, full ciphertexts.
    old = build(keys, tmp_path, 442, dataclasses.replace(OPTIONS, pack=False, seeded=False))
    with storage_at(tmp_path):
        before = sum(blobs.size(name) for name in old.layout.blob_names())
    with storage_at(small.storage):
        after = sum(blobs.size(name) for name in small.layout.blob_names())
    # Version 2: a ciphertext per series, per total and per product total; packed: a few.
    assert len(old.layout.blob_names()) == 2 * len(old.layout.series) + len(old.layout.products)
    assert after * 10 < before
    # Two encryptions' errors, so the engine's tolerance (``references``): a packed total sits at
    # a scaled slot (``packing``), ~1e-6 absolute, which a cancelling sum shows at 1e-6 relative.
    for name, params in CASES:
        _, _, packed = run(small, name, params)
        _, _, unpacked = run(old, name, params)
        for new, previous in zip(packed, unpacked, strict=True):
            assert new.name == previous.name
            assert abs(new.value - previous.value) <= CKKS_RELATIVE_TOLERANCE * max(1.0, abs(previous.value)), new.name


@pytest.mark.parametrize("rows", [442, 4097])
def test_seeded_ciphertexts_halve_the_store_and_compute_the_same(
    keys: dict[str, KeyPair], stores: dict[int, Built], tmp_path: Path, rows: int
) -> None:
    """The same store with full ciphertexts (every store before seeding): twice the bytes, the
    same blobs, and every operation on either gives the same numbers."""
    seeded = stores[rows]
    full = build(keys, tmp_path, rows, dataclasses.replace(OPTIONS, seeded=False))
    assert full.layout.blob_names() == seeded.layout.blob_names()
    with storage_at(tmp_path):
        before = sum(blobs.size(name) for name in full.layout.blob_names())
    with storage_at(seeded.storage):
        after = sum(blobs.size(name) for name in seeded.layout.blob_names())
    assert 0.45 * before < after < 0.55 * before
    for name, params in CASES:
        released, reference, new = run(seeded, name, params)
        _, _, previous = run(full, name, params)
        assert_close(released, reference, f"{rows} rows {name} {params}")
        for a, b in zip(new, previous, strict=True):
            assert a.name == b.name
            assert abs(a.value - b.value) <= CKKS_RELATIVE_TOLERANCE * max(1.0, abs(b.value)), a.name


@pytest.mark.parametrize("level", ["sums", "products"])
def test_a_seeded_vector_is_tenseals_own_in_every_slot(keys: dict[str, KeyPair], level: str) -> None:
    """Seeded vectors load with ``ckks_vector_from`` and hold what TenSEAL's own encryption of the
    same values holds: a full chunk, and a short vector repeated over all slots."""
    context = load_secret_context(keys[level].secret_context)
    params = LEVELS[Level(level)]
    encryptor = seeded_encryptor(context, params)
    assert encryptor is not None
    values = np.random.default_rng(3).uniform(-1, 1, params.slots)
    for vector in (values, values[:3], values[:1]):
        data = encryptor.encrypt(vector.tolist())
        own = ts.ckks_vector(context, vector.tolist())
        assert len(data) < 0.55 * len(own.serialize())
        loaded = ts.ckks_vector_from(context, data)
        assert loaded.size() == len(vector)
        assert np.allclose(loaded.decrypt(), own.decrypt(), atol=1e-3)
        shifted = ts.ckks_vector_from(context, vector_message(_ciphertext_bytes(loaded), params.slots, params.scale))
        assert np.allclose(shifted.decrypt(), np.resize(vector, params.slots), atol=1e-3)
    encryptor.close()


def _ciphertext_bytes(vector: ts.CKKSVector) -> bytes:
    (ciphertext,) = vector.ciphertext()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ct"
        ciphertext.save(str(path))
        return path.read_bytes()


def test_the_layout_round_trips_and_every_version_loads(small: Built) -> None:
    data = json.loads(json.dumps(small.layout.to_json()))
    assert data["version"] == 4
    assert data["params"] == {"products": "products", "sums": "sums"}  # built with N = 8192 keys
    assert StoreLayout.from_json(data) == small.layout
    # Version 3 (written before the parameter sets were recorded) reads as the N = 8192 sets and
    # writes itself again unchanged.
    version3 = {key: value for key, value in data.items() if key != "params"} | {"version": 3}
    old = StoreLayout.from_json(version3)
    assert old.params == {}
    assert old.param_set(Level.PRODUCTS) == LEVELS[Level.PRODUCTS]
    assert old.to_json() == version3
    for name, params in CASES[:6]:
        released, reference, _ = run(dataclasses.replace(small, layout=old), name, params)
        assert_close(released, reference, f"version 3 {name} {params}")
    with pytest.raises(ValueError, match="version"):
        StoreLayout.from_json({**data, "version": 5})
    with pytest.raises(ValueError, match="parameter set"):
        StoreLayout.from_json({**data, "params": {"products": "sums-4096"}})


# ---------------------------------------------------------------- placement


def test_assign_scales_products_level_totals_and_keeps_tails_whole() -> None:
    tails = [(f"s{i}", Level.PRODUCTS, np.full(1_000, 0.5)) for i in range(5)]
    totals = [(f"s{i}", Level.PRODUCTS, 500.0) for i in range(5)] + [("t", Level.SUMS, 1_000.0)]
    out = packing.assign(slots=4096, rows=1_000, tails=tails, totals=totals)
    assert [out.tails[f"s{i}"] for i in range(5)][3:] == [PackedSlot(0, 3_000), PackedSlot(1, 0)]
    assert out.packs[0].total_scale == 1024  # the power of two >= rows: every packed value within [-1, 1]
    assert out.packs[0].values[out.totals["s0"].slot] == 500.0 / 1024
    assert out.totals["t"].pack == 2  # the sums level's own pack, unscaled
    assert out.packs[2].values[0] == 1_000.0
    assert out.packs[2].total_scale == 1.0


def test_assign_keeps_a_huge_stores_totals_apart_and_unscaled() -> None:
    rows = packing.SCALED_TOTALS_MAX_ROWS + 1
    out = packing.assign(
        slots=4096, rows=rows, tails=[("s", Level.PRODUCTS, np.ones(1))], totals=[("s", Level.PRODUCTS, 3.0e7)]
    )
    tail, total = out.tails["s"], out.totals["s"]
    assert tail.pack != total.pack
    assert not out.packs[total.pack].holds_tails
    assert out.packs[total.pack].total_scale == 1.0


# ---------------------------------------------------------------- the custodian's checks of packed parts


def computed(built: Built, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], EncryptedResult]:
    operation = get_operation(name)
    normalised = operation.validate(params, built.layout)
    with storage_at(built.storage):
        result = operation.compute(normalised, built.layout, built.public, lambda k: read_series(built.layout, k))
    return normalised, EncryptedResult.from_bytes(result.to_bytes())


def refused(built: Built, name: str, params: dict[str, Any], result: EncryptedResult) -> str:
    operation = get_operation(name)
    with pytest.raises(OperationRejected) as caught:
        operation.decrypt(params, built.layout, result, built.secret)
    return str(caught.value.code)


def test_a_mean_sends_its_pack_verbatim_and_no_part_of_its_own(small: Built) -> None:
    _, result = computed(small, "mean", {"column": "age"})
    pack = small.layout.series["num:age"].total
    assert pack is not None
    assert set(result.parts) == {pack_key(pack.pack)}
    with storage_at(small.storage):
        (stored,) = read_series(small.layout, pack_key(pack.pack))
    assert result.parts[pack_key(pack.pack)] == stored


def test_another_ciphertext_in_place_of_a_pack_is_refused_undecrypted(
    small: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that sends another pack (whose slot holds another series' total, or a row of a
    tail) where the term's pack is due, or any ciphertext it made, gets nothing decrypted."""
    params, result = computed(small, "count", {"where": {"column": "region", "equals": "south"}})
    (name,) = result.parts
    index = int(name.removeprefix("pack:"))
    other = next(i for i, p in enumerate(small.layout.packs) if i != index and p.level == Level.PRODUCTS)
    with storage_at(small.storage):
        (other_bytes,) = read_series(small.layout, pack_key(other))
    made = ts.ckks_vector(small.secret["products"], [1.0] * small.layout.slots).serialize()
    decrypted: list[int] = []
    original = ts.CKKSVector.decrypt

    def counting(self: ts.CKKSVector, *args: Any, **kwargs: Any) -> Any:
        decrypted.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ts.CKKSVector, "decrypt", counting)
    for forged in (other_bytes, made, result.parts[name][:-1] + b"\x00"):
        swapped = EncryptedResult(parts={name: forged}, folded=result.folded)
        assert refused(small, "count", params, swapped) == ErrorCode.RESULT_SHAPE_MISMATCH
    renamed = EncryptedResult(parts={pack_key(other): other_bytes}, folded={pack_key(other): True})
    assert refused(small, "count", params, renamed) == ErrorCode.RESULT_SHAPE_MISMATCH
    assert decrypted == []


def test_the_custodian_adds_up_its_own_slots_of_a_pack(small: Built) -> None:
    """Two terms read from the same pack get different numbers: the slots are the custodian's
    choice (from its layout), the result names none."""
    params, result = computed(small, "group_by", {"by": "region", "aggregate": "count"})
    aggregates = {
        a.name: a.value for a in get_operation("group_by").decrypt(params, small.layout, result, small.secret)
    }
    labels = small.table.column("region").to_pylist()
    assert [aggregates[f"{i}.count"] for i in range(3)] == [float(labels.count(c)) for c in ("north", "south", "west")]
    assert len(result.parts) == 1  # the three counts come from one pack


@pytest.mark.parametrize("rows", [442, 4097])
def test_a_tail_part_is_folded_over_the_tail_rows_only(stores: dict[int, Built], rows: int) -> None:
    """Whatever a worker puts past ``tail_rows`` in a tail part (there: products of other series'
    rows) never reaches a released number."""
    built = stores[rows]
    name, params = "group_by", {"by": "grade", "aggregate": "sum", "column": "y"}  # an undeclared pair
    params, result = computed(built, name, params)
    part = tail_part("0.sum")
    assert part in result.parts
    assert ("0.sum" in result.parts) == (rows >= built.layout.slots)
    honest = {a.name: a.value for a in get_operation(name).decrypt(params, built.layout, result, built.secret)}
    r, slots = built.layout.tail_rows, built.layout.slots
    context = built.secret["products"]
    # A product of the right shape: 0.5 * 0.5 on the tail's slots, a "secret" 7 * 7 elsewhere.
    factor = ts.ckks_vector(context, [0.5] * r + [7.0] * (slots - r))
    forged = EncryptedResult(parts={**result.parts, part: (factor * factor).serialize()}, folded=result.folded)
    aggregates = {a.name: a.value for a in get_operation(name).decrypt(params, built.layout, forged, built.secret)}
    chunks = aggregates["0.sum"] - honest["0.sum"] + _tail_value(built, result, part)
    assert chunks == pytest.approx(0.25 * r * built.layout.column("y").scale, rel=1e-6)


def _tail_value(built: Built, result: EncryptedResult, part: str) -> float:
    """What the honest tail part adds to its term (real units)."""
    vector = ts.ckks_vector_from(built.secret["products"], result.parts[part])
    return math.fsum(vector.decrypt()[: built.layout.tail_rows]) * built.layout.column("y").scale
