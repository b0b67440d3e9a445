"""Prometheus metrics. With several workers, `serve` sets PROMETHEUS_MULTIPROC_DIR before the
workers start, and /metrics aggregates every worker's files.

The scan path does not touch prometheus_client per request: a Counter.inc plus a
Histogram.observe cost ~2.5 us (a lock and, in multiprocess mode, an mmap write each), about a
tenth of the whole scan budget (bench/RESULTS.md). Scans are tallied in plain integers and
folded into the real metrics once a second and before every scrape.
"""

from __future__ import annotations

import os
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

OUTCOMES = ("new", "sticky", "fallback", "paused", "bot", "not_found", "limited", "error",
            "disconnected")
REDIS_ERRORS = ("timeout", "unavailable", "reply")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

SCANS = Counter("livecode_scans", "Scans of live codes by outcome", ["outcome"])
SCAN_SECONDS = Histogram(
    "livecode_scan_duration_seconds", "Time to answer a scan, Redis included", buckets=BUCKETS
)
REDIS_ERRORS_TOTAL = Counter(
    "livecode_redis_errors", "Failed Redis calls on the scan path", ["kind"]
)
redis_error = {k: REDIS_ERRORS_TOTAL.labels(k) for k in REDIS_ERRORS}
WEBHOOK_DELIVERIES = Counter(
    "livecode_webhook_deliveries", "Webhook delivery attempts by result", ["result"]
)
webhook_attempt = {ok: WEBHOOK_DELIVERIES.labels("ok" if ok else "failed") for ok in (True, False)}


class ScanTally:
    """Per-process tallies of scans, folded into SCANS and SCAN_SECONDS by flush()."""

    def __init__(self) -> None:
        self._children = {o: SCANS.labels(o) for o in OUTCOMES}
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.seconds = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1  # Prometheus buckets are "<= bound"
        self.seconds += seconds

    def flush(self) -> None:
        outcomes, self.outcomes = self.outcomes, dict.fromkeys(OUTCOMES, 0)
        buckets, self.buckets = self.buckets, [0] * (len(BUCKETS) + 1)
        seconds, self.seconds = self.seconds, 0.0
        for outcome, n in outcomes.items():
            if n:
                self._children[outcome].inc(n)
        # Histogram has no public bulk API; its per-bucket values are non-cumulative counts.
        for value, n in zip(SCAN_SECONDS._buckets, buckets, strict=True):
            if n:
                value.inc(n)
        if seconds:
            SCAN_SECONDS._sum.inc(seconds)


scans = ScanTally()


def render() -> tuple[bytes, str]:
    scans.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
