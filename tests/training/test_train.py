"""Training end to end on a generated export: quality, calibration, reproducibility, MLflow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from features.age_curve import age_rates, fitted_factors, partly_seen_timing
from features.contract import CONSENT_STATUSES
from features.dataset import build_training_set, uncensored
from features.history import history_from_export
from features.loading import load_export
from features.model_store import load_model
from features.predictor import ReconversionModel
from features.records import ScoreRequest
from features.requests import request_body
from features.synthetic import generate_export
from features.timestamps import microseconds
from tests.servers import MLFLOW, free_port, running
from training import age_report, registry
from training.config import TrainingConfig
from training.evaluate import PREDICTION_COLUMNS, evaluate
from training.metrics import score_metrics
from training.split import split_by_time
from training.train import TrainingResult, fit_age_curve, train

pytestmark = pytest.mark.slow

NAME = "srl-reconversion"
PLOTS = {
    "calibration_curve.png",
    "cumulative_gains_lift.png",
    "feature_importance.png",
    "shap_summary.png",
    "reconversion_by_decile.png",
}


@dataclass(frozen=True)
class Trained:
    """Two runs with the same data, config and seed, in one sqlite store."""

    first: TrainingResult
    second: TrainingResult
    store: str


@pytest.fixture(scope="module")
def trained(older_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Train twice on the older export into a fresh store (champion 1, challenger 2)."""
    root = tmp_path_factory.mktemp("store")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        patch.setenv("SRL_ARTIFACT_ROOT", str(root / "artifacts"))
        config = TrainingConfig()
        first = train(older_export_dir, config)
        second = train(older_export_dir, config)
        yield Trained(first, second, store)


@pytest.fixture
def store(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """The trained store as the active one for this test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.store)
    return MlflowClient(trained.store)


def test_lightgbm_beats_both_baselines_on_the_test_window(trained: Trained) -> None:
    model = trained.first.evaluation.report["overall"]

    for name, report in trained.first.evaluation.baselines.items():
        assert model["roc_auc"] > report["overall"]["roc_auc"], name
        assert model["pr_auc"] > report["overall"]["pr_auc"], name
        assert trained.first.evaluation.gains[name]["roc_auc"] > 0
    assert {"points_score", "points_qualified", "logistic"} == set(
        trained.first.evaluation.baselines
    )


def test_the_test_window_is_calibrated(trained: Trained) -> None:
    assert trained.first.evaluation.report["overall"]["ece"] < 0.02


def test_a_second_run_reproduces_the_model_and_metrics_exactly(trained: Trained) -> None:
    first, second = trained.first, trained.second

    assert first.evaluation.document() == second.evaluation.document()
    assert first.model.booster.model_to_string() == second.model.booster.model_to_string()
    assert first.model.calibration == second.model.calibration
    assert first.run_id != second.run_id


def test_the_model_records_the_oldest_rejections_it_was_trained_and_calibrated_on(
    trained: Trained, older_export_dir: Path, store: MlflowClient
) -> None:
    # Given the windows the run split its examples into
    config = TrainingConfig()
    examples = build_training_set(load_export(older_export_dir), config.features)
    split = split_by_time(uncensored(examples), config.split, config.features.label_days)

    # When the registered model is loaded back
    loaded = load_model(trained.first.model_uri).model

    # Then it records the oldest re-score of each fitted window, knows the younger of the
    # two, and marks exactly the examples past it as extrapolations
    oldest = {"trained": split.train, "calibrated": split.validation}
    expected = {name: float(part.keys["offset_days"].max()) for name, part in oldest.items()}
    assert loaded.metadata["rejection_age_days"] == expected
    assert loaded.trained_age_days == min(expected.values())
    flagged = loaded.beyond_trained_age(examples.features)
    np.testing.assert_array_equal(flagged, examples.keys["offset_days"] > min(expected.values()))
    # And with the age curve turned off, a run would record none
    off = config.with_overrides(**{"calibration.age_curve": False})
    assert fit_age_curve(load_export(older_export_dir), split, off, loaded) is None


def test_the_model_carries_comeback_rates_by_age_from_before_its_test_window(
    trained: Trained, older_export_dir: Path, store: MlflowClient
) -> None:
    # Given the registered model and the history known when its test window starts
    loaded = load_model(trained.first.model_uri).model
    config = TrainingConfig()
    export = load_export(older_export_dir)
    cut = microseconds(pd.Timestamp(loaded.metadata["test_window"]["start"]))
    reference = loaded.trained_age_days
    assert reference is not None

    # Then its curve holds what rejections of the trained age and of each older configured
    # age with enough examples did, and what the model (without the curve) expected of
    # them, as counted from that history; its factors follow, and lower scores past it
    curve = loaded.age_curve
    assert curve is not None
    history = history_from_export(export, config.features)
    ages = [int(reference), *config.calibration.age_curve_days]
    predict = age_report.without_curve(loaded).predict_examples
    window = config.calibration.age_curve_min_window_days
    partly = partly_seen_timing(history, config.features, cut, ages, window)
    counted = age_rates(history, config.features, cut, ages, predict=predict, partly=partly)
    rates = {r.age_days: r for r in counted}
    assert curve.reference.examples == rates[int(reference)].examples
    assert curve.reference.expected == pytest.approx(rates[int(reference)].expected, rel=1e-9)
    enough = config.calibration.age_curve_min_examples
    kept = [r for age, r in rates.items() if age > reference and r.exposure >= enough]
    assert [(r.age_days, r.examples, r.comebacks, r.partly_seen) for r in curve.rates] == [
        (r.age_days, r.examples, r.comebacks, r.partly_seen) for r in kept
    ]
    # And horizons partly seen before the test window count, their timing checked a horizon
    # earlier: without them, fewer ages would
    assert curve.partly_seen == partly.to_dict()
    assert partly.timing is not None
    whole_only = age_rates(history, config.features, cut, ages, predict=predict)
    ages_counted = sum(r.exposure >= enough for r in counted)
    assert sum(r.exposure >= enough for r in whole_only) < ages_counted
    assert all(r.partly_seen > 0 for r in curve.rates)
    assert curve.factors == pytest.approx(fitted_factors(rates[int(reference)], kept), rel=1e-9)
    assert len(curve.rates) >= 2
    assert curve.factors[0] < 1.0
    assert curve.factor(np.array([reference]))[0] == 1.0


def test_a_won_model_trains_on_six_years_of_history_and_counts_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given six years of generated history: a won label looks 545 days past its as_of and
    # the embargo as far, so srl generate's default four years leave no training window
    export = tmp_path / "export"
    generate_export(export, 1500, seed=3, years=6)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SRL_ARTIFACT_ROOT", str(tmp_path / "artifacts"))

    # When a won model is trained on it
    result = train(
        export, TrainingConfig().with_overrides(**{"features.target": "won"}), register=False
    )

    # Then it is a won model, judged on a test window (a handful of wins: too few to judge
    # its quality here), and its summary speaks of wins
    assert result.model.config.target == "won"
    assert result.model.metadata["target"] == "won"
    assert result.evaluation.report["overall"]["examples"] > 100
    assert "of the wins" in result.evaluation.summary


def test_metrics_are_also_given_for_the_leads_a_contact_program_may_reach(
    trained: Trained, older_export_dir: Path
) -> None:
    # Given the run's test window, some of whose leads had opted out or were rejected as
    # do-not-contact or bad data by their as_of
    report = trained.first.evaluation.report
    config = TrainingConfig()
    examples = uncensored(build_training_set(load_export(older_export_dir), config.features))
    test = split_by_time(examples, config.split, config.features.label_days).test
    consent = test.features.columns["consent_status"]
    blocked = test.keys["reason_code"].isin(["do_not_contact", "bad_data"]).to_numpy() | np.isin(
        consent, [CONSENT_STATUSES.index("unsubscribed"), CONSENT_STATUSES.index("do_not_contact")]
    )
    # Then the report's contactable metrics count the others only
    assert blocked.any()
    assert report["contactable"]["examples"] == int((~blocked).sum()) < len(test)
    assert report["overall"]["examples"] == len(test)
    assert np.isfinite(report["contactable"]["pr_auc"])


def test_metrics_cover_reasons_offsets_and_a_plain_summary(trained: Trained) -> None:
    report = trained.first.evaluation.report

    assert {"budget", "timing", "competitor_won"} <= set(report["by_reason"])
    assert "0" in report["by_offset"]
    assert "30" in report["by_offset"]
    for name in (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "ece",
        "lift_top_10",
        "capture_top_10",
        "lift_top_20",
        "capture_top_20",
    ):
        assert np.isfinite(report["overall"][name]), name
    assert trained.first.evaluation.summary.startswith(
        "Scoring the top 20% of rejected leads finds"
    )


def test_the_run_records_config_data_code_environment_and_plots(
    trained: Trained, store: MlflowClient, older_export_dir: Path
) -> None:
    run = store.get_run(trained.first.run_id)
    files = _artifact_files(store, run.info.run_id)

    assert {
        "resolved_config.yaml",
        "data_fingerprint.json",
        "features.json",
        "metrics.json",
        "code_version.json",
        "environment.json",
        "split.json",
        "summary.txt",
    } <= files
    assert {f"plots/{name}" for name in PLOTS} <= files
    config = yaml.safe_load(_text(store, run.info.run_id, "resolved_config.yaml"))
    assert TrainingConfig.model_validate(config) == TrainingConfig()
    fingerprint = json.loads(_text(store, run.info.run_id, "data_fingerprint.json"))
    assert fingerprint["rows"]["leads"] == len(load_export(older_export_dir).leads)
    assert fingerprint["censored"] > 0
    assert run.data.tags["srl.data_digest"] == fingerprint["digest"]
    assert run.data.params["config.lightgbm.learning_rate"] == "0.02"
    assert run.data.metrics["test.roc_auc"] == trained.first.evaluation.report["overall"]["roc_auc"]
    assert run.data.metrics["gain_over.logistic.pr_auc"] > 0
    assert "test.reason.budget.roc_auc" in run.data.metrics
    assert "test.offset.0.ece" in run.data.metrics
    assert "test.contactable.pr_auc" in run.data.metrics


def test_no_personal_field_reaches_an_artifact(trained: Trained, store: MlflowClient) -> None:
    example = _model_file(trained, "input_example.json")
    features = _text(store, trained.first.run_id, "features.json")

    for personal in ("email", "first_name", "last_name"):
        assert f'"{personal}"' not in example
        assert f'"{personal}"' not in features


def test_the_first_version_is_champion_and_an_equal_one_stays_challenger(
    trained: Trained, store: MlflowClient
) -> None:
    assert trained.first.decision is not None
    assert trained.first.decision.promoted
    assert trained.second.decision is not None
    assert not trained.second.decision.promoted
    assert trained.second.decision.champion_version == "1"
    assert trained.second.decision.challenger_value == trained.second.decision.champion_value
    assert trained.second.decision.compared_examples == trained.second.split["test"]["examples"]
    assert str(store.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert str(store.get_model_version_by_alias(NAME, "challenger").version) == "2"
    tags = store.get_model_version(NAME, "2").tags
    assert tags["gate.promoted"] == "False"
    assert float(tags["test.roc_auc"]) == pytest.approx(
        trained.second.evaluation.report["overall"]["roc_auc"], abs=1e-6
    )


def test_people_promote_and_roll_back_with_tags(trained: Trained, store: MlflowClient) -> None:
    promoted = registry.promote(NAME, "2", reason="reviewed the plots")

    assert promoted["replaced"] == "1"
    assert load_model(f"models:/{NAME}@champion").version == "2"
    tags = store.get_model_version(NAME, "2").tags
    assert tags["promoted_reason"] == "reviewed the plots"
    assert tags[registry.PREVIOUS_CHAMPION_TAG] == "1"

    rolled = registry.rollback(NAME, reason="conversion dropped")

    assert (rolled["champion"], rolled["replaced"]) == ("1", "2")
    assert load_model(f"models:/{NAME}@champion").version == "1"
    assert store.get_model_version(NAME, "2").tags["rolled_back_reason"] == "conversion dropped"
    history = json.loads(store.get_model_version(NAME, "1").tags[registry.HISTORY_TAG])
    assert [event["action"] for event in history][-1] == "restored by rollback"
    with pytest.raises(registry.RegistryError, match="replaced no earlier champion"):
        registry.rollback(NAME)

    # A version written another way is the same version: " 02 " is 2, its history stays true
    again = registry.promote(NAME, " 02 ", reason="again")
    assert (again["champion"], again["replaced"]) == ("2", "1")
    assert registry.promote(NAME, "2")["replaced"] == "2"
    assert store.get_model_version(NAME, "2").tags[registry.PREVIOUS_CHAMPION_TAG] == "1"
    # And a version recorded as the champion it replaced is never rolled back to itself
    store.set_model_version_tag(NAME, "2", registry.PREVIOUS_CHAMPION_TAG, "2")
    with pytest.raises(registry.RegistryError, match="recorded as the champion it replaced"):
        registry.rollback(NAME)
    store.set_model_version_tag(NAME, "2", registry.PREVIOUS_CHAMPION_TAG, "1")
    assert registry.rollback(NAME)["champion"] == "1"
    versions = registry.list_versions(NAME)
    assert [(v["version"], v["aliases"]) for v in versions] == [
        ("2", ["challenger"]),
        ("1", ["champion"]),
    ]
    assert versions[0]["metrics"]["roc_auc"] > 0.5


def test_evaluate_scores_a_newer_export_with_the_older_model(
    trained: Trained, store: MlflowClient, world_export_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "predictions.parquet"

    document = evaluate(world_export_dir, f"models:/{NAME}/1", out)

    table = pd.read_parquet(out)
    assert tuple(table.columns) == PREDICTION_COLUMNS
    assert len(table) == document["examples"] > 0
    assert set(table["label"].unique()) == {0, 1}
    assert table["probability"].between(0, 1).all()
    trained_until = pd.Timestamp(trained.first.model.metadata["test_window"]["end"])
    assert table["as_of"].max() > trained_until
    assert document["model"]["version"] == "1"
    assert document["overall"]["roc_auc"] > 0.7
    assert json.loads(json.dumps(document)) == document
    unseen = table.loc[~table["seen_in_fitting"]]
    assert document["overall"]["examples"] == document["fitting"]["evaluated_examples"]
    assert document["fitting"]["evaluated_examples"] == len(unseen) > 0
    assert document["fitting"]["left_out_examples"] == table["seen_in_fitting"].sum() > 0
    rejected_at = load_export(world_export_dir).rejections.set_index("rejection_id")["rejected_at"]
    age = (table["as_of"] - table["rejection_id"].map(rejected_at)).dt.days
    limit = trained.first.model.trained_age_days
    assert table["beyond_trained_age"].tolist() == (age > limit).tolist()
    assert table["beyond_trained_age"].any()


def test_evaluate_leaves_the_examples_the_model_was_fitted_on_out_of_the_metrics(
    trained: Trained, store: MlflowClient, older_export_dir: Path, tmp_path: Path
) -> None:
    # Given the export the model was trained on, whose older examples it was fitted on
    out = tmp_path / "predictions.csv"
    test_start = pd.Timestamp(trained.first.split["test_start"])
    # When it is evaluated on that export
    document = evaluate(older_export_dir, f"models:/{NAME}/1", out)
    # Then every example is written, flagged by whether it is from the fitting windows
    table = pd.read_csv(out, parse_dates=["as_of"])
    assert tuple(table.columns) == PREDICTION_COLUMNS
    assert len(table) == document["examples"]
    assert (table["seen_in_fitting"] == (table["as_of"] <= test_start)).all()
    seen = table["seen_in_fitting"].to_numpy(dtype=bool)
    assert 0 < seen.sum() < len(table)
    # And the metrics, by reason and by offset, count the other examples only
    unseen = table.loc[~seen]
    expected = score_metrics(unseen["label"].to_numpy(), unseen["probability"].to_numpy())
    assert document["overall"] == pytest.approx(expected, nan_ok=True)
    assert sum(m["examples"] for m in document["by_offset"].values()) == len(unseen)
    assert sum(m["examples"] for m in document["by_reason"].values()) == len(unseen)
    assert len(unseen) >= trained.first.split["test"]["examples"]
    # And the document says how many were left out and why
    fitting = document["fitting"]
    assert fitting["fitted_through"] == trained.first.model.metadata["test_window"]["start"]
    assert (fitting["evaluated_examples"], fitting["left_out_examples"]) == (
        len(unseen),
        int(seen.sum()),
    )
    assert f"{int(seen.sum()):,} examples scored at or before" in fitting["note"]
    assert document["summary"].endswith("none of which the model was fitted on.")
    assert f"Measured on the {len(unseen):,} examples" in document["summary"]


def test_evaluate_with_a_model_that_records_no_windows_counts_every_example_and_says_so(
    trained: Trained, older_export_dir: Path, tmp_path: Path
) -> None:
    # Given a model folder saved without the training metadata
    model = trained.first.model
    bare = ReconversionModel(
        model.config, model.vocabulary, model.booster, model.calibration, model.feature_names
    )
    folder = bare.save(tmp_path / "bare-model")
    # When it is evaluated
    document = evaluate(older_export_dir, str(folder), tmp_path / "predictions.parquet")
    # Then every example counts, the flags are unknown, and the document says so
    table = pd.read_parquet(tmp_path / "predictions.parquet")
    assert table["seen_in_fitting"].isna().all()
    assert document["overall"]["examples"] == len(table) == document["examples"]
    assert document["fitting"]["fitted_through"] is None
    assert document["fitting"]["left_out_examples"] == 0
    assert "records no test window" in document["fitting"]["note"]
    assert "some may be examples it was fitted on" in document["summary"]


def test_evaluate_on_an_export_too_short_for_the_horizon_says_nothing_is_observed(
    trained: Trained, tmp_path: Path
) -> None:
    # Given a one-year export: every label, looking a year ahead, reaches past its end
    export_dir = tmp_path / "one-year"
    generate_export(export_dir, 300, 5, "parquet", years=1.0)
    # When the model is evaluated on it
    document = evaluate(
        export_dir, str(trained.first.model.save(tmp_path / "model")), tmp_path / "p.csv"
    )
    # Then nothing is measured, and the summary says why (not that the model saw it all)
    assert document["examples"] == 0
    assert document["summary"].startswith("no example is fully observed: every label, which")
    assert document["summary"].endswith("evaluate the model on a longer export.")


def _artifact_files(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    files: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            files |= _artifact_files(client, run_id, item.path)
        else:
            files.add(item.path)
    return files


def _text(client: MlflowClient, run_id: str, path: str) -> str:
    local = client.download_artifacts(run_id, path)
    return Path(local).read_text(encoding="utf-8")


def _model_file(trained: Trained, name: str) -> str:
    local = mlflow.artifacts.download_artifacts(
        f"runs:/{trained.first.run_id}/model/{name}", tracking_uri=trained.store
    )
    return Path(local).read_text(encoding="utf-8")


def test_mlflow_models_serve_answers_a_request_built_from_the_contract(
    trained: Trained, older_export_dir: Path, tmp_path: Path
) -> None:
    export = load_export(older_export_dir)
    rejections = export.rejections.iloc[:3]
    bodies = [
        request_body(export, row.rejection_id, row.rejected_at + pd.Timedelta(days=30))
        for row in rejections.itertuples()
    ]
    port = free_port()
    arguments = [
        "models",
        "serve",
        "-m",
        f"models:/{NAME}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    environment = {"MLFLOW_TRACKING_URI": trained.store}

    with running(
        [MLFLOW, *arguments], f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", environment
    ):
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"inputs": bodies}, timeout=60
        )

    assert response.status_code == 200, response.text
    served = response.json()["predictions"]
    champion = load_model(f"models:/{NAME}@champion").model
    expected = champion.predict_requests([ScoreRequest.model_validate(b) for b in bodies])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-12)


def test_the_age_report_reads_the_curve_on_examples_the_model_was_not_fitted_on(
    trained: Trained, world_export_dir: Path, store: MlflowClient
) -> None:
    # Given the registered model and a newer export of the same world
    loaded = load_model(trained.first.model_uri).model
    export = load_export(world_export_dir)

    # When its calibration is read by age
    curve = age_report.age_curve_table(loaded)
    note = age_report.partly_seen_note(loaded)
    table = age_report.calibration_by_age(export, loaded).set_index("days since the rejection")

    # Then the curve starts at the trained age with factor 1, and past that age the curve
    # lowers the mean probability, never before it
    assert curve["age_days"].iloc[0] == loaded.trained_age_days
    assert curve["factor"].iloc[0] == 1.0
    assert (curve["exposure"] <= curve["examples"]).all()
    assert note.startswith(("horizons seen for 90 days or more count", "whole horizons only: "))
    assert age_report.partly_seen_note(age_report.without_curve(loaded)) == "no age curve"
    young, old = table.loc[["0", "30", "90"]], table.loc[["180", "270 to 365", "450 to 630"]]
    assert (young["mean_p_with_curve"] == young["mean_p_without_curve"]).all()
    assert (old["mean_p_with_curve"] < old["mean_p_without_curve"]).all()
    assert table["examples"].gt(0).all()
    assert table["came_back"].between(0, 1).all()
