"""Structured logs: one JSON object a line, on every process (web, workers, beat).

Invariants kept here:
- every line names who and what it is about, never a value: the web process binds a
  ``request_id`` (the caller's ``X-Request-ID`` when it is a plain token, else a new one) and, once
  the caller is authenticated, its ``user_id``; a task binds its ``task_id``, the ``request_id``
  of the request that queued it and the id it was given (``job_id``, ``dataset_id`` ...);
- the platform's log calls pass ids and error codes only (see the callers); nothing here adds a
  request body, a query string or a task's arguments beyond that first id, so no cell value
  reaches a log line through this module.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# The HTTP request this thread or task serves, read when a line is written (authentication
# happens inside the view, after the middleware has bound the request id).
_current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("redlake_request", default=None)
# Task arguments bound by name: the first argument of a task, when it is one of these ids.
BOUND_TASK_IDS = frozenset({"job_id", "dataset_id", "ingest_id", "tx_id", "offer_id", "agreement_id"})
request_logger = logging.getLogger("dataspace.requests")


def add_user_id(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request = _current_request.get()
    user = getattr(request, "user", None) if request is not None else None
    if user is not None and getattr(user, "is_authenticated", False) and "user_id" not in event:
        event["user_id"] = user.pk
    return event


def shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_user_id,
    ]


def logging_config(*, level: str, json_lines: bool) -> dict[str, Any]:
    """The ``LOGGING`` setting: the standard library's records (Django's, Celery's, ours) rendered
    through structlog, as JSON lines or, for a developer who asks (``LOG_FORMAT=console``), text."""
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": [*shared_processors(), structlog.stdlib.ExtraAdder()],
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
    }


def _request_id(request: HttpRequest) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _ACCEPTED_REQUEST_ID.match(offered) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Binds the request id (echoed in the response's ``X-Request-ID``) for every line the request
    writes, and writes one line per request: method, path (no query string), status, duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        structlog.contextvars.clear_contextvars()
        request_id = _request_id(request)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        token = _current_request.set(request)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            request_logger.info(
                "request finished",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response
        finally:
            _current_request.reset(token)
            structlog.contextvars.clear_contextvars()


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


def bind_task_context(*, task: Any, task_id: str, args: Any, request_id: str | None) -> None:
    """Called before each task runs (dataspace.celery): its ids, and the request that queued it."""
    structlog.contextvars.clear_contextvars()
    context: dict[str, Any] = {"task_id": task_id, "task": task.name}
    if request_id:
        context["request_id"] = request_id
    try:
        first = next(iter(inspect.signature(task.run).parameters), None)
    except (TypeError, ValueError):
        first = None
    if first in BOUND_TASK_IDS and args:
        context[first] = str(args[0])
    structlog.contextvars.bind_contextvars(**context)


def unbind_task_context() -> None:
    """Called after each task (dataspace.celery): what the worker logs between tasks (the broker
    lost and found again, an ack that failed) is no task's, and must not name the last one's job."""
    structlog.contextvars.clear_contextvars()
