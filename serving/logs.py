"""Structured logs for the service: one JSON object per line, never personal data.

Log records carry only what the service puts in them: request ids, routes, statuses,
timings, model versions and error types. Request bodies, headers and field values are never
logged, and uvicorn's access log (which prints raw paths) is replaced by the service's own.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import orjson

from features.error_text import without_credentials

#: The levels ``SRL_LOG_LEVEL`` and ``srl serve --log-level`` take.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message"}  # uvicorn's copy of the message, in ANSI colours
)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": without_credentials(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = without_credentials(value) if isinstance(value, str) else value
        # A library's message may quote a store URL with its password (MLflow, urllib3).
        return orjson.dumps(document, default=str).decode()


def silence_access_log() -> None:
    """Turn uvicorn's access log off, however the app was started.

    It prints each request's raw path and query string, before any key is checked.
    ``srl serve`` configures it off (``log_config``); ``uvicorn serving.app:create_app
    --factory`` configures it on before the app exists, but decides per connection, from
    whether the logger has handlers, so the app takes them away when it is made.
    """
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True


class WebSocketLineFilter(logging.Filter):
    """Keep callers' data out of uvicorn's lines about WebSocket handshakes.

    uvicorn logs each handshake on ``uvicorn.error`` as ``'%s - "WebSocket %s" 403'`` with
    the raw path and query string, which may hold a caller's data (``?email=...``,
    ``/v1/lookup/ann@...``): the path becomes the route it names, or ``<unmatched>``, and
    the query goes. ``srl serve`` turns uvicorn's WebSocket support off (``ws="none"``, the
    service has no WebSocket route); uvicorn then says, for every handshake, that no
    WebSocket library is installed, which is not so: that line is dropped (its "Unsupported
    upgrade request." stays).
    """

    def __init__(self, routes: Collection[str]) -> None:
        super().__init__()
        self.routes = frozenset(routes)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record (the path argument made a route), unless it is the false
        "no WebSocket library" line."""
        if not isinstance(record.msg, str):
            return True
        if record.msg.startswith("No supported WebSocket library detected"):
            return False
        if '"WebSocket %s"' in record.msg:
            args = record.args if isinstance(record.args, tuple) else ()
            if len(args) >= 2 and isinstance(args[1], str):
                path = args[1].split("?", 1)[0]
                shown = path if path in self.routes else "<unmatched>"
                record.args = (args[0], shown, *args[2:])
        return True


def hide_websocket_paths(routes: Collection[str]) -> None:
    """Put a ``WebSocketLineFilter`` knowing ``routes`` on ``uvicorn.error`` (one, the
    latest app's), however the app was started."""
    error_log = logging.getLogger("uvicorn.error")
    for old in [f for f in error_log.filters if isinstance(f, WebSocketLineFilter)]:
        error_log.removeFilter(old)
    error_log.addFilter(WebSocketLineFilter(routes))


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn, the service and every library (JSON lines
    on stderr): libraries' warnings, and at ``DEBUG`` their debug lines, as JSON too."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    libraries = "DEBUG" if level.upper() == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": libraries},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "serving": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
