"""Prometheus metrics of the scoring service.

Each app gets its own registry, so several apps (tests, workers) never share counters by
accident. When ``PROMETHEUS_MULTIPROC_DIR`` is set (``srl serve --workers N`` sets it),
every worker writes its samples there and ``/metrics`` aggregates all workers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from serving.routing import Routes

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
COALESCED_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

ModelLabels = tuple[str | None, str, str | None]
"""Name, version and alias of a model."""


#: A live gauge's file in the multi-process folder: ``gauge_livemin_<pid>.db``.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live(?:all|min|max|sum|mostrecent)_(\d+)\.db")


def forget_dead_workers(folder: Path) -> None:
    """Drop the live gauges of worker processes that have ended.

    ``srl_model_ready`` (the least over live workers) and ``srl_model_info`` (the most)
    count only live workers, but the files a worker leaves behind when it ends (a restart
    after SIGHUP, a crash, the out-of-memory killer) still hold its last values: the
    gauge would read 0 for ever once a worker died not ready. prometheus_client leaves
    removing them to the server (its ``mark_process_dead``), which uvicorn does not call.
    """
    for entry in folder.iterdir():
        found = _LIVE_GAUGE_FILE.fullmatch(entry.name)
        if found and not _alive(int(found.group(1))):
            entry.unlink(missing_ok=True)  # another worker's scrape may remove it first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


class Metrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "srl_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "srl_http_request_seconds",
            "Time to answer a request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "srl_http_errors",
            "Error responses by route and error code.",
            ["route", "code"],
            registry=self.registry,
        )
        self._scoring_metrics()
        self._model_metrics()

    def _scoring_metrics(self) -> None:
        self.leads = Counter(
            "srl_leads_scored", "Leads scored.", ["endpoint"], registry=self.registry
        )
        self.probability = Histogram(
            "srl_score_probability",
            "Distribution of calibrated probabilities.",
            buckets=PROBABILITY_BUCKETS,
            registry=self.registry,
        )
        self.routed = Counter(
            "srl_routed_leads",
            "Leads routed, by program and tier.",
            ["program", "tier"],
            registry=self.registry,
        )
        self.suppressed = Counter(
            "srl_suppressed_leads",
            "Leads suppressed, by cause (consent or reason).",
            ["cause"],
            registry=self.registry,
        )
        self.coalesced = Histogram(
            "srl_coalesced_requests",
            "Single-lead requests scored together in one pass.",
            buckets=COALESCED_BUCKETS,
            registry=self.registry,
        )

    def _model_metrics(self) -> None:
        self.model_info = Gauge(
            "srl_model_info",
            "1 for the model version serving now.",
            ["name", "version", "alias"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "srl_model_ready",
            "1 when a model and policy are loaded.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.reloads = Counter(
            "srl_model_reloads",
            "Model reload attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )

    def observe_request(
        self, route: str, method: str, status: int, seconds: float, error: str | None
    ) -> None:
        """Count one answered HTTP request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if error is not None:
            self.errors.labels(route, error).inc()

    def observe_scores(self, endpoint: str, probability: np.ndarray, routes: Routes) -> None:
        """Count scored leads, their probabilities, programs and suppressions."""
        self.leads.labels(endpoint).inc(len(probability))
        for value in probability:
            self.probability.observe(float(value))
        for program, tier in zip(routes.program, routes.tier, strict=True):
            self.routed.labels(str(program), str(tier)).inc()
        for reason in routes.suppression_reason:
            if reason is not None:
                self.suppressed.labels(str(reason)).inc()

    def observe_coalesced(self, requests: int) -> None:
        """Record how many ``/v1/score`` requests one scoring pass served."""
        self.coalesced.observe(requests)

    def model_swapped(self, old: ModelLabels | None, new: ModelLabels) -> None:
        """Point ``srl_model_info`` at the new version."""
        if old is not None and old != new:
            self.model_info.labels(*(label or "" for label in old)).set(0)
        self.model_info.labels(*(label or "" for label in new)).set(1)
        self.ready.set(1)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type (all workers when multi-process)."""
        folder = os.environ.get(MULTIPROCESS_VARIABLE)
        if folder:
            forget_dead_workers(Path(folder))
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
