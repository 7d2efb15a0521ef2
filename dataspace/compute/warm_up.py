"""Opening a dataset's CKKS contexts as a worker process starts, before its first job needs them.

Loading a store's public context (tens of MB of evaluation keys) and, in the custodian, unsealing
its secret context are most of what a worker's first job on a dataset pays beyond the job itself.
A process cannot know its next dataset; it guesses the one most recently asked for (else the
store built last), which on a fresh `make run` is the demo's. A wrong guess costs memory within
the caches' bounds (``keystore._CACHE_SIZE``, ``custody._SECRET_CACHE_SIZE``), never a result:
jobs load what they need as before.
"""

from __future__ import annotations

import logging
import time

from dataspace.compute import custody, keystore
from dataspace.compute.models import EncryptedStore, Job
from dataspace.role_checks import current_role
from dataspace.roles import Role

logger = logging.getLogger(__name__)

_PUBLIC_ROLES = {Role.DEV, Role.HE}
_SECRET_ROLES = {Role.DEV, Role.CUSTODIAN}


def likely_next_store() -> EncryptedStore | None:
    """The ready store of the dataset most recently asked for, else the store built last."""
    ready = EncryptedStore.objects.filter(status=EncryptedStore.Status.READY)
    dataset_id = Job.objects.order_by("-requested_at").values_list("dataset_id", flat=True).first()
    store = ready.filter(pk=dataset_id).first() if dataset_id is not None else None
    return store or ready.order_by("-ready_at").first()


def contexts_warm() -> list[str]:
    """Opens the contexts this process's role uses of ``likely_next_store``; returns which."""
    role = current_role()
    if role not in _PUBLIC_ROLES | _SECRET_ROLES:
        return []
    store = likely_next_store()
    if store is None:
        return []
    opened = []
    if role in _PUBLIC_ROLES:
        keystore.public_contexts(store)
        opened.append("public")
    if role in _SECRET_ROLES:
        custody.secret_contexts_warm(store)
        opened.append("secret")
    return opened


def contexts_warm_logged() -> None:
    """``contexts_warm`` for the process warm-up: logs, never raises (the first job loads what it
    needs itself), and leaves no database connection open on the warm-up's thread."""
    from django.db import connections

    started = time.monotonic()
    try:
        opened = contexts_warm()
    except Exception:
        logger.exception("the CKKS contexts were not opened ahead of the first job")
    else:
        if opened:
            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info("CKKS contexts opened ahead of the first job: %s (%.0f ms)", ", ".join(opened), elapsed_ms)
    finally:
        connections.close_all()
