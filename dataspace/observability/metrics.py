"""Prometheus metrics at ``/metrics``: django-prometheus's (requests, database, cache) and
Redlake's own, read from the database, the broker and the chain at scrape time so one scrape of
any web process reports the whole space (workers on other hosts need no scrape port of their
own):

- ``redlake_jobs{state}``: jobs by state;
- ``redlake_job_step_seconds{step}``: how long each step of the flow took (a histogram over the
  last ``STEP_WINDOW`` jobs that passed it);
- ``redlake_queue_depth{queue}``: messages waiting in each Celery queue;
- ``redlake_outbox_backlog{status}``: chain writes not yet confirmed or failed;
- ``redlake_indexer_lag_blocks``: the chain's head minus the last block the indexer read;
- ``redlake_privacy_rho_spent`` / ``redlake_privacy_rho_limit``: privacy loss (zCDP rho) spent
  and allowed, summed over datasets (per dataset would name datasets to whoever scrapes).

Access: from loopback, or with ``Authorization: Bearer <METRICS_TOKEN>`` when that setting is
set; anything else is a 404 so the endpoint does not advertise itself.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django_prometheus.exports import ExportToDjangoView
from prometheus_client.core import REGISTRY, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

STEP_WINDOW = 1000
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# step name -> (timestamp it starts from, timestamp it ends at)
STEPS = {
    "authorise": ("requested_at", "authorised_at"),
    "compute": ("authorised_at", "computed_at"),
    "release": ("computed_at", "released_at"),
    "settle": ("released_at", "settled_at"),
    "total": ("requested_at", "settled_at"),
}
OPEN_OUTBOX_STATUSES = ("pending", "signed", "sent")
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def _histogram(name: str, documentation: str, samples: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["step"])
    for step, values in samples.items():
        buckets = [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in STEP_BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([step], buckets, sum_value=sum(values))
    return family


class RedlakeCollector(Collector):
    def collect(self) -> Iterator[Any]:
        yield from self._jobs()
        yield from self._outbox()
        yield from self._privacy()
        yield from self._queues()
        yield from self._indexer()

    def _jobs(self) -> Iterator[Any]:
        from dataspace.compute.models import Job

        states = GaugeMetricFamily("redlake_jobs", "Jobs by state.", labels=["state"])
        counts = dict(Job.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for state in Job.Status.values:
            states.add_metric([state], float(counts.get(state, 0)))
        yield states
        columns = sorted({c for pair in STEPS.values() for c in pair})
        recent = Job.objects.exclude(authorised_at=None).order_by("-requested_at").values(*columns)[:STEP_WINDOW]
        samples: dict[str, list[float]] = {step: [] for step in STEPS}
        for row in recent:
            for step, (start, end) in STEPS.items():
                if row[start] is not None and row[end] is not None:
                    samples[step].append(max(0.0, (row[end] - row[start]).total_seconds()))
        yield _histogram("redlake_job_step_seconds", "Duration of each step of a job.", samples)

    def _outbox(self) -> Iterator[Any]:
        from dataspace.chain.models import ChainTransaction

        backlog = GaugeMetricFamily("redlake_outbox_backlog", "Chain writes not yet final.", labels=["status"])
        counts = dict(
            ChainTransaction.objects.filter(status__in=OPEN_OUTBOX_STATUSES)
            .values_list("status")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for status in OPEN_OUTBOX_STATUSES:
            backlog.add_metric([status], float(counts.get(status, 0)))
        yield backlog

    def _privacy(self) -> Iterator[Any]:
        from dataspace.privacy.models import DatasetBudget

        totals = DatasetBudget.objects.aggregate(spent=Sum("rho_committed"), limit=Sum("rho_limit"))
        yield GaugeMetricFamily(
            "redlake_privacy_rho_spent", "Privacy loss (zCDP rho) reserved or spent.", totals["spent"] or 0.0
        )
        yield GaugeMetricFamily(
            "redlake_privacy_rho_limit", "Privacy loss (zCDP rho) allowed, all datasets.", totals["limit"] or 0.0
        )

    def _queues(self) -> Iterator[Any]:
        from celery import current_app as app  # the project's app (dataspace/__init__.py loads it)

        depth = GaugeMetricFamily("redlake_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        queues = sorted({"default", *(route["queue"] for route in settings.CELERY_TASK_ROUTES.values())})
        # A broker that is away leaves the family empty (readyz names it); the scrape still answers.
        with contextlib.suppress(Exception), app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            for queue in queues:
                depth.add_metric([queue], float(_queue_depth(conn, queue)))
        yield depth

    def _indexer(self) -> Iterator[Any]:
        from dataspace.chain import gateway
        from dataspace.chain.models import IndexerCursor

        lag = GaugeMetricFamily("redlake_indexer_lag_blocks", "Chain head minus the last block indexed.")
        cursor = IndexerCursor.objects.filter(chain_id=gateway.chain_id()).first()
        if cursor is not None:
            with contextlib.suppress(Exception):
                head = gateway._web3(settings.CHAIN_RPC_URL, 2.0).eth.block_number  # bounded: a scrape must answer
                lag.add_metric([], float(max(0, head - cursor.block_number)))
        yield lag


def _queue_depth(conn: Any, queue: str) -> int:
    # A channel per queue: a passive declare of a queue nobody declared yet fails (and on AMQP
    # closes its channel); such a queue holds nothing.
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            channel.close()


_registered: list[RedlakeCollector] = []


def register_collector() -> None:
    """Once per process, at the first scrape."""
    if not _registered:
        collector = RedlakeCollector()
        REGISTRY.register(collector)
        _registered.append(collector)


def _allowed(request: HttpRequest) -> bool:
    token = str(getattr(settings, "METRICS_TOKEN", ""))
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    # Behind a proxy every caller is the proxy's address: production sets METRICS_TOKEN (and
    # METRICS_ALLOW_LOOPBACK=false) rather than trusting it.
    return bool(settings.METRICS_ALLOW_LOOPBACK) and request.META.get("REMOTE_ADDR") in LOOPBACK


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponseNotFound()
    register_collector()
    response: HttpResponse = ExportToDjangoView(request)
    return response
