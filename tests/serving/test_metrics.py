"""Metrics across the workers of `srl serve --workers N`, in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: A worker process: its model readiness, then (when it is the live one) the exposition.
WORKER = """
import sys
from serving.metrics import Metrics
metrics = Metrics()
metrics.ready.set(float(sys.argv[1]))
if sys.argv[2] == "report":
    print(metrics.exposition()[0].decode())
"""


def _worker(folder: Path, ready: int, then: str) -> str:
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(ready), then],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_a_worker_that_died_not_ready_no_longer_holds_readiness_at_zero(tmp_path: Path) -> None:
    # Given a worker that ended while not ready (restarted after SIGHUP, killed by the OOM
    # killer), its gauge file left behind
    _worker(tmp_path, 0, "exit")
    assert any(entry.name.startswith("gauge_livemin_") for entry in tmp_path.iterdir())

    # When a live, ready worker is scraped
    exposition = _worker(tmp_path, 1, "report")

    # Then readiness is the live workers' only
    assert "srl_model_ready 1.0" in exposition.splitlines()
