"""Structured logs for the service: one JSON object per line, never personal data.

Log records carry only what the service puts in them: request ids, routes, statuses,
timings, model versions and error types. Request bodies, headers and field values are never
logged, and uvicorn's access log (which prints raw paths) is replaced by the service's own.

Each line is formatted where it is logged and written by a thread of its own
(``BackgroundJsonHandler``), so a slow reader of the log stream (a full pipe, a stalled
log shipper) never holds up the event loop that answers requests.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        return orjson.dumps(document, default=str).decode()


class BackgroundJsonHandler(logging.handlers.QueueHandler):
    """JSON lines formatted on the logging thread, written to ``stream`` by a thread of its own.

    Closing the handler (``logging.shutdown`` at exit, or a new logging configuration)
    writes every line already queued before it returns.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(queue.SimpleQueue())
        self.setFormatter(JsonFormatter())
        writer = logging.StreamHandler(stream if stream is not None else sys.stderr)
        self._listener: logging.handlers.QueueListener | None = logging.handlers.QueueListener(
            self.queue, writer
        )
        self._listener.start()

    def close(self) -> None:
        """Write what is queued, stop the writing thread and close."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        super().close()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and the service (JSON lines on stderr,
    written off the event loop)."""
    handler = {"()": BackgroundJsonHandler, "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "serving": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
