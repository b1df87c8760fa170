"""Runs started at the same moment against a new embedded store all get it.

MLflow creates a fresh sqlite database's tables outside any lock, so two trainings
scheduled at once used to fail in its migrations (``table ... already exists``); the store
is now created under a lock beside the database (``training.tracking.using_store``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: Processes opening one new store at once, and rounds with a new store each (without the
#: lock, every one of four rounds of three processes had one fail).
PROCESSES = 3
ROUNDS = 2
#: What each process runs: open the embedded store of its working directory and the
#: experiment, and print the experiment's id.
OPEN_STORE = (
    "from training import tracking\n"
    "with tracking.using_store():\n"
    "    print(tracking.experiment_id('srl-reconversion'))\n"
)


def _environment() -> dict[str, str]:
    """This environment for a run of ``OPEN_STORE``: the embedded store of its working
    directory, and no telemetry thread left to wait for at exit."""
    left_out = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    environment = {k: v for k, v in os.environ.items() if k not in left_out}
    environment["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return environment


@pytest.mark.slow
def test_runs_starting_together_on_a_new_store_all_get_it_and_one_experiment(
    tmp_path: Path,
) -> None:
    environment = _environment()
    for round_number in range(ROUNDS):
        folder = tmp_path / f"round-{round_number}"
        folder.mkdir()
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_STORE],
                cwd=folder,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        outcomes = [run.communicate(timeout=240) for run in runs]
        failed = [
            err[-2000:] for run, (_, err) in zip(runs, outcomes, strict=True) if run.returncode
        ]
        assert failed == []
        assert len({out.strip().splitlines()[-1] for out, _ in outcomes}) == 1
        assert (folder / ".srl" / "mlflow.db").is_file()


#: How long after the store's file appears a run opening a new store is stopped: while
#: MLflow creates its tables (a second or two).
STOP_AFTER_SECONDS = (0.0, 0.3, 0.6)


def _stop_once_the_store_is_begun(
    run: subprocess.Popen[bytes], store: Path, seconds: float
) -> None:
    """Kill ``run`` ``seconds`` after the database file appears in ``store`` (where it is
    built, or beside it)."""
    files = (store / "mlflow.db", store / "mlflow.db.building")
    deadline = time.monotonic() + 120
    while not any(file.exists() for file in files):
        assert run.poll() is None, "the run ended before it made the store"
        assert time.monotonic() < deadline, "no store appeared"
        time.sleep(0.002)
    time.sleep(seconds)
    run.kill()
    run.wait()


@pytest.mark.slow
def test_a_run_stopped_while_it_creates_the_store_leaves_none_or_a_whole_one(
    tmp_path: Path,
) -> None:
    environment = _environment()
    command = [sys.executable, "-c", OPEN_STORE]
    for round_number, seconds in enumerate(STOP_AFTER_SECONDS):
        # Given a run on a new store killed while MLflow creates the store's tables
        folder = tmp_path / f"stopped-{round_number}"
        folder.mkdir()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        stopped = subprocess.Popen(command, cwd=folder, env=environment, **quiet)
        _stop_once_the_store_is_begun(stopped, folder / ".srl", seconds)
        # When the next run opens it, then it gets a whole store, and nothing is left aside
        after = subprocess.run(
            command, cwd=folder, env=environment, capture_output=True, text=True, timeout=240
        )
        assert after.returncode == 0, after.stderr[-2000:]
        assert (folder / ".srl" / "mlflow.db").is_file()
        assert not (folder / ".srl" / "mlflow.db.building").exists()
