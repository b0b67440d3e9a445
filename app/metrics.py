"""Prometheus metrics. With several workers, `serve` sets PROMETHEUS_MULTIPROC_DIR before the
workers start, and /metrics aggregates every worker's files."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

OUTCOMES = ("new", "sticky", "fallback", "paused", "bot", "not_found", "error")
REDIS_ERRORS = ("timeout", "unavailable", "reply")

SCANS = Counter("livecode_scans", "Scans of live codes by outcome", ["outcome"])
SCAN_SECONDS = Histogram(
    "livecode_scan_duration_seconds",
    "Time to answer a scan, Redis included",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
REDIS_ERRORS_TOTAL = Counter(
    "livecode_redis_errors", "Failed Redis calls on the scan path", ["kind"]
)

# Bound children once: labels() costs a dict lookup and a lock on every call.
scan_outcome = {o: SCANS.labels(o) for o in OUTCOMES}
redis_error = {k: REDIS_ERRORS_TOTAL.labels(k) for k in REDIS_ERRORS}
observe_scan_seconds = SCAN_SECONDS.observe


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
