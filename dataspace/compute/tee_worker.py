"""ISSUE-13: the life of a worker that serves the ``tee`` queue (Celery signals, connected in
``dataspace.celery``).

- At start (``worker_init``, queues chosen, nothing consumed yet): a host that cannot run the
  sandbox (``enclaves.sandbox.host_problems``) is refused the ``tee`` queue with the reasons, in
  the log and on stderr. A worker serving only ``tee`` exits (status 1); one serving other queues
  too (``make run``'s) drops ``tee`` and serves the rest. Jobs then wait in the queue for a worker
  that can run them instead of each failing (and being refunded) on this one.
- In each process that runs tasks (``worker_process_init``: the solo pool's own process or each
  prefork child): the pool of warm sandboxes (``tee.pool_start``).
- At shutdown (``worker_process_shutdown`` in a prefork child, ``worker_shutdown`` in the main
  process): the pool is drained, so no sandbox outlives its worker.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from dataspace.compute import tee

logger = logging.getLogger(__name__)

TEE_QUEUE = "tee"
_serves_tee = False  # set in the main process before the pool's processes fork


def consumed_queues(worker: Any) -> set[str]:
    queues = worker.app.amqp.queues
    return set(queues.consume_from) if queues.consume_from else set(queues)


def refusal_message(problems: list[str]) -> str:
    return "this worker refuses the tee queue: this host cannot run the sandbox backend: " + "; ".join(problems)


def on_worker_init(sender: Any = None, **_: Any) -> None:
    global _serves_tee
    queues = consumed_queues(sender)
    if TEE_QUEUE not in queues:
        return
    problems = tee.sandbox_host_problems()
    if not problems:
        _serves_tee = True
        return
    message = refusal_message(problems)
    logger.critical(message)
    print(message, file=sys.stderr, flush=True)
    if queues == {TEE_QUEUE}:
        # Raised past Celery's signal dispatch (it only catches Exception): the worker exits.
        raise SystemExit(1)
    sender.app.amqp.queues.deselect(TEE_QUEUE)


def on_process_init(**_: Any) -> None:
    if _serves_tee:
        tee.pool_start()


def on_shutdown(**_: Any) -> None:
    tee.pool_stop()
