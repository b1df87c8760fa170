"""Reload under load: a real ``srl serve`` on 127.0.0.1 keeps answering while the alias moves.

Eight clients score continuously while the ``champion`` alias moves to a new version and
then to a broken one. Every request must succeed, every answer names the version that
scored it, a client never goes back to an older version, and the broken version never serves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from features.predictor import ReconversionModel
from serving.examples import EXAMPLE_REQUEST
from tests.servers import SRL, eventually, free_port, running
from tests.serving.conftest import MODEL_NAME, broken_copy, register

CLIENTS = 8


@dataclass
class Load:
    """Answers and failures collected by the client threads."""

    versions: list[list[str]] = field(default_factory=lambda: [[] for _ in range(CLIENTS)])
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def seen(self) -> set[str]:
        return {v for answers in self.versions for v in answers}

    def count(self) -> int:
        return sum(len(answers) for answers in self.versions)


def _drive(base: str, load: Load, index: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not load.stop.is_set():
            try:
                response = client.post("/v1/score", json=EXAMPLE_REQUEST)
            except httpx.HTTPError as error:
                load.failures.append(f"{type(error).__name__}: {error}")
                continue
            if response.status_code != 200:
                load.failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
            load.versions[index].append(response.json()["model_version"])


@pytest.fixture
def server(
    model: ReconversionModel, registry: MlflowClient, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """``srl serve`` on a free port, polling the champion alias every 0.2 s."""
    register(model, EXAMPLE_REQUEST, alias="champion")
    port = free_port()
    log = tmp_path / "serve.log"
    command = [
        SRL,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        f"models:/{MODEL_NAME}@champion",
        "--reload-interval",
        "0.2",
    ]
    base = f"http://127.0.0.1:{port}"
    with running(command, f"{base}/readyz", log, {}, timeout=120):
        yield base, log


def _failed_reloads(base: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith('srl_model_reloads_total{outcome="failed"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
def test_no_request_fails_while_the_alias_moves_twice(
    server: tuple[str, Path], model: ReconversionModel
) -> None:
    base, log = server
    load = Load()
    threads = [
        threading.Thread(target=_drive, args=(base, load, i), daemon=True) for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: load.count() >= 50)
        register(model, EXAMPLE_REQUEST, alias="champion")  # version 2: good
        eventually(lambda: "2" in load.seen())
        register(broken_copy(model), EXAMPLE_REQUEST, alias="champion")  # version 3: broken
        eventually(lambda: _failed_reloads(base) >= 1)
        after_broken = load.count()
        eventually(lambda: load.count() >= after_broken + 100)
        refused = httpx.post(f"{base}/v1/admin/reload")  # the broken version again
        assert (refused.status_code, refused.json()["model_version"]) == (409, "2")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert load.failures == []
    assert load.seen() == {"1", "2"}
    for answers in load.versions:
        first_new = answers.index("2") if "2" in answers else len(answers)
        assert set(answers[:first_new]) <= {"1"}
        assert set(answers[first_new:]) <= {"2"}
    assert all(answers[-1] == "2" for answers in load.versions if answers)
    assert "model load failed" in log.read_text(encoding="utf-8")
