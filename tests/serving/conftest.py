"""Fixtures for the serving tests: real LightGBM models trained on the small generated export.

The models are ``ReconversionModel`` bundles written to plain directories (booster text and
JSON), exactly what ``srl serve --model DIR`` and the batch job load.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.isotonic import IsotonicRegression

from features.age_curve import AgeCurve, AgeRate
from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.encoding import CategoryVocabulary
from features.loading import Export
from features.predictor import Calibration, ReconversionModel
from features.pyfunc import log_pyfunc
from serving.app import create_app
from serving.settings import Settings
from tests.serving.batch_support import CHECKPOINTED_OPTIONS, run_score, score_command

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient as StarletteTestClient


class TestClient(StarletteTestClient):
    """Starlette's test client of the real app, reaching it on a loopback address by
    default (without API keys the app answers no other address)."""

    def __init__(self, app: Any, base_url: str = "http://127.0.0.1", **options: Any) -> None:
        super().__init__(app, base_url=base_url, **options)


#: The oldest rejection the serving tests' model was trained and calibrated on (days).
TRAINED_AGE_DAYS = 90.0
#: Its age curve: comebacks fall to about a third at 180 days and a tenth at a year of
#: what the model expects.
AGE_CURVE = AgeCurve(
    TRAINED_AGE_DAYS,
    AgeRate(90, 399, 39, 40.0),
    (AgeRate(180, 299, 10, 28.0), AgeRate(365, 199, 2, 19.0)),
    (0.35, 0.1),
).to_dict()


def train_model(
    examples: ExampleSet, rounds: int = 40, seed: int = 7, config: FeatureConfig | None = None
) -> ReconversionModel:
    """A small calibrated LightGBM model of ``examples`` (uncensored, with labels), built
    with ``config`` (the default feature configuration when None)."""
    assert examples.labels is not None
    config = config or FeatureConfig()
    vocabulary = CategoryVocabulary.fit(
        examples.features, config.min_category_count, config.max_categories
    )
    matrix = vocabulary.encode(examples.features)
    categorical = [i for i, s in enumerate(examples.features.specs) if s.kind != "numeric"]
    params = {
        "objective": "binary",
        "verbose": -1,
        "num_leaves": 15,
        "learning_rate": 0.1,
        "num_threads": 1,
        "seed": seed,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "deterministic": True,
    }
    data = lgb.Dataset(
        matrix,
        examples.labels.target,
        feature_name=examples.features.names,
        categorical_feature=categorical,
        free_raw_data=False,
    )
    booster = lgb.train(params, data, num_boost_round=rounds)
    raw = np.asarray(booster.predict(matrix), dtype=np.float64)
    isotonic = IsotonicRegression(out_of_bounds="clip").fit(raw, examples.labels.target)
    calibration = Calibration(
        "isotonic",
        tuple(map(float, isotonic.X_thresholds_)),
        tuple(map(float, isotonic.y_thresholds_)),
    )
    metadata = {
        "trained_at": "2025-01-01T00:00:00+00:00",
        "metrics": {"auc": 0.8},
        "seed": seed,
        # as on a 4-year export: re-scores up to 180 days in training, 90 in calibration
        "rejection_age_days": {"trained": 180.0, "calibrated": TRAINED_AGE_DAYS},
        "age_curve": AGE_CURVE,
    }
    return ReconversionModel(
        config, vocabulary, booster, calibration, examples.features.names, metadata, 1
    )


@pytest.fixture(scope="session")
def training_examples(small_export: Export) -> ExampleSet:
    """The small export's uncensored training examples."""
    return uncensored(build_training_set(small_export, FeatureConfig()))


@pytest.fixture(scope="session")
def model(training_examples: ExampleSet) -> ReconversionModel:
    """A trained model (single-threaded)."""
    return train_model(training_examples)


@pytest.fixture(scope="session")
def model_dir(model: ReconversionModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model saved as a directory."""
    return model.save(tmp_path_factory.mktemp("models") / "v1")


API_KEY = "serving-tests-key-0123456789"


def api_settings(model_uri: str | Path, **overrides: object) -> Settings:
    """Settings for an app under test (fast retries, no public bind)."""
    values: dict[str, object] = {
        "model_uri": str(model_uri),
        "retry_interval_seconds": 0.2,
        "startup_wait_seconds": 60,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """``srl serve`` writes its options into the environment for its workers: undo that."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def client(model_dir: Path) -> Iterator[TestClient]:
    """A test client of the real app serving the trained model (no API keys)."""
    with TestClient(create_app(api_settings(model_dir))) as test_client:
        yield test_client


@pytest.fixture
def secured_client(model_dir: Path) -> Iterator[TestClient]:
    """A test client of the app with an API key configured."""
    with TestClient(create_app(api_settings(model_dir, api_keys=API_KEY))) as test_client:
        yield test_client


MODEL_NAME = "srl-reconversion"


@pytest.fixture
def registry(tracking_uri: str, tmp_path: Path) -> MlflowClient:
    """An empty sqlite MLflow registry whose artifacts live under tmp_path."""
    experiment = mlflow.create_experiment("serving-tests", str(tmp_path / "artifacts"))
    mlflow.set_experiment(experiment_id=experiment)
    return MlflowClient()


def register(model: ReconversionModel, body: dict[str, Any], alias: str | None = None) -> str:
    """Log ``model`` as a pyfunc, register it under ``MODEL_NAME``; return its version."""
    with mlflow.start_run():
        info = log_pyfunc(model, body, registered_model_name=MODEL_NAME)
    version = str(info.registered_model_version)
    if alias is not None:
        MlflowClient().set_registered_model_alias(MODEL_NAME, alias, version)
    return version


def broken_copy(model: ReconversionModel) -> ReconversionModel:
    """A model that loads but cannot score: its feature list does not match the engine's."""
    return replace(model, feature_names=model.feature_names[:-1])


def _unpin_mlflow_stores() -> None:
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None


@pytest.fixture(autouse=True)
def mlflow_follows_the_environment() -> Iterator[None]:
    """Let MLflow read ``MLFLOW_TRACKING_URI`` afresh in every test.

    ``features.model_store`` points MLflow's process-wide store URIs at the project's
    stores while it downloads; ``mlflow.set_registry_uri`` also exports
    ``MLFLOW_REGISTRY_URI``. Both would pin later tests (each with its own sqlite store)
    to an earlier test's store.
    """
    registry = os.environ.get("MLFLOW_REGISTRY_URI")
    _unpin_mlflow_stores()
    yield
    _unpin_mlflow_stores()
    if registry is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = registry


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One small local Spark session for the module (two cores, few shuffle partitions)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("srl-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def uninterrupted(
    small_export_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The output of a batch job never interrupted, for the jobs the resume and stop tests
    interrupt to end at, byte for byte."""
    out = tmp_path_factory.mktemp("clean") / "scores.parquet"
    command = score_command(small_export_dir, out, model_dir, *CHECKPOINTED_OPTIONS)
    result = run_score([*command, "--workers", "1"])
    assert result.returncode == 0, result.stderr
    return out
