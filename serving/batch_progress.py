"""Progress of a batch job: a bar on a terminal, plain log lines when output goes to a log."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Protocol

from tqdm import tqdm

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """Told about chunks as they finish."""

    def start(self, total: int, done: int) -> None:
        """The job has ``total`` chunks, ``done`` of them finished before this run."""

    def advance(self, rows: int) -> None:
        """One more chunk finished, with ``rows`` scored rows."""

    def close(self) -> None:
        """No more chunks."""


class LogProgress:
    """One log line per finished chunk, with the rate and the time left."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.rows = 0
        self.started = time.monotonic()
        self.scored_here = 0

    def start(self, total: int, done: int) -> None:
        """Log the plan."""
        self.total, self.done, self.started = total, done, time.monotonic()
        logger.info("batch chunks total=%d already_done=%d", total, done)

    def advance(self, rows: int) -> None:
        """Log one finished chunk."""
        self.done += 1
        self.scored_here += 1
        self.rows += rows
        elapsed = time.monotonic() - self.started
        left = (self.total - self.done) * elapsed / self.scored_here
        logger.info(
            "batch chunk_done=%d/%d rows=%d elapsed_s=%.1f eta_s=%.1f",
            self.done,
            self.total,
            self.rows,
            elapsed,
            left,
        )

    def close(self) -> None:
        """Nothing to release."""


class BarProgress:
    """A tqdm bar over chunks (for an interactive terminal)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bar: tqdm[None] | None = None
        self.rows = 0

    def start(self, total: int, done: int) -> None:
        """Draw the bar."""
        self.bar = tqdm(total=total, initial=done, unit="chunk", desc="scoring", file=self.stream)

    def advance(self, rows: int) -> None:
        """Move the bar by one chunk."""
        self.rows += rows
        if self.bar is not None:
            self.bar.set_postfix(rows=f"{self.rows:,}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()


def progress_for(stream: IO[str] | None = None) -> Progress:
    """A bar when ``stream`` (default stderr) is a terminal, log lines otherwise."""
    target = stream if stream is not None else sys.stderr
    if target.isatty():
        return BarProgress(target)
    return LogProgress()
