"""The evidence model's pieces: the report-data binding, the validity window, refusal messages,
the nonce store, and the package's independence from Django."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from enclaves.attestation import (
    AttestationRefused,
    InMemoryNonceStore,
    NonceStore,
    RefusalCode,
    ValidityWindow,
    report_data_for,
)
from enclaves.attestation.errors import MESSAGES
from tests.support.attestation import utc

ROOT = Path(__file__).resolve().parents[2]
NOW = utc("2026-11-27T12:00:00Z")
NONCE = bytes(range(32))
KEY = b"\x30\x2a" + bytes(42)
MANIFEST = bytes(range(32, 64))


def test_report_data_is_64_bytes_and_depends_on_every_input() -> None:
    binding = report_data_for(NONCE, KEY, MANIFEST)
    assert len(binding) == 64
    assert binding == report_data_for(NONCE, KEY, MANIFEST)
    assert binding != report_data_for(bytes(32), KEY, MANIFEST)
    assert binding != report_data_for(NONCE, KEY + b"\x00", MANIFEST)
    assert binding != report_data_for(NONCE, KEY, bytes(32))


def test_report_data_parts_cannot_trade_bytes() -> None:
    """Length prefixes: moving a byte from the nonce to the key gives another binding."""
    assert report_data_for(NONCE + b"k", KEY, MANIFEST) != report_data_for(NONCE, b"k" + KEY, MANIFEST)


@pytest.mark.parametrize(
    ("nonce", "key", "manifest"),
    [(b"short", KEY, MANIFEST), (NONCE, b"", MANIFEST), (NONCE, KEY, b"not a sha-256")],
)
def test_report_data_refuses_weak_inputs(nonce: bytes, key: bytes, manifest: bytes) -> None:
    with pytest.raises(ValueError):
        report_data_for(nonce, key, manifest)


def test_validity_window_is_half_open_and_clamps_inside() -> None:
    window = ValidityWindow(utc("2025-01-01T00:00:00Z"), utc("2025-02-01T00:00:00Z"))
    assert window.contains(window.not_before)
    assert not window.contains(window.not_after)
    assert window.clamp(utc("2024-01-01T00:00:00Z")) == window.not_before
    assert window.clamp(utc("2030-01-01T00:00:00Z")) == window.not_after - timedelta(seconds=1)
    assert ValidityWindow(window.not_after, window.not_before).empty
    with pytest.raises(ValueError):
        window.contains(datetime(2025, 1, 10))


def test_every_refusal_code_has_a_fixed_message() -> None:
    assert set(MESSAGES) == set(RefusalCode)
    refused = AttestationRefused(RefusalCode.EXPIRED, {"not_after": "2025-07-19T10:01:18+00:00"})
    assert str(refused) == "expired: The evidence or its collateral has expired."


def test_a_nonce_is_consumed_once() -> None:
    store: NonceStore = InMemoryNonceStore()
    nonce = store.issue(now=NOW)
    assert len(nonce) == 32

    store.consume(nonce, now=NOW + timedelta(seconds=1))
    with pytest.raises(AttestationRefused) as refused:
        store.consume(nonce, now=NOW + timedelta(seconds=2))
    assert refused.value.code is RefusalCode.NONCE_REUSED


def test_an_unknown_nonce_is_refused() -> None:
    with pytest.raises(AttestationRefused) as refused:
        InMemoryNonceStore().consume(NONCE, now=NOW)
    assert refused.value.code is RefusalCode.NONCE_UNKNOWN


def test_an_expired_nonce_is_refused_and_forgotten() -> None:
    store = InMemoryNonceStore(ttl=timedelta(minutes=5))
    nonce = store.issue(now=NOW)
    with pytest.raises(AttestationRefused) as refused:
        store.consume(nonce, now=NOW + timedelta(minutes=5))
    assert refused.value.code is RefusalCode.NONCE_EXPIRED
    assert len(store) == 0


def test_expired_nonces_do_not_pile_up() -> None:
    store = InMemoryNonceStore(ttl=timedelta(seconds=10))
    for _ in range(100):
        store.issue(now=NOW)
    store.issue(now=NOW + timedelta(seconds=11))
    assert len(store) == 1


def test_concurrent_consumers_of_one_nonce_have_one_winner() -> None:
    store = InMemoryNonceStore()
    nonce = store.issue(now=NOW)
    start = threading.Barrier(16)
    outcomes: list[str] = []

    def consume() -> None:
        start.wait()
        try:
            store.consume(nonce, now=NOW)
        except AttestationRefused as refused:
            outcomes.append(refused.code)
        else:
            outcomes.append("consumed")

    threads = [threading.Thread(target=consume) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == ["consumed"] + [RefusalCode.NONCE_REUSED] * 15


def test_the_store_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        InMemoryNonceStore().issue(now=datetime(2026, 11, 27))


def test_enclaves_never_import_django_or_dataspace() -> None:
    for path in (ROOT / "enclaves").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("django", "rest_framework", "dataspace")), f"{path}: {name}"


def test_importing_the_verifier_loads_no_django() -> None:
    probe = (
        "import sys, enclaves.attestation, enclaves.attestation.keywrap; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('django', 'dataspace')]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
