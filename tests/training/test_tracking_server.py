"""Training against a real ``mlflow server`` on 127.0.0.1 (sqlite backend in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.model_store import load_model
from tests.servers import MLFLOW, free_port, running
from training.config import TrainingConfig
from training.registry import list_versions
from training.train import train

pytestmark = pytest.mark.slow


def test_training_logs_and_registers_through_a_tracking_server(
    small_export_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    arguments = [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
    ]
    with running(
        [MLFLOW, *arguments], f"http://127.0.0.1:{port}/health", tmp_path / "server.log", {}
    ):
        # credentials in the URI, as a server behind basic auth takes them (this one ignores them)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{port}")
        monkeypatch.delenv("SRL_ARTIFACT_ROOT", raising=False)

        result = train(small_export_dir, TrainingConfig())

        loaded = load_model("models:/srl-reconversion@champion", num_threads=1)
        versions = list_versions("srl-reconversion")
    assert result.version == "1"
    assert (loaded.version, loaded.alias, loaded.run_id) == ("1", "champion", result.run_id)
    assert versions[0]["aliases"] == ["challenger", "champion"]
    stored = {p.name for p in (tmp_path / "server-artifacts").rglob("*") if p.is_file()}
    assert {"booster.txt", "model.json", "metrics.json", "shap_summary.png"} <= stored
    assert not (tmp_path / ".srl").exists()
    printed = capsys.readouterr()
    assert "s3cret" not in printed.out + printed.err  # MLflow's run links would show it
