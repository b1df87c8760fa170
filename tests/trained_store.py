"""A real MLflow store with two registered versions, trained by ``training.train`` once per session.

Version 1 is trained first and becomes champion through the gate; version 2 (another seed) is
then promoted by hand, so the champion has a predecessor to compare with and version 1 has a
champion to be compared against. The report tests and the notebook tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from training.config import load_training_config
from training.registry import promote
from training.train import train

NAME = "srl-reconversion"
FAST = {"lightgbm.num_threads": 1, "lightgbm.max_rounds": 300, "shap_sample": 200}


@dataclass(frozen=True)
class TrainedStore:
    """Where the store is and which versions it holds.

    Attributes:
        tracking_uri: the sqlite store (tracking and registry).
        artifact_root: where the runs' artifacts are.
        name: the registered model.
        champion: the version holding the champion alias.
        previous: the champion it replaced.
    """

    tracking_uri: str
    artifact_root: str
    name: str
    champion: str
    previous: str

    def environment(self) -> dict[str, str]:
        """Environment variables that point a process at this store."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "SRL_ARTIFACT_ROOT": self.artifact_root}


_STORES: dict[Path, TrainedStore] = {}


def trained_store(export_dir: Path, factory: pytest.TempPathFactory) -> TrainedStore:
    """The store for ``export_dir``, trained on first use in this session."""
    if export_dir not in _STORES:
        _STORES[export_dir] = _train_two_versions(export_dir, factory.mktemp("registry"))
    return _STORES[export_dir]


def _train_two_versions(export_dir: Path, root: Path) -> TrainedStore:
    store = TrainedStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"), NAME, "2", "1")
    config = load_training_config().with_overrides(**FAST)
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in store.environment().items():
            patch.setenv(variable, value)
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        try:
            first = train(export_dir, config)
            second = train(export_dir, config.with_overrides(seed=7))
            promote(NAME, str(second.version), reason="a champion with a predecessor")
        finally:
            mlflow.set_tracking_uri(None)
    assert (first.version, second.version) == (store.previous, store.champion)
    return store
