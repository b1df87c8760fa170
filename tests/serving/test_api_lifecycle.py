"""Model lifecycle: loading by alias, reloads that swap or keep the version, not-ready starts."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from features.model_store import (
    LOCAL_VERSION,
    LoadedModel,
    ModelLoadError,
    UnreadableModelError,
    load_model,
)
from features.predictor import ReconversionModel
from serving.examples import EXAMPLE_REQUEST
from serving.model_source import current_version, directory_fingerprint, load_serving_model
from serving.policy import load_policy
from serving.routers.admin import RELOAD_RETRY_AFTER_SECONDS
from tests.servers import eventually, free_port
from tests.serving.conftest import (
    MODEL_NAME,
    TestClient,
    api_settings,
    broken_copy,
    create_app,
    register,
)

CHAMPION = f"models:/{MODEL_NAME}@champion"


@pytest.mark.slow
def test_the_registry_alias_loads_and_reloads_swap_versions(
    model: ReconversionModel, registry: MlflowClient
) -> None:
    register(model, EXAMPLE_REQUEST, alias="champion")
    with TestClient(create_app(api_settings(CHAMPION))) as client:
        card = client.get("/v1/model").json()
        assert (card["name"], card["version"], card["alias"]) == (MODEL_NAME, "1", "champion")
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["model_version"] == "1"

        register(model, EXAMPLE_REQUEST, alias="champion")
        answer = client.post("/v1/admin/reload")
        swapped = answer.json()
        assert (answer.status_code, swapped["reloaded"]) == (200, True)
        assert (swapped["model_version"], swapped["previous_version"]) == ("2", "1")
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["model_version"] == "2"

        register(broken_copy(model), EXAMPLE_REQUEST, alias="champion")
        answer = client.post("/v1/admin/reload")
        refused = answer.json()
        assert answer.status_code == 409  # the version's own fault: retrying cannot mend it
        assert (refused["reloaded"], refused["model_version"]) == (False, "2")
        assert "features differ" in refused["message"]
        assert client.get("/readyz").json()["model_version"] == "2"
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["model_version"] == "2"
        metrics = client.get("/metrics").text
        assert 'srl_model_reloads_total{outcome="failed"} 1.0' in metrics
        refused_count = 'srl_http_errors_total{code="reload_refused",route="/v1/admin/reload"} 1.0'
        assert refused_count in metrics
        assert 'srl_model_info{alias="champion",name="srl-reconversion",version="2"} 1.0' in metrics
        assert 'srl_model_info{alias="champion",name="srl-reconversion",version="1"} 0.0' in metrics


@pytest.mark.slow
def test_polling_follows_the_alias(model: ReconversionModel, registry: MlflowClient) -> None:
    register(model, EXAMPLE_REQUEST, alias="champion")
    settings = api_settings(CHAMPION, reload_interval_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        register(model, EXAMPLE_REQUEST, alias="champion")

        eventually(lambda: client.get("/readyz").json()["model_version"] == "2")
        registry.set_registered_model_alias(MODEL_NAME, "champion", "1")
        eventually(lambda: client.get("/readyz").json()["model_version"] == "1")


def test_an_unreachable_registry_leaves_the_service_up_and_not_ready(
    model: ReconversionModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = api_settings(CHAMPION, retry_interval_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        # the unauthenticated probe names the kind of failure, never the registry's address
        assert ready.json()["reason"] == (
            "the model could not be loaded from its source; the log, and the 503 answer of "
            "a scoring route, say why"
        )
        scored = client.post("/v1/score", json=EXAMPLE_REQUEST)
        assert scored.status_code == 503
        assert scored.json()["error"]["code"] == "not_ready"
        message = scored.json()["error"]["message"]
        assert "could not load models:/srl-reconversion@champion" in message
        assert "127.0.0.1" in message
        assert client.get("/healthz").status_code == 200
        probed = client.head("/readyz")  # load balancers that probe with HEAD
        assert (probed.status_code, probed.content) == (503, b"")
        assert "srl_model_ready 0.0" in client.get("/metrics").text

        # The registry comes back: the service retries on its own and becomes ready.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("late", str(tmp_path / "artifacts"))
        )
        register(model, EXAMPLE_REQUEST, alias="champion")
        eventually(lambda: client.get("/readyz").status_code == 200, seconds=60)
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["model_version"] == "1"


def _retrained(model: ReconversionModel) -> ReconversionModel:
    """``model`` as a later training run would save it (another ``trained_at``)."""
    return ReconversionModel(
        model.config,
        model.vocabulary,
        model.booster,
        model.calibration,
        model.feature_names,
        {**model.metadata, "trained_at": "2025-02-01T00:00:00+00:00"},
    )


def _two_models_behind_a_link(model: ReconversionModel, folder: Path) -> tuple[Path, Path]:
    """A link to ``model`` saved in ``folder``, and a retrained model saved beside it."""
    first = model.save(folder / "first")
    second = _retrained(model).save(folder / "second")
    live = folder / "live"
    live.symlink_to(first)
    return live, second


def test_a_local_directory_swaps_when_its_files_change(
    model: ReconversionModel, tmp_path: Path
) -> None:
    live, second = _two_models_behind_a_link(model, tmp_path)
    with TestClient(create_app(api_settings(live))) as client:
        before = client.get("/v1/model").json()["version"]

        live.unlink()
        live.symlink_to(second)
        outcome = client.post("/v1/admin/reload").json()

        assert outcome["reloaded"] is True
        assert outcome["model_version"] != before
        assert client.get("/v1/model").json()["trained_at"] == "2025-02-01T00:00:00+00:00"


def test_a_directory_that_changes_while_loading_is_not_served_under_the_new_fingerprint(
    model: ReconversionModel, tmp_path: Path
) -> None:
    # Given a model folder that a copy of the next model overwrites just after it is read
    directory = model.save(tmp_path / "model")

    def read_then_overwritten(uri: str, num_threads: int) -> LoadedModel:
        loaded = load_model(uri, num_threads)
        _retrained(model).save(directory)
        return loaded

    # When it is loaded, the load is refused: its files are no longer those it read
    with pytest.raises(ModelLoadError, match="the files changed while the model was loading"):
        load_serving_model(str(directory), 1, load=read_then_overwritten)

    # Then the next load, of settled files, serves the new model under their fingerprint
    settled, identity = load_serving_model(str(directory), 1)
    assert settled.metadata["trained_at"] == "2025-02-01T00:00:00+00:00"
    assert identity.version == current_version(str(directory))


def test_a_model_from_a_run_is_named_by_its_run(model: ReconversionModel) -> None:
    # Given a model read from a run of the store (``runs:/<id>/model``: no registry version)
    def from_run(uri: str, threads: int) -> LoadedModel:
        return LoadedModel(model, uri, None, LOCAL_VERSION, None, "0123abcd")

    # When it is loaded
    _, identity = load_serving_model("runs:/0123abcd/model", 1, load=from_run)

    # Then its version names the run, not the fingerprint of a folder that is not there
    assert identity.version == "run-0123abcd"


def test_a_model_from_an_artifact_uri_outside_any_run_is_named_by_its_files(
    model: ReconversionModel, tmp_path: Path
) -> None:
    # Given a model read from an artifact URI that names no run
    def from_artifacts(uri: str, threads: int) -> LoadedModel:
        return LoadedModel(model, uri, None, LOCAL_VERSION, None, None)

    # When it is loaded
    _, identity = load_serving_model("s3://bucket/models/m-1", 1, load=from_artifacts)

    # Then its version is the fingerprint of its files, as a folder holding them would be
    assert identity.version == f"local-{directory_fingerprint(model.save(tmp_path / 'm'))}"


def test_a_model_that_fails_to_load_keeps_the_old_one(
    model: ReconversionModel, tmp_path: Path
) -> None:
    directory = model.save(tmp_path / "model")
    with TestClient(create_app(api_settings(directory))) as client:
        version = client.get("/readyz").json()["model_version"]
        (directory / "booster.txt").write_text("not a booster", encoding="utf-8")

        answer = client.post("/v1/admin/reload")
        outcome = answer.json()

        assert answer.status_code == 409
        assert outcome["reloaded"] is False
        assert "not the booster that was saved" in outcome["message"]
        assert outcome["message"].endswith(f"still serving {version} with policy default@v5")
        assert outcome["policy"] == "default@v5"
        answer = client.post("/v1/score", json=EXAMPLE_REQUEST)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == version


def test_a_reload_that_may_work_later_answers_503_and_keeps_the_old_model(
    model: ReconversionModel, tmp_path: Path
) -> None:
    # Given a service serving a model folder
    directory = model.save(tmp_path / "model")
    with TestClient(create_app(api_settings(directory))) as client:
        version = client.get("/readyz").json()["model_version"]
        # When the folder is out of reach (a volume unmounted, a copy being moved in)
        directory.rename(tmp_path / "elsewhere")
        answer = client.post("/v1/admin/reload")
        # Then the reload answers 503 with a Retry-After, and the old model keeps serving
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == str(RELOAD_RETRY_AFTER_SECONDS)
        outcome = answer.json()
        assert outcome["reloaded"] is False
        assert "no such model directory" in outcome["message"]
        assert outcome["model_version"] == version
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["model_version"] == version
        later = 'srl_http_errors_total{code="reload_unavailable",route="/v1/admin/reload"} 1.0'
        assert later in client.get("/metrics").text
        # And once the folder is back, the same call succeeds
        (tmp_path / "elsewhere").rename(directory)
        assert client.post("/v1/admin/reload").status_code == 200


def _policy_file(folder: Path, document: dict[str, Any]) -> Path:
    """A policy file holding ``document``."""
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_a_policy_change_is_picked_up_and_a_broken_one_refused(
    model_dir: Path, tmp_path: Path
) -> None:
    document = load_policy().model_dump(mode="json")
    policy = _policy_file(tmp_path, document)
    with TestClient(create_app(api_settings(model_dir, policy=policy))) as client:
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["routing"]["policy"] == (
            "default@v5"
        )
        policy.write_text(yaml.safe_dump({**document, "version": 5}), encoding="utf-8")
        swapped = client.post("/v1/admin/reload").json()
        assert (swapped["reloaded"], swapped["policy"]) == (True, "default@v5")
        assert swapped["message"].endswith("with policy default@v5")
        assert client.get("/readyz").json()["policy"] == "default@v5"

        policy.write_text(yaml.safe_dump({**document, "version": 6, "tiers": []}), "utf-8")
        answer = client.post("/v1/admin/reload")

        assert (answer.status_code, answer.json()["reloaded"]) == (409, False)
        assert client.get("/readyz").json()["policy"] == "default@v5"


def test_an_invalid_policy_at_start_is_not_ready(model_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nname: x\n", encoding="utf-8")
    with TestClient(create_app(api_settings(model_dir, policy=policy))) as client:
        ready = client.get("/readyz")
        scored = client.post("/v1/score", json=EXAMPLE_REQUEST)

    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("the routing policy was refused; ")
    message = scored.json()["error"]["message"]
    assert message.startswith(f"no model is loaded: routing policy {policy} is invalid: tiers: ")


def test_a_policy_reading_a_feature_the_model_lacks_is_not_ready(
    model_dir: Path, tmp_path: Path
) -> None:
    document = load_policy().model_dump(mode="json")
    document["rebound"]["recent_intent_feature"] = "intent_3Od"
    policy = _policy_file(tmp_path, document)
    with TestClient(create_app(api_settings(model_dir, policy=policy))) as client:
        ready = client.get("/readyz")
        scored = client.post("/v1/score", json=EXAMPLE_REQUEST)

    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("the routing policy was refused; ")
    assert scored.json()["error"]["message"] == (
        f"no model is loaded: routing policy {policy} (default@v5): "
        "rebound.recent_intent_feature 'intent_3Od' is not a count of activities over a "
        "window ending at as_of of this model (such as intent_30d, demo_request_90d, "
        "intent_since_rejection or intent_total; routing counts only its part after the "
        "rejection) (see docs/feature-catalogue.md)"
    )


def test_a_policy_changed_under_the_same_version_is_refused_on_reload(
    model_dir: Path, tmp_path: Path
) -> None:
    # Given a service routing with default@v5 read from a file
    document = load_policy().model_dump(mode="json")
    policy = _policy_file(tmp_path, document)
    with TestClient(create_app(api_settings(model_dir, policy=policy))) as client:
        before = client.post("/v1/score", json=EXAMPLE_REQUEST).json()["routing"]
        # When the file's rules change but its version does not
        changed = {**document, "low_touch": {**document["low_touch"], "max_probability": 0.2}}
        policy.write_text(yaml.safe_dump(changed), encoding="utf-8")
        answer = client.post("/v1/admin/reload")
        assert answer.status_code == 409
        refused = answer.json()
        # Then the reload is refused, saying why, and the old rules keep routing
        assert (refused["reloaded"], refused["policy"]) == (False, "default@v5")
        assert refused["message"].startswith(
            f"routing policy {policy} changed but is still default@v5"
        )
        assert client.post("/v1/score", json=EXAMPLE_REQUEST).json()["routing"] == before
        # And the same rules (lists whose order means nothing reordered), or an earlier
        # version, reload as before
        suppression = {key: values[::-1] for key, values in document["suppression"].items()}
        reordered = {**document, "suppression": suppression}
        policy.write_text(yaml.safe_dump(reordered), encoding="utf-8")
        assert client.post("/v1/admin/reload").json()["reloaded"] is True
        policy.write_text(yaml.safe_dump({**changed, "version": 1}), encoding="utf-8")
        assert client.post("/v1/admin/reload").json()["policy"] == "default@v1"


def test_sources_report_where_they_point(model_dir: Path, tmp_path: Path) -> None:
    _, identity = load_serving_model(str(model_dir), 1)

    assert identity.version == current_version(str(model_dir))
    assert identity.version.startswith("local-")
    assert current_version("models:/srl-reconversion/3") is None
    with pytest.raises(ModelLoadError):
        load_serving_model(str(tmp_path / "absent"), 1)


def test_a_loaded_model_and_the_libraries_are_out_of_the_collectors_way(
    model_dir: Path,
) -> None:
    gc.unfreeze()

    with TestClient(create_app(api_settings(model_dir))) as client:
        assert client.get("/readyz").status_code == 200
        # The model, policy and libraries now sit in the permanent generation: a full
        # collection during a request no longer walks them.
        assert gc.get_freeze_count() > 10_000
    gc.unfreeze()


def test_polling_catches_up_with_a_version_whose_first_load_failed_for_another_reason(
    model: ReconversionModel, tmp_path: Path
) -> None:
    # Given a service polling a model folder, with a policy file
    live, second = _two_models_behind_a_link(model, tmp_path)
    document = load_policy().model_dump(mode="json")
    policy = _policy_file(tmp_path, document)
    settings = api_settings(live, policy=policy, reload_interval_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        before = client.get("/v1/model").json()["version"]
        # When the folder moves to a new model while the policy is briefly broken
        policy.write_text("version: [\n", encoding="utf-8")
        live.unlink()
        live.symlink_to(second)
        eventually(lambda: _reload_failures(client) >= 1, seconds=30)
        assert client.get("/v1/model").json()["version"] == before
        # Then, once the policy is mended, the next poll loads the new model (a failure that
        # is not the version's own does not bar it)
        policy.write_text(yaml.safe_dump({**document, "version": 3}), encoding="utf-8")
        eventually(lambda: client.get("/v1/model").json()["version"] != before, seconds=30)
        assert client.get("/v1/model").json()["trained_at"] == "2025-02-01T00:00:00+00:00"


def _reload_failures(client: TestClient) -> float:
    """``srl_model_reloads_total{outcome="failed"}`` as the service reports it."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('srl_model_reloads_total{outcome="failed"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("digest", [True, False], ids=["saved digest", "older model"])
def test_a_booster_cut_short_is_refused_before_lightgbm_reads_it(
    model: ReconversionModel, tmp_path: Path, digest: bool
) -> None:
    # Given a model folder whose booster was cut short (a copy that died half-way), which
    # LightGBM's reader answers by aborting the whole process
    directory = model.save(tmp_path / "model")
    if not digest:  # saved before digests were recorded
        document = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        del document["booster_sha256"]
        (directory / "model.json").write_text(json.dumps(document), encoding="utf-8")
    booster = directory / "booster.txt"
    booster.write_bytes(booster.read_bytes()[: len(booster.read_bytes()) // 2])

    # Then loading it is refused with the file's fault, in one line
    with pytest.raises(UnreadableModelError) as refused:
        load_model(str(directory), 1)
    reason = "its SHA-256 differs" if digest else "cut short"
    assert str(refused.value).startswith(f"{directory}: not a readable re-conversion model: ")
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


def test_registry_credentials_never_reach_an_answer_or_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a tracking URI with a password in it, and no server behind it
    secret = "Sup3rS3cretPw"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://operator:{secret}@127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with caplog.at_level(logging.DEBUG), TestClient(create_app(api_settings(CHAMPION))) as client:
        # When the service cannot reach the registry
        ready = client.get("/readyz")
        scored = client.post("/v1/score", json=EXAMPLE_REQUEST)

    # Then the reason says so, with the password masked everywhere
    assert ready.status_code == 503
    assert "127.0.0.1" not in ready.text  # the open probe names no address at all
    assert "http://***@127.0.0.1" in scored.text
    for text in (ready.text, scored.text, caplog.text):
        assert secret not in text


def test_a_model_without_recorded_ages_serves_and_warns_that_the_age_rule_is_idle(
    model: ReconversionModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a model saved before ages were recorded, served with the default policy,
    # whose low-touch rule routes by them
    metadata = {
        k: v for k, v in model.metadata.items() if k not in ("rejection_age_days", "age_curve")
    }
    older = dataclasses.replace(model, metadata=metadata).save(tmp_path / "older")

    with caplog.at_level(logging.WARNING), TestClient(create_app(api_settings(older))) as client:
        scored = client.post("/v1/score", json=EXAMPLE_REQUEST)

    # Then it scores, marks nothing, and the log says the rule is idle and why
    assert scored.status_code == 200
    assert scored.json()["beyond_trained_age"] is False
    idle = [r for r in caplog.records if r.getMessage() == "policy rule idle"]
    assert len(idle) == 1
    assert "low_touch.beyond_trained_age" in str(idle[0].__dict__["why"])


def test_a_policy_file_out_of_reach_answers_503_and_one_that_breaks_a_rule_409(
    model_dir: Path, tmp_path: Path
) -> None:
    # Given a service routing with a policy read from a file
    document = load_policy().model_dump(mode="json")
    policy = _policy_file(tmp_path, document)
    with TestClient(create_app(api_settings(model_dir, policy=policy))) as client:
        # When the file is gone for a moment (a volume remounted), the reload may work later
        policy.rename(tmp_path / "moved.yaml")
        gone = client.post("/v1/admin/reload")
        # and when it is back but breaks a rule, it will not until the file changes
        (tmp_path / "moved.yaml").rename(policy)
        policy.write_text(yaml.safe_dump({**document, "version": 4, "tiers": []}), "utf-8")
        broken = client.post("/v1/admin/reload")

    assert (gone.status_code, gone.headers["retry-after"]) == (503, "5")
    assert "could not be read" in gone.json()["message"]
    assert broken.status_code == 409
    assert "is invalid" in broken.json()["message"]
