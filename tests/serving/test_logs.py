"""The service's log lines: JSON objects written off the thread that logs them."""

from __future__ import annotations

import io
import logging
import logging.config
import threading
from collections.abc import Iterator

import orjson
import pytest

from serving.logs import BackgroundJsonHandler, log_config


class _HeldStream(io.StringIO):
    """A stream whose writes wait until ``release`` is set, as a full pipe would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.waited_too_long = False

    def write(self, text: str) -> int:
        if not self.release.wait(timeout=30):
            self.waited_too_long = True
        return super().write(text)


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger("serving.test_logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_stalled_stream_does_not_hold_up_the_caller_and_loses_no_line() -> None:
    stream = _HeldStream()
    handler = BackgroundJsonHandler(stream)
    logger = _logger(handler)

    for index in range(3):
        logger.info("request", extra={"status": 200, "index": index})
    stream.release.set()  # only reached because logging did not wait for the stream
    handler.close()  # writes every queued line before it returns

    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert not stream.waited_too_long
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert {line["message"] for line in lines} == {"request"}
    assert {line["logger"] for line in lines} == {"serving.test_logs"}


def test_closing_twice_is_harmless() -> None:
    handler = BackgroundJsonHandler(io.StringIO())
    handler.close()
    handler.close()


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """Give the loggers ``log_config`` configures their settings back after the test."""
    names = list(log_config()["loggers"])
    saved = {name: _settings(logging.getLogger(name)) for name in names}
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                handler.close()  # writes its queued lines
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def _settings(logger: logging.Logger) -> tuple[list[logging.Handler], int, bool]:
    return list(logger.handlers), logger.level, logger.propagate


@pytest.mark.usefixtures("restored_loggers")
def test_log_config_writes_json_lines_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(log_config("INFO"))  # here, where stderr is captured
    requests = logging.getLogger("serving.requests")
    requests.info("request", extra={"route": "/v1/score", "status": 422, "error": "bad"})
    requests.debug("below the level")
    for handler in logging.getLogger("serving").handlers:
        handler.close()
    written = capfd.readouterr().err.splitlines()
    lines = [orjson.loads(line) for line in written if line.startswith("{")]
    request_lines = [line for line in lines if line["logger"] == "serving.requests"]
    assert len(request_lines) == 1
    assert request_lines[0]["level"] == "info"
    assert request_lines[0]["route"] == "/v1/score"
    assert request_lines[0]["status"] == 422
