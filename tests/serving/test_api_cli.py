"""``srl serve``: options, and threads that never oversubscribe the cores."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from serving.cli import available_cores, threads_per_worker
from srl.cli import app as srl_app


@pytest.mark.parametrize(
    ("workers", "requested", "cores", "threads"),
    [
        (1, 1, 2, 1),
        (1, 0, 2, 2),
        (2, 0, 2, 1),
        (2, 4, 2, 1),
        (4, 0, 2, 1),
        (2, 0, 8, 4),
        (3, 2, 8, 2),
    ],
)
def test_workers_times_threads_fit_the_cores(
    workers: int, requested: int, cores: int, threads: int
) -> None:
    assert threads_per_worker(workers, requested, cores) == threads
    assert workers * threads <= max(cores, workers)


def test_this_machine_has_cores() -> None:
    assert available_cores() >= 1


def test_serve_explains_every_option() -> None:
    result = CliRunner().invoke(srl_app, ["serve", "--help"], env={"COLUMNS": "240"})

    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--workers",
        "--model",
        "--policy",
        "--reload-interval",
        "--threads",
        "--max-batch-items",
        "--timeout",
        "--allow-public-bind",
        "--log-level",
    ):
        assert option in result.output
