"""The promotion gate never grades a champion on examples it was fitted on.

Three real trainings of the small export into one sqlite store: the champion on the whole
export, then two backtests (an earlier ``snapshot_at``) whose test windows fall wholly, then
partly, inside the champion's training and validation windows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.dataset import build_training_set, uncensored
from features.loading import load_export
from features.model_store import load_model
from tests.servers import free_port
from training import report
from training.config import TrainingConfig, load_training_config
from training.registry import (
    PREVIOUS_CHAMPION_TAG,
    GateDecision,
    RegistryError,
    baseline_refusal,
    champion_version,
    promote,
    record_training,
    registry_client,
    rollback,
)
from training.split import fitted_through, split_by_time
from training.train import TrainingResult, train
from training.workflow import train_register_and_gate

pytestmark = pytest.mark.slow

NAME = "srl-reconversion"
FAST = {"lightgbm.num_threads": 1, "lightgbm.max_rounds": 300, "shap_sample": 200}
WHOLLY_INSIDE_DAYS = 200
PARTLY_INSIDE_DAYS = 90


@dataclass(frozen=True)
class Backtests:
    """A champion trained on the whole export and two challengers trained on earlier cuts."""

    champion: TrainingResult
    wholly_inside: TrainingResult
    partly_inside: TrainingResult
    partly_inside_snapshot: pd.Timestamp
    config: TrainingConfig
    store: str


@pytest.fixture(scope="module")
def backtests(small_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Backtests:
    """Train the champion on the latest snapshot, then challengers on earlier ones."""
    root = tmp_path_factory.mktemp("gate")
    store = f"sqlite:///{root / 'mlflow.db'}"
    # The backtests' models, fitted on a few hundred examples, need not beat the baselines:
    # this module is about the comparison with the champion
    config = load_training_config().with_overrides(**FAST, **{"promotion.beat_baselines": False})
    latest = load_export(small_export_dir).snapshot_at
    partly = latest - pd.Timedelta(days=PARTLY_INSIDE_DAYS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        patch.setenv("SRL_ARTIFACT_ROOT", str(root / "artifacts"))
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        try:
            champion = train(small_export_dir, config)
            wholly = train(
                small_export_dir,
                config,
                snapshot_at=latest - pd.Timedelta(days=WHOLLY_INSIDE_DAYS),
            )
            partly_result = train(small_export_dir, config, snapshot_at=partly)
        finally:
            mlflow.set_tracking_uri(None)
    return Backtests(champion, wholly, partly_result, partly, config, store)


def test_a_challenger_whose_test_window_the_champion_was_fitted_on_is_left_to_a_person(
    backtests: Backtests,
) -> None:
    # Given a champion fitted on examples up to the start of its own test window
    champion_start = pd.Timestamp(backtests.champion.split["test_start"])
    # When a backtest's whole test window lies before that moment
    assert pd.Timestamp(backtests.wholly_inside.split["end"]) <= champion_start
    decision = backtests.wholly_inside.decision
    # Then the gate compares nothing, keeps the champion and says a person must decide
    assert decision is not None
    assert not decision.promoted
    assert decision.compared_examples == 0
    assert decision.champion_version == backtests.champion.version
    assert "no example is left to compare the two fairly" in decision.reason
    assert decision.reason.endswith("a person must decide (srl promote)")
    client = MlflowClient(backtests.store)
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == backtests.champion.version
    tags = client.get_model_version(NAME, str(backtests.wholly_inside.version)).tags
    assert tags["gate.compared_examples"] == "0"


def test_the_gate_compares_only_test_examples_after_the_champions_fitting_windows(
    backtests: Backtests, small_export_dir: Path
) -> None:
    # Given a backtest whose test window starts inside the champion's fitting windows
    champion_model = backtests.champion.model
    through = fitted_through(champion_model.metadata)
    assert through is not None
    export = load_export(small_export_dir, snapshot_at=backtests.partly_inside_snapshot)
    examples = uncensored(build_training_set(export, backtests.config.features))
    test = split_by_time(examples, backtests.config.split, backtests.config.features.horizon_days)
    after = int((test.test.keys["as_of"] > through).sum())
    assert 0 < after < len(test.test)
    # When the gate judged it
    decision = backtests.partly_inside.decision
    # Then only the examples scored after the champion's fitting windows were compared
    assert decision is not None
    assert decision.compared_examples == after
    assert f"{len(test.test) - after:,} earlier examples" in decision.reason
    assert "were left out" in decision.reason
    assert decision.champion_value is not None
    assert decision.challenger_value is not None


def _aliases(tracking_uri: str) -> dict[str, str]:
    """The registered model's aliases and the versions they name."""
    aliases = MlflowClient(tracking_uri).get_registered_model(NAME).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def test_a_first_model_no_better_than_a_baseline_is_not_made_champion(
    small_export_dir: Path, tracking_uri: str
) -> None:
    # Given a booster that cannot split (every leaf would hold more examples than there
    # are): it gives every lead one score, as a too-short export can make it do
    settings = {"lightgbm.min_data_in_leaf": 10**9}
    config = load_training_config().with_overrides(**FAST, **settings)
    # When it is trained into a registry that has no champion yet
    result = train(small_export_dir, config)
    # Then the gate refuses it, naming the baseline it does not beat, and no champion is made
    decision = result.decision
    assert decision is not None
    assert not decision.promoted
    assert decision.reason.startswith("challenger does not beat the ")
    assert decision.reason.endswith("a person must decide (srl promote)")
    assert result.evaluation.report["overall"]["roc_auc"] == pytest.approx(0.5)
    assert _aliases(tracking_uri) == {"challenger": result.version}


def test_a_booster_without_a_split_is_not_made_champion_even_without_the_baselines(
    small_export_dir: Path, tracking_uri: str
) -> None:
    # Given a booster that cannot split, and a pilot's gate that skips the baselines
    settings = {"lightgbm.min_data_in_leaf": 10**9, "promotion.beat_baselines": False}
    config = load_training_config().with_overrides(**FAST, **settings)
    # When it is trained into a registry that has no champion yet
    result = train(small_export_dir, config)
    # Then the gate refuses it, saying why, and no champion is made
    decision = result.decision
    assert decision is not None
    assert not decision.promoted
    assert decision.reason.startswith("the booster found no split, so it gives every lead")
    assert "lightgbm.min_data_in_leaf is 1000000000" in decision.reason
    assert decision.reason.endswith("a person must decide (srl promote)")
    assert _aliases(tracking_uri) == {"challenger": result.version}


@pytest.mark.parametrize(
    ("metric", "value", "verdict"),
    [
        ("pr_auc", 0.31, None),
        ("pr_auc", 0.30, "points_score baseline on pr_auc (0.3000 vs 0.3000)"),
        ("pr_auc", float("nan"), "points_score baseline"),
        ("log_loss", 0.39, None),
        ("log_loss", 0.41, "logistic baseline on log_loss (0.4100 vs 0.4000)"),
    ],
)
def test_a_challenger_must_beat_every_baseline_strictly(
    metric: str, value: float, verdict: str | None
) -> None:
    baselines = {
        "points_score": {"pr_auc": 0.30, "log_loss": 0.45},
        "points_qualified": {"pr_auc": float("nan"), "log_loss": 0.42},
        "logistic": {"pr_auc": 0.25, "log_loss": 0.40},
    }

    reason = baseline_refusal(metric, value, baselines)

    if verdict is None:
        assert reason is None
    else:
        assert reason is not None
        assert verdict in reason


def test_the_report_reviews_a_backtest_on_its_own_window_and_compares_as_the_gate_did(
    backtests: Backtests, small_export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a backtest trained with --snapshot-at on the very files of the export
    monkeypatch.setenv("MLFLOW_TRACKING_URI", backtests.store)
    version = backtests.partly_inside.version
    review = report.load_report(f"models:/{NAME}/{version}", num_threads=1)
    export = load_export(small_export_dir)
    # When the report rebuilds its test window from that export, read without the snapshot
    window = report.test_window(review, export)
    # Then the window is cut at the run's own snapshot: exactly the run's test window
    assert window.trained_on
    assert window.snapshot_at == backtests.partly_inside_snapshot
    assert len(window.examples) == backtests.partly_inside.split["test"]["examples"]
    # And the champion is compared with it only where the gate compared them
    probability = review.model.predict_set(window.examples)
    comparison = report.reference_comparison(review, export, window.examples, probability)
    decision = backtests.partly_inside.decision
    assert decision is not None
    assert comparison.table["examples"].tolist() == [decision.compared_examples] * 2
    champion = backtests.champion.version
    assert comparison.table.loc[f"v{champion}", "pr_auc"] == pytest.approx(decision.champion_value)
    assert f"that v{champion} may have been fitted on were left out" in comparison.note


def test_the_demo_workflow_serves_a_refused_first_version_by_number(
    small_export_dir: Path, tracking_uri: str, tmp_path: Path
) -> None:
    # Given a training the gate refuses, into a registry with no champion yet
    config = tmp_path / "training.yaml"
    config.write_text(
        "lightgbm:\n  min_data_in_leaf: 1000000000\n  num_threads: 1\n  max_rounds: 50\n"
        "shap_sample: 50\n",
        encoding="utf-8",
    )
    # When the demo's workflow trains, registers and gates it
    refused = train_register_and_gate(small_export_dir, config)
    # Then it names the new version to serve (no champion alias exists) and says why
    assert refused.model_uri == f"models:/{NAME}/1"
    assert load_model(refused.model_uri).version == "1"
    assert f"{NAME} version 1 is challenger (challenger does not beat the " in refused.sentence
    # And once a champion stands, the champion is what it serves
    promote(NAME, "1", reason="reviewed")
    again = train_register_and_gate(small_export_dir, config)
    assert again.model_uri == f"models:/{NAME}@champion"
    assert f"{NAME} version 2 is challenger" in again.sentence


def test_an_unreachable_registry_is_said_so_never_taken_for_a_missing_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a tracking server that is down, reached with a password in its URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://operator:Secret42@127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")

    # When a person promotes, or the gate looks the champion up
    with pytest.raises(RegistryError) as promoting:
        promote(NAME, "2")
    with pytest.raises(RegistryError) as looking_up:
        champion_version(registry_client(), NAME)

    # Then each says the registry could not be used (not "no version 2", not "no champion",
    # which would let the gate promote unopposed), with the password masked
    for refused in (promoting.value, looking_up.value):
        assert str(refused).startswith("cannot use the registry at http://***@127.0.0.1:")
        assert "Secret42" not in str(refused)


class _AliasMoveFails(MlflowClient):
    """A real sqlite registry client whose champion move fails, as a registry outage would."""

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if alias == "champion":
            raise ConnectionError("registry unreachable")
        super().set_registered_model_alias(name, alias, version)


def test_a_champion_move_that_fails_leaves_the_champion_and_records_what_it_would_replace(
    tmp_path: Path,
) -> None:
    # Given a real registry with version 1 champion and a version 2
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store, registry_uri=store)
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, source=str(tmp_path / "model"))
    client.set_registered_model_alias(NAME, "champion", "1")
    promoted = GateDecision(True, "challenger beats champion 1", "pr_auc", 0.002)
    # When the gate promotes version 2 and the registry fails as the alias moves
    with pytest.raises(ConnectionError):
        record_training(_AliasMoveFails(store, registry_uri=store), NAME, "2", {}, promoted)
    # Then version 1 still serves, and version 2 already names the champion it replaces
    assert champion_version(client, NAME) == "1"
    assert client.get_model_version(NAME, "2").tags[PREVIOUS_CHAMPION_TAG] == "1"
    # And the retried move makes 2 champion, with 1 to roll back to
    record_training(client, NAME, "2", {}, promoted)
    assert champion_version(client, NAME) == "2"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        assert rollback(NAME, reason="retried move checked")["champion"] == "1"
    assert champion_version(client, NAME) == "1"


@pytest.mark.parametrize("status", ["FAILED", "KILLED", "RUNNING"])
def test_a_version_whose_run_did_not_finish_is_not_promoted_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    # Given a real registry holding a version logged by a run that did not finish
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = MlflowClient(store, registry_uri=store)
    run = client.create_run(client.create_experiment("half-done"))
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source=str(tmp_path / "model"), run_id=run.info.run_id)
    # When a person promotes it
    with pytest.raises(RegistryError) as refused:
        promote(NAME, "1")
    # Then it is refused, naming the run and its status, and no champion is made
    assert f"comes from run {run.info.run_id}, which did not finish ({status})" in str(
        refused.value
    )
    assert champion_version(client, NAME) is None


def test_a_gate_that_fails_to_be_recorded_leaves_no_version_behind(
    small_export_dir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a registry that fails as the gate's verdict is written on the new version
    config = load_training_config().with_overrides(**FAST)

    def registry_fails(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the registry went away")

    monkeypatch.setattr("training.registry.record_training", registry_fails)
    # When a model is trained and registered
    with pytest.raises(ConnectionError):
        train(small_export_dir, config)
    # Then the version it registered is deleted: nothing half-recorded can be promoted
    client = MlflowClient(tracking_uri)
    assert client.search_model_versions(f"name = '{NAME}'") == []


def test_a_test_window_with_too_few_comebacks_makes_no_champion(
    small_export_dir: Path, tracking_uri: str
) -> None:
    # Given a gate asking for more comebacks in the test window than it holds
    config = load_training_config().with_overrides(
        **FAST, **{"promotion.min_test_positives": 10**6}
    )
    # When a first model is trained into an empty registry
    result = train(small_export_dir, config)
    # Then the gate refuses it, naming the count and the setting, and no champion is made
    decision = result.decision
    assert decision is not None
    assert not decision.promoted
    assert re.search(
        r"the test window holds \d+ comeback\(s\) among [\d,]+ examples", decision.reason
    )
    assert "fewer than promotion.min_test_positives (1000000)" in decision.reason
    assert champion_version(MlflowClient(tracking_uri), NAME) is None
