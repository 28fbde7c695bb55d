"""Prometheus metrics of the service: requests by route and status, latency, model and scores.

Each app gets its own registry, so several apps (tests) never share or double-register
collectors. Under several uvicorn workers (``PROMETHEUS_MULTIPROC_DIR`` set, see
:mod:`serving.workers`) the values live in that folder and ``/metrics`` adds up every worker's
(gauges of the loaded model and scores: one series per worker, labelled by pid).
"""

from __future__ import annotations

import calendar
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kam.serving.state import ServingState

# Fine buckets below 25 ms: the single-score target is a p99 of 20 ms.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)
UNMATCHED = "unmatched"


class Metrics:
    """The service's collectors, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kam_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kam_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # a gauge rather than an Info, which the multiprocess mode does not support
        self.model = Gauge(
            "kam_model_info",
            "The model being served (1 for the current labels).",
            ["name", "version", "alias", "uri"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self._model_labels: tuple[str, str, str, str] | None = None
        self.model_loaded = Gauge(
            "kam_model_loaded",
            "1 when a model is loaded, else 0.",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.scores_loaded = Gauge(
            "kam_scores_loaded_accounts",
            "Accounts whose latest scores are loaded.",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.scores_as_of = Gauge(
            "kam_scores_as_of_timestamp_seconds",
            "Latest as_of of the loaded scores (Unix time).",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "kam_reloads",
            "Reloads of model and scores, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.score_batch_rows = Histogram(
            "kam_score_batch_rows",
            "Posted feature rows scored together in one batch (POST /v1/score).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def observe_state(self, state: ServingState) -> None:
        """Describe the loaded model and scores."""
        model = state.model
        labels = (
            (model.name or "") if model else "",
            (model.version or "") if model else "",
            (model.alias or "") if model else "",
            state.model_uri,
        )
        if self._model_labels is not None and self._model_labels != labels:
            # zero first: in multiprocess mode the value stays in the worker's file, and
            # removing labels is not supported there (it only warns)
            self.model.labels(*self._model_labels).set(0)
            if not _multiprocess_folder():
                self.model.remove(*self._model_labels)
        self.model.labels(*labels).set(1)
        self._model_labels = labels
        self.model_loaded.set(1 if model is not None else 0)
        scores = state.scores
        self.scores_loaded.set(len(scores) if scores is not None else 0)
        as_of = scores.as_of if scores is not None else None
        self.scores_as_of.set(calendar.timegm(as_of.timetuple()) if as_of else 0)

    def worker_exiting(self) -> None:
        """Drop this worker's live gauges from the shared folder (a worker that stops)."""
        folder = _multiprocess_folder()
        if folder:
            mark_process_dead(os.getpid(), folder)

    def exposition(self) -> bytes:
        """The text format of every metric (every worker's, in multiprocess mode)."""
        folder = _multiprocess_folder()
        if not folder:
            return generate_latest(self.registry)
        drop_dead_workers(folder)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=folder)
        return generate_latest(merged)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the number: not our worker
        return False
    return True


def drop_dead_workers(folder: str) -> list[int]:
    """Remove the live gauges of workers that are gone without saying so (SIGKILL, a crash).

    A worker that stops cleanly drops its own (:meth:`Metrics.worker_exiting`); one killed
    leaves its files behind, and its model and scores would be reported as loaded for ever.
    Returns the pids dropped.
    """
    dropped = []
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and int(pid_text) not in dropped and not _alive(int(pid_text)):
            with contextlib.suppress(FileNotFoundError):  # another worker was quicker
                mark_process_dead(int(pid_text), folder)
            dropped.append(int(pid_text))
    return dropped


def _multiprocess_folder() -> str | None:
    """The folder of prometheus_client's multiprocess mode (several workers), if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class MetricsMiddleware:
    """Counts and times every request by its route template (never the raw path).

    A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it adds microseconds, not a
    task and a stream per request.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
