"""Prometheus metrics of this process, in prometheus-client's default registry.

Only the HTTP layer imports this module (prometheus-client costs a worker
process start-up time and memory for nothing, as `jobdock worker` serves no
metrics): it records request latency itself, and hands `CLAIM_SECONDS.observe`
to its App (`App.observe_claims`) so that the workers of the same process
record claim latency. Job counts are not kept
here: they are read from the store when `/metrics` is scraped, so that every
API process reports the same totals whichever processes ran the jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from jobdock.model import JobStatus

__all__ = ["CLAIM_SECONDS", "REQUEST_SECONDS", "job_metrics"]

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CLAIM_SECONDS = Histogram(
    "jobdock_claim_duration_seconds",
    "How long one claim of due jobs by a worker of this process takes (one store round trip)",
    buckets=_FAST,
)

REQUEST_SECONDS = Histogram(
    "jobdock_http_request_duration_seconds",
    "HTTP requests served by this process, by method, route template and status code",
    ["method", "route", "status"],
    buckets=_FAST,
)


def job_metrics(counts: Mapping[tuple[str, JobStatus], int],
                kinds: Iterable[str] = ()) -> list[Metric]:
    """Gauges of unexpired jobs by kind and status, and of queued jobs by kind, from the
    store's counts; every status of every kind counted or named in `kinds` is reported,
    zeros included, so that series do not vanish when a count drops to nothing."""
    jobs = GaugeMetricFamily("jobdock_jobs", "Unexpired jobs by kind and status",
                             labels=["kind", "status"])
    queued = GaugeMetricFamily("jobdock_queue_depth",
                               "Jobs waiting for a worker (status queued), by kind",
                               labels=["kind"])
    for kind in sorted({kind for kind, _ in counts} | set(kinds)):
        for status in JobStatus:
            jobs.add_metric([kind, status.value], counts.get((kind, status), 0))
        queued.add_metric([kind], counts.get((kind, JobStatus.QUEUED), 0))
    return [jobs, queued]
