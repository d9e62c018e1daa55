"""Prometheus metrics: counters fed by the worker's job changes, gauges read from the store at scrape time."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from storage import Job, JobState, Store

_RESULTS = {
    JobState.DELIVERED: "succeeded",
    JobState.FAILED: "failed",
    JobState.TIMED_OUT: "timed_out",
    JobState.CANCELLED: "cancelled",
}
#: Finished jobs remembered to count each once (the worker reports a terminal job more than once).
_SEEN_LIMIT = 10_000


class ApiMetrics:
    """One registry per process (no global default registry, so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.generations = Counter(
            "veo_generations", "Finished generations by backend and result", ["backend", "result"], registry=r
        )
        self.seconds = Histogram(
            "veo_generation_seconds",
            "Seconds from submission to a finished video",
            ["backend"],
            buckets=(15, 30, 60, 90, 120, 180, 240, 300, 450, 600, 900, float("inf")),
            registry=r,
        )
        self.jobs = Gauge("veo_jobs", "Jobs in the store by state", ["state"], registry=r)
        self.queue_depth = Gauge("veo_queue_depth", "Jobs waiting for a backend slot", registry=r)
        self.in_flight = Gauge("veo_in_flight", "Jobs holding a backend generation slot", registry=r)
        self.credentials = Gauge(
            "veo_backend_credentials_ok",
            "1 when the backend's credentials worked at the last check",
            ["backend"],
            registry=r,
        )
        self.spend = Gauge(
            "veo_estimated_spend_month", "Estimated spend this calendar month (UTC)", ["unit"], registry=r
        )
        self.paused = Gauge("veo_queue_paused", "1 while the queue is on hold", registry=r)
        self._seen: OrderedDict[int, None] = OrderedDict()

    def job_changed(self, job: Job) -> None:
        """Count a job the first time it is seen finished."""
        result = _RESULTS.get(job.state)
        if result is None or job.id in self._seen:
            return
        self._seen[job.id] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        backend = job.backend or "none"
        self.generations.labels(backend, result).inc()
        if job.state is JobState.DELIVERED and job.submitted_at is not None and job.finished_at is not None:
            self.seconds.labels(backend).observe(max(0.0, job.finished_at - job.submitted_at))

    def set_credentials(self, backend: str, ok: bool | None) -> None:
        if ok is not None:
            self.credentials.labels(backend).set(1 if ok else 0)

    async def render(self, store: Store, *, paused: bool, now: float) -> bytes:
        """Refresh the store gauges, then the text exposition format."""
        stats = await store.stats()
        for state in JobState:
            self.jobs.labels(state.value).set(stats.get(state.value, 0))
        self.queue_depth.set(stats.get(JobState.QUEUED.value, 0))
        self.in_flight.set(await store.count_in_flight())
        month = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        for unit in ("usd", "credits"):
            self.spend.labels(unit).set(await store.spend(unit, month.timestamp()))
        self.paused.set(1 if paused else 0)
        return generate_latest(self.registry)
