"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` says the process serves HTTP and nothing more (a restart would not help with a
database that is away). ``/readyz`` says whether this process can do its work now: the
database answers, the broker takes connections, the chain node answers with the configured
chain id, and every keyring this process holds (by its role) opens. Each check is bounded by a
short timeout and reports only its name, ``ok`` and, when it fails, the kind of failure: never
a URL with credentials, never a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

READY_CHECK_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    error: str = ""
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"ok": self.ok, "seconds": round(self.seconds, 4)}
        if self.error:
            body["error"] = self.error
        return body


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    from celery import current_app as app  # the project's app (dataspace/__init__.py loads it)

    with app.connection_for_read() as conn:
        # One attempt, bounded: a readiness probe must answer, not wait for the broker.
        conn.ensure_connection(max_retries=1, timeout=READY_CHECK_TIMEOUT_SECONDS)


def check_chain() -> None:
    from dataspace.chain import gateway

    gateway.connected_web3()


def check_keyrings() -> None:
    """Every keyring this process holds (by its role) opens and names its active root key."""
    from dataspace import roles
    from dataspace.vault import services as vault

    for name in roles.held_keyring_specs(explicit=settings.REDLAKE_KEYRINGS, vault_kek=settings.VAULT_KEK):
        try:
            vault.keyring(name).active_id()
        except Exception as exc:
            raise RuntimeError(f"keyring {name.value}: {type(exc).__name__}") from exc


READY_CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "chain": check_chain,
    "keyrings": check_keyrings,
}


def run_check(check: Callable[[], None]) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # a probe reports every failure as "not ready", by kind
        message = str(exc) if isinstance(exc, RuntimeError) else type(exc).__name__
        return CheckResult(ok=False, error=message, seconds=time.perf_counter() - started)
    return CheckResult(ok=True, seconds=time.perf_counter() - started)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """200 with every check when all pass; 503 naming the failing ones otherwise."""
    results = {name: run_check(check) for name, check in READY_CHECKS.items()}
    failing = sorted(name for name, result in results.items() if not result.ok)
    body = {
        "status": "ready" if not failing else "not_ready",
        "failing": failing,
        "checks": {name: result.as_json() for name, result in results.items()},
    }
    return JsonResponse(body, status=503 if failing else 200)
