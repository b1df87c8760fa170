"""Loading models by registry alias, version, run and folder; the pyfunc built from code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.encoding import CategoryVocabulary
from features.loading import Export
from features.model_store import LoadedModel, ModelLoadError, load_model
from features.predictor import METADATA_FILE, Calibration, ReconversionModel
from features.pyfunc import log_pyfunc
from features.requests import request_body, score_request
from features.tracking_store import default_tracking_uri
from tests.servers import free_port

NAME = "srl-reconversion"


@pytest.fixture(scope="module")
def examples(small_export: Export) -> ExampleSet:
    """Uncensored examples of the small export."""
    return uncensored(build_training_set(small_export, FeatureConfig()))


@pytest.fixture(scope="module")
def model(examples: ExampleSet) -> ReconversionModel:
    """A small LightGBM model trained on the small export (no calibration)."""
    vocabulary = CategoryVocabulary.fit(examples.features, 5, 50)
    matrix = vocabulary.encode(examples.features)
    assert examples.labels is not None
    params = {"objective": "binary", "verbose": -1, "deterministic": True, "num_threads": 1}
    data = lgb.Dataset(matrix, examples.labels.target, feature_name=examples.features.names)
    booster = lgb.train(params, data, num_boost_round=20)
    return ReconversionModel(
        FeatureConfig(), vocabulary, booster, Calibration(), examples.features.names, {}
    )


@pytest.fixture
def registry(tracking_uri: str, tmp_path: Path) -> MlflowClient:
    """An empty sqlite registry with an experiment whose artifacts live under tmp_path."""
    client = MlflowClient(tracking_uri)
    client.create_experiment("store-test", (tmp_path / "artifacts").as_uri())
    return client


def _register(model: ReconversionModel, export: Export, rejection_id: str) -> str:
    experiment = mlflow.get_experiment_by_name("store-test")
    assert experiment is not None
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        log_pyfunc(model, request_body(export, rejection_id), registered_model_name=NAME)
    return run.info.run_id


def test_a_saved_folder_loads_as_a_local_version(
    model: ReconversionModel, examples: ExampleSet, tmp_path: Path
) -> None:
    model.save(tmp_path / "saved")

    loaded = load_model(str(tmp_path / "saved"))

    assert (loaded.version, loaded.name, loaded.alias, loaded.run_id) == ("local", None, None, None)
    np.testing.assert_array_equal(loaded.model.predict_set(examples), model.predict_set(examples))


def test_a_model_saved_before_won_close_days_loads_with_its_default(
    model: ReconversionModel, tmp_path: Path
) -> None:
    # Given a saved model whose stored feature settings lack won_close_days (an older bundle)
    folder = model.save(tmp_path / "older")
    document = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    del document["config"]["won_close_days"]
    (folder / METADATA_FILE).write_text(json.dumps(document), encoding="utf-8")
    # When it is loaded
    loaded = ReconversionModel.load(folder)
    # Then it takes the default, and saving it again records the setting
    assert loaded.config.won_close_days == 180
    assert loaded.config == model.config
    again = json.loads((loaded.save(tmp_path / "again") / METADATA_FILE).read_text("utf-8"))
    assert again["config"]["won_close_days"] == 180


def test_an_alias_resolves_once_to_the_version_it_names(
    model: ReconversionModel, small_export: Export, registry: MlflowClient
) -> None:
    rejection = str(small_export.rejections["rejection_id"].iloc[0])
    first_run = _register(model, small_export, rejection)
    _register(model, small_export, rejection)
    registry.set_registered_model_alias(NAME, "champion", "1")

    loaded = load_model(f"models:/{NAME}@champion", num_threads=1)

    assert isinstance(loaded, LoadedModel)
    assert (loaded.name, loaded.version, loaded.alias) == (NAME, "1", "champion")
    assert loaded.run_id == first_run
    assert loaded.model.num_threads == 1
    registry.set_registered_model_alias(NAME, "champion", "2")
    assert load_model(f"models:/{NAME}@champion").version == "2"
    assert load_model(f"models:/{NAME}/1").version == "1"
    by_run = load_model(f"runs:/{first_run}/model")
    assert (by_run.version, by_run.run_id) == ("local", first_run)


def test_the_pyfunc_scores_request_bodies_like_the_model(
    model: ReconversionModel, small_export: Export, examples: ExampleSet, registry: MlflowClient
) -> None:
    later = examples.keys.index[examples.keys["offset_days"] == 90][:3]
    bodies = [
        request_body(
            small_export, examples.keys.at[i, "rejection_id"], examples.keys.at[i, "as_of"]
        )
        for i in later
    ]
    _register(model, small_export, bodies[0]["rejection"]["rejection_id"])

    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    predicted = pyfunc.predict(bodies)

    from_export = model.predict_set(examples.take(np.asarray(later)))
    np.testing.assert_allclose(predicted, from_export, rtol=0, atol=1e-12)
    assert pyfunc.metadata.get_input_schema() is not None
    assert pyfunc.metadata.get_output_schema() is not None


def test_the_logged_model_holds_no_pickle(
    model: ReconversionModel, small_export: Export, registry: MlflowClient, tmp_path: Path
) -> None:
    _register(model, small_export, str(small_export.rejections["rejection_id"].iloc[0]))

    files = [p.name for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]

    assert {"booster.txt", "model.json", "MLmodel", "pyfunc_code.py"} <= set(files)
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle", ".joblib"))]


def test_a_missing_alias_version_or_store_is_a_clear_error(
    model: ReconversionModel,
    small_export: Export,
    registry: MlflowClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _register(model, small_export, str(small_export.rejections["rejection_id"].iloc[0]))

    with pytest.raises(ModelLoadError, match="alias champion not found"):
        load_model(f"models:/{NAME}@champion")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(f"models:/{NAME}/9")
    with pytest.raises(ModelLoadError, match="no such model directory"):
        load_model(str(tmp_path / "nowhere"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(ModelLoadError, match="no model registry"):
        load_model(f"models:/{NAME}@champion")
    assert not (tmp_path / "absent.db").exists()


def test_an_unreachable_registry_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")

    with pytest.raises(ModelLoadError, match=f"127.0.0.1:{port}"):
        load_model(f"models:/{NAME}@champion")


def test_a_request_scores_like_its_export_row(
    model: ReconversionModel, small_export: Export, examples: ExampleSet
) -> None:
    row = int(np.flatnonzero(examples.keys["offset_days"].to_numpy() == 30)[0])
    keys = examples.keys.iloc[row]

    request = score_request(small_export, keys["rejection_id"], keys["as_of"])

    assert model.predict_requests([request])[0] == pytest.approx(
        model.predict_set(examples.take(np.asarray([row])))[0], abs=1e-12
    )


def test_the_default_store_is_used_without_touching_process_wide_settings(
    model: ReconversionModel,
    small_export: Export,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRL_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    store = default_tracking_uri()
    (tmp_path / ".srl").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = MlflowClient(store)
    client.create_experiment("store-test", (tmp_path / ".srl" / "mlartifacts").as_uri())
    run_id = _register(model, small_export, str(small_export.rejections["rejection_id"].iloc[0]))
    client.set_registered_model_alias(NAME, "champion", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")

    by_alias = load_model(f"models:/{NAME}@champion")
    by_run = load_model(f"runs:/{run_id}/model")

    assert (by_alias.version, by_alias.run_id, by_run.run_id) == ("1", run_id, run_id)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert not (tmp_path / "mlflow.db").exists()
