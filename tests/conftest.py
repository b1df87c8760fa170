"""Shared fixtures: small generated exports, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.loading import Export, load_export

SMALL_LEADS = 4000
SMALL_SEED = 11


@pytest.fixture(scope="session")
def small_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated export of a few thousand leads, as Parquet."""
    from features.synthetic import generate_export

    out = tmp_path_factory.mktemp("export") / "small"
    generate_export(out, SMALL_LEADS, SMALL_SEED, "parquet")
    return out


@pytest.fixture(scope="session")
def small_export(small_export_dir: Path) -> Export:
    """The small generated export, loaded and validated."""
    return load_export(small_export_dir)


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An MLflow sqlite tracking store (and artifact root) under the test's tmp_path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SRL_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return uri
