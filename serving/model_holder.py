"""The serving model, swapped atomically while requests keep flowing.

Every request takes the current ``Deployment`` once, at its start, and uses that object to
the end; a reload builds and checks a complete new ``Deployment`` off the event loop and
then replaces one reference. An in-flight request therefore never sees half a swap, and a
version that fails to load, or loads but cannot score the example request, never replaces
the one serving. With no model at all (registry unreachable at start), the service stays
up, not ready, says why on ``/readyz`` and keeps retrying.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from features.error_text import error_summary
from features.model_store import ModelLoadError, UnreadableModelError
from features.records import ScoreRequest
from serving.examples import EXAMPLE_REQUEST
from serving.metrics import Metrics
from serving.model_source import current_version, load_serving_model
from serving.policy import (
    PolicyError,
    check_policy_change,
    check_policy_features,
    idle_rules,
    read_policy,
)
from serving.service import Deployment, score_requests
from serving.settings import Settings

logger = logging.getLogger(__name__)

SIGNAL_TICK_SECONDS = 1.0


class NotReady(Exception):  # noqa: N818 - reads as the state it reports
    """No model is loaded yet; the message says why."""


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did."""

    reloaded: bool
    version: str | None
    previous_version: str | None
    message: str
    policy: str | None = None
    #: A refusal that trying again cannot mend: the version's own files, a version that
    #: cannot score the example, or a policy that breaks a rule (until the alias or the
    #: file changes; ``_for_good``).
    refused_for_good: bool = False


class ModelHolder:
    """Holds the serving ``Deployment`` and replaces it on reload or when the source moves."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._current: Deployment | None = None
        self._problem = STARTING
        self._readiness = STARTING
        self._lock = asyncio.Lock()
        self._failed_source: str | None = None
        self._signal_seen = _signal_stamp(settings.reload_signal)
        self._last_poll = time.monotonic()

    @property
    def current(self) -> Deployment | None:
        """The deployment serving now (None until the first successful load)."""
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the service is not ready, or None when it is."""
        return None if self._current is not None else self._problem

    @property
    def readiness_problem(self) -> str | None:
        """Why the service is not ready in a few words that name no host, path or library
        message (``GET /readyz`` answers without a key), or None when it is ready."""
        return None if self._current is not None else self._readiness

    def require(self) -> Deployment:
        """The deployment serving now.

        Raises:
            NotReady: nothing is loaded yet.
        """
        current = self._current
        if current is None:
            raise NotReady(self._problem)
        return current

    async def reload(self, cause: str) -> ReloadOutcome:
        """Load the source again (and the policy) and swap it in if it works."""
        async with self._lock:
            outcome = await anyio.to_thread.run_sync(self._reload_blocking, cause)
        self._metrics.reloads.labels("swapped" if outcome.reloaded else "failed").inc()
        return outcome

    async def reload_everywhere(self) -> ReloadOutcome:
        """Reload here, then signal the other workers (when a signal file is configured)."""
        outcome = await self.reload("admin")
        signal = self._settings.reload_signal
        if signal is not None:
            signal.write_text(uuid.uuid4().hex, encoding="utf-8")
            self._signal_seen = _signal_stamp(signal)
        return outcome

    async def watch(self) -> None:
        """Retry while not ready; reload when the source moves or another worker signals."""
        while True:
            await asyncio.sleep(self._tick())
            try:
                await self._watch_once()
            except Exception as error:  # the watcher must outlive any single failure
                logger.error("model watch failed", extra={"error": _describe(error)})

    def _tick(self) -> float:
        if self._current is None:
            return self._settings.retry_interval_seconds
        ticks = [self._settings.retry_interval_seconds]
        if self._settings.reload_interval_seconds > 0:
            ticks.append(self._settings.reload_interval_seconds)
        if self._settings.reload_signal is not None:
            ticks.append(SIGNAL_TICK_SECONDS)
        return min(ticks)

    async def _watch_once(self) -> None:
        if self._current is None:
            await self.reload("retry")
            return
        stamp = _signal_stamp(self._settings.reload_signal)
        if stamp != self._signal_seen:
            self._signal_seen = stamp
            await self.reload("signal")
            return
        if self._poll_due():
            await self._reload_if_moved()

    def _poll_due(self) -> bool:
        interval = self._settings.reload_interval_seconds
        if interval <= 0 or time.monotonic() - self._last_poll < interval:
            return False
        self._last_poll = time.monotonic()
        return True

    async def _reload_if_moved(self) -> None:
        source = await anyio.to_thread.run_sync(current_version, self._settings.model_uri)
        current = self._current
        if source is None or current is None:
            return
        if source != current.version and source != self._failed_source:
            await self.reload(f"source moved to {source}")

    def _reload_blocking(self, cause: str) -> ReloadOutcome:
        previous = self._current
        before = previous.version if previous else None
        source = _source_or_none(self._settings.model_uri)
        try:
            deployment = self._load()
        except Exception as error:
            if isinstance(error, UnreadableModelError | ExampleNotScoredError):
                self._failed_source = source  # the version's own fault: not retried
            return self._failed(cause, before, error)
        self._current = deployment
        self._failed_source = None
        _settle_heap()
        self._metrics.model_swapped(_labels(previous), _labels(deployment) or ("", "", ""))
        logger.info(
            "model swapped in",
            extra={
                "cause": cause,
                "version": deployment.version,
                "previous": before,
                "source": source,
                "policy": deployment.policy.label,
            },
        )
        policy = deployment.policy.label
        message = f"now serving {deployment.version} with policy {policy}"
        return ReloadOutcome(True, deployment.version, before, message, policy)

    def _load(self) -> Deployment:
        settings = self._settings
        policy = read_policy(settings.policy)
        serving = self._current.policy if self._current else None
        check_policy_change(serving, policy, settings.policy)
        model, identity = load_serving_model(settings.model_uri, settings.model_threads)
        check_policy_features(policy, model.config, settings.policy)
        for warning in idle_rules(policy, model.trained_age_days):
            logger.warning("policy rule idle", extra={"version": identity.version, "why": warning})
        deployment = Deployment(model, identity, policy)
        check_deployment(deployment)
        return deployment

    def _failed(self, cause: str, before: str | None, error: Exception) -> ReloadOutcome:
        if isinstance(error, PolicyError):
            message = str(error)
        elif isinstance(error, ModelLoadError):  # its message starts with the URI
            message = f"could not load {_describe(error)}"
        else:
            message = f"could not load {self._settings.model_uri}: {_describe(error)}"
        if self._current is None:
            self._problem = message
            self._readiness = _readiness_problem(error)
            self._metrics.ready.set(0)
        logger.error(
            "model load failed", extra={"cause": cause, "serving": before, "error": message}
        )
        serving = self._current.policy.label if self._current else None
        kept = f"; still serving {before} with policy {serving}" if before else ""
        return ReloadOutcome(False, before, before, message + kept, serving, _for_good(error))


#: Why a service that has loaded nothing yet is not ready.
STARTING = "starting: the model is loading"
#: Where the full reason a service is not ready can be read (``GET /readyz`` gives its kind).
FULL_REASON = "the log, and the 503 answer of a scoring route, say why"


def _readiness_problem(error: Exception) -> str:
    """The kind of load failure, for ``GET /readyz``."""
    if isinstance(error, PolicyError):
        kind = "the routing policy was refused"
    elif isinstance(error, UnreadableModelError | ExampleNotScoredError):
        kind = "the model version cannot be served"
    else:
        kind = "the model could not be loaded from its source"
    return f"{kind}; {FULL_REASON}"


def _for_good(error: Exception) -> bool:
    """Whether trying the same load again cannot mend ``error``: the version's own files,
    a version that cannot score the example, or a policy refused for what it says (a policy
    file that could not be read, missing or on a failing disk, may be there next time)."""
    if isinstance(error, PolicyError):
        return not isinstance(error.__cause__, OSError)
    return isinstance(error, UnreadableModelError | ExampleNotScoredError)


def _settle_heap() -> None:
    """Exempt every object alive now (the libraries, the model) from garbage collection.

    Scoring allocates many short-lived objects; without this, every full collection walks
    the hundreds of thousands of long-lived objects that imports and the model created, a
    pause of tens of milliseconds that lands on whichever request is running. Garbage is
    collected first so that none is frozen; frozen objects are still freed by reference
    counting (an old model after a reload).
    """
    gc.collect()
    gc.freeze()


class ExampleNotScoredError(ValueError):
    """A model version that cannot score the example request end to end: it would fail the
    same way on every request, and on every load."""


def check_deployment(deployment: Deployment) -> None:
    """Score the example request end to end; raise unless it gives a probability.

    Raises:
        ExampleNotScoredError: scoring failed, or the probability is not a finite number in
            [0, 1].
    """
    request = ScoreRequest.model_validate(EXAMPLE_REQUEST)
    try:
        scoring = score_requests(deployment, [request], top_k=3, request_id="check")
    except (OSError, MemoryError):  # the machine's trouble, not the version's: retried
        raise
    except Exception as error:
        reason = error_summary(error, with_kind=True)
        raise ExampleNotScoredError(f"the example request could not be scored: {reason}") from error
    probability = float(scoring.probability[0])
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ExampleNotScoredError(f"the model answered {probability} for the example request")


def _source_or_none(uri: str) -> str | None:
    try:
        return current_version(uri)
    except ModelLoadError:
        return None


def _labels(deployment: Deployment | None) -> tuple[str | None, str, str | None] | None:
    if deployment is None:
        return None
    identity = deployment.identity
    return identity.name, identity.version, identity.alias


def _signal_stamp(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _describe(error: Exception) -> str:
    return error_summary(error, with_kind=not isinstance(error, ModelLoadError | NotReady))
