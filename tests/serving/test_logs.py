"""The service's log lines: one JSON object per line on stderr."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import orjson
import pytest

from serving.logs import log_config


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """Give the loggers ``log_config`` configures their settings back after the test."""
    names = [*log_config()["loggers"], ""]  # "": the root logger
    saved = {name: _settings(logging.getLogger(name)) for name in names}
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                handler.close()
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
    written = capfd.readouterr().err.splitlines()
    lines = [orjson.loads(line) for line in written if line.startswith("{")]
    request_lines = [line for line in lines if line["logger"] == "serving.requests"]
    assert len(request_lines) == 1
    assert request_lines[0]["level"] == "info"
    assert request_lines[0]["route"] == "/v1/score"
    assert request_lines[0]["status"] == 422


@pytest.mark.usefixtures("restored_loggers")
def test_libraries_log_json_lines_too_without_passwords_or_colour_codes(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logging.config.dictConfig(log_config("INFO"))
    # A library's warning quoting a store URL, and uvicorn's record with its coloured copy
    logging.getLogger("urllib3.connectionpool").warning(
        "Retrying after connection broken: http://operator:Secret42@registry:5000/api"
    )
    logging.getLogger("urllib3.connectionpool").info("below the libraries' level")
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "\x1b[36m%d\x1b[0m"}
    )

    written = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    lines = [orjson.loads(line) for line in written]
    assert [line["logger"] for line in lines] == ["urllib3.connectionpool", "uvicorn.error"]
    assert lines[0]["message"].endswith("http://***@registry:5000/api")
    assert "Secret42" not in written[0]
    assert "color_message" not in lines[1]
    assert "\x1b" not in written[1]
