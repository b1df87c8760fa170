"""Runs started at the same moment against a new embedded store all get it.

MLflow creates a fresh sqlite database's tables outside any lock, so two trainings
scheduled at once used to fail in its migrations (``table ... already exists``); the store
is now created under a lock beside the database (``training.tracking.using_store``).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from training import tracking

#: Processes opening one new store at once, and rounds with a new store each (without the
#: lock, every one of four rounds of three processes failed).
PROCESSES = 3
ROUNDS = 2


def _open_store_and_experiment(folder: str) -> str:
    """In a fresh process: open the embedded store of ``folder`` and its experiment."""
    os.chdir(folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    try:
        with tracking.using_store():
            return tracking.experiment_id("srl-reconversion")
    except Exception as error:  # reported to the test, which names it
        return f"failed: {type(error).__name__}: {error}"


@pytest.mark.slow
def test_runs_starting_together_on_a_new_store_all_get_it_and_one_experiment(
    tmp_path: Path,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    for round_number in range(ROUNDS):
        folder = tmp_path / f"round-{round_number}"
        folder.mkdir()
        with spawn.Pool(PROCESSES) as pool:
            ids = pool.map(_open_store_and_experiment, [str(folder)] * PROCESSES)
        assert [i for i in ids if i.startswith("failed")] == []
        assert len(set(ids)) == 1
        assert (folder / ".srl" / "mlflow.db").is_file()
