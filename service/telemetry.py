"""Prometheus metrics: a registry of this process's own, its process and HTTP figures, the predict latency, and job
figures read from the database."""

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.db import session_scope
from service.models import JobStatus, utcnow
from service.repositories import job_counts, stats
from service.repositories import workers as worker_repo
from service.services.workers import worker_state
from service.settings import get_settings

# not the default registry: the app factory may run more than once in a process (tests), and the
# process-wide collectors (gc, platform) say nothing about jobs
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...

PREDICT_SECONDS = Histogram(
    "fitserve_predict_seconds",
    "Time to answer one prediction request (v1 or v2), model loading included",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)

# by route template ("/v1/jobs/{job_id}"), never the raw path: no ids in labels, a bounded number of series
HTTP_REQUESTS = Counter(
    "fitserve_http_requests",
    "HTTP requests answered, by method, route template and status code",
    labelnames=("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "fitserve_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response (a stream's whole life), by method, route and status",
    labelnames=("method", "route", "status"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0),
    registry=REGISTRY,
)


class FinishedTally:
    """Jobs ended, by final status, as counters: counted in the database, the one place every process writes to.

    A final status never changes, so the counts only grow, but for deletions: a counter that fell would read
    to Prometheus as a reset, and `increase()` would count every job again. A fall moves the baseline instead,
    so the counters never fall; jobs that end in the same scrape interval as finished jobs are deleted may be
    missed. The first scrape starts from the jobs the database holds.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.seen: dict[str, int] = {}  # the database's counts at the last scrape
        self.totals: dict[str, int] = {}

    def update(self, counts: dict[str, int]) -> dict[str, int]:
        with self.lock:
            for status in (s.value for s in stats.FINAL):
                now = counts.get(status, 0)
                self.totals[status] = self.totals.get(status, now) + max(0, now - self.seen.get(status, now))
                self.seen[status] = now
            return dict(self.totals)


class JobCollector(Collector):
    """Job figures read at scrape time: workers run in other processes, so the database is the one place that knows.

    Counts and training time come from the counters kept as jobs change (repositories/job_counts.py): a scrape
    reads no table that grows with the history (the running jobs aside)."""

    def __init__(self):
        self.finished = FinishedTally()

    def collect(self) -> Iterator[Metric]:
        with session_scope(read_only=True) as s:
            totals = job_counts.totals_by_status(s)
            running = stats.running_progress(s)
        counts = {status: jobs for status, (jobs, _) in totals.items()}
        jobs = GaugeMetricFamily("fitserve_jobs", "Jobs by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        yield jobs
        finished = CounterMetricFamily(
            "fitserve_jobs_finished", "Jobs that ended, by final status", labels=["status"]
        )
        for status, total in self.finished.update(counts).items():
            finished.add_metric([status], total)
        yield finished
        yield GaugeMetricFamily("fitserve_queue_depth", "Jobs waiting for a worker", value=counts.get("queued", 0))
        seconds = sum(totals.get(status.value, (0, 0.0))[1] for status in stats.FINAL)
        yield CounterMetricFamily("fitserve_training_seconds", "Seconds finished jobs spent training", seconds)
        # one figure for all running jobs: /metrics needs no key, so it names no job of any owner
        now, rate = utcnow(), 0.0
        for _job_id, epoch, started_at in running:
            elapsed = (now - started_at).total_seconds() if started_at else 0.0
            # a resumed attempt counts the epochs before its checkpoint too: an upper bound, not an exact rate
            rate += epoch / elapsed if elapsed > 0 else 0.0
        yield GaugeMetricFamily("fitserve_epochs_per_second", "Epochs per second of all running jobs together", value=rate)


REGISTRY.register(JobCollector())


class WorkerCollector(Collector):
    """The worker registry at scrape time: live workers by state and device, and how long the oldest job has waited."""

    def collect(self) -> Iterator[Metric]:
        with session_scope(read_only=True) as s:
            live = worker_repo.list_live(s, get_settings().LEASE_SECONDS)
            oldest = worker_repo.oldest_queued_at(s)
        counts: dict[tuple[str, str], int] = {}
        for w in live:
            key = (worker_state(w), w.device)
            counts[key] = counts.get(key, 0) + 1
        workers = GaugeMetricFamily("fitserve_workers", "Live workers (heartbeat within a lease)", labels=["state", "device"])
        for (state, device), n in sorted(counts.items()):
            workers.add_metric([state, device], n)
        yield workers
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "fitserve_oldest_queued_job_age_seconds", "How long the oldest queued job has waited (0: none queued)", value=age
        )


REGISTRY.register(WorkerCollector())
