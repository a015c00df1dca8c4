"""Prometheus metrics of the service, on the app's own registry (one registry per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10_000)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class IngestMetrics:
    """Counters and histograms of ``POST /v1/events`` (names prefixed ``luanti_tune_``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "luanti_tune_events_received", "Events received in POST /v1/events, by type.", ["type"], registry=registry
        )
        self.accepted = Counter(
            "luanti_tune_events_accepted", "New events durably stored, by type.", ["type"], registry=registry
        )
        self.duplicate = Counter(
            "luanti_tune_events_duplicate",
            "Events already stored (client retries), by type.",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "luanti_tune_events_rejected",
            "Events refused (the batch was invalid, too large or the store unavailable), by type.",
            ["type"],
            registry=registry,
        )
        self.batches_rejected = Counter(
            "luanti_tune_event_batches_rejected", "Refused batches, by reason.", ["reason"], registry=registry
        )
        self.batch_size = Histogram(
            "luanti_tune_event_batch_size", "Events per accepted batch.", buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.commit_seconds = Histogram(
            "luanti_tune_event_commit_seconds",
            "Wall time of one store commit (a group of batches).",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.commit_batches = Histogram(
            "luanti_tune_event_commit_batches",
            "Batches coalesced into one commit (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )

    @staticmethod
    def add(counter: Counter, counts: dict[str, int]) -> None:
        for label, n in counts.items():
            if n:
                counter.labels(label).inc(n)
