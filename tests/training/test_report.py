"""The model report: tables from test-window predictions, and a registered version's run.

The table functions are checked on hand-made numbers; ``load_report`` and the comparisons on
a real sqlite MLflow store with two versions trained by ``training.train`` (slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import Export
from tests.trained_store import TrainedStore, trained_store
from training import report
from training.report import ModelReport

LABELS = np.array([0, 0, 1, 0, 1, 1, 0, 0, 0, 1], dtype=float)
SCORES = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.4, 0.05, 0.15, 0.25, 0.7])


def test_calibration_table_bins_by_score_with_equal_counts() -> None:
    table = report.calibration_table(LABELS, SCORES, bins=2)

    assert table["examples"].tolist() == [5, 5]
    assert table.loc[0, "observed_rate"] == 0.0  # 0.05, 0.1, 0.15, 0.2, 0.25
    assert table.loc[1, "observed_rate"] == 0.8  # 0.3, 0.4, 0.7, 0.8, 0.9
    assert table.loc[1, "mean_predicted"] == pytest.approx(0.62)
    assert table.loc[1, "gap"] == pytest.approx(0.18)


def test_gains_table_captures_and_lifts() -> None:
    table = report.gains_table(LABELS, {"model": SCORES, "reverse": -SCORES}, shares=(0.2, 0.5))

    assert table.loc[0.2, "model capture"] == 0.5  # 0.9 and 0.8: two of four comebacks
    assert table.loc[0.2, "model lift"] == pytest.approx(2.5)
    assert table.loc[0.5, "model capture"] == 1.0
    assert table.loc[0.5, "reverse capture"] == 0.0


def test_gains_and_calibration_tables_do_not_depend_on_the_row_order() -> None:
    # Given a score of two plateaus, comebacks listed first
    labels = np.array([1.0] * 4 + [0.0] * 6)
    score = np.array([0.5] * 6 + [0.2] * 4)
    reverse = np.arange(10)[::-1]
    # When the tables are built from the rows as given and reversed
    gains = report.gains_table(labels, {"s": score}, shares=(0.2, 0.5))
    gains_reversed = report.gains_table(labels[reverse], {"s": score[reverse]}, shares=(0.2, 0.5))
    calibration = report.calibration_table(labels, score, bins=2)
    calibration_reversed = report.calibration_table(labels[reverse], score[reverse], bins=2)
    # Then the ties count as broken at random, and tied scores share one calibration bin
    pd.testing.assert_frame_equal(gains, gains_reversed)
    assert gains.loc[0.2, "s capture"] == pytest.approx(2 / 6)  # 2 of the 6 tied rows
    pd.testing.assert_frame_equal(calibration, calibration_reversed)
    assert calibration["examples"].tolist() == [4, 6]


def test_segment_table_per_reason_and_offset() -> None:
    keys = pd.DataFrame(
        {"reason_code": ["budget"] * 5 + ["timing"] * 5, "offset_days": [0, 30] * 5}
    )

    by_reason = report.segment_table(keys, LABELS, SCORES, "reason_code")
    by_offset = report.segment_table(keys, LABELS, SCORES, "offset_days")

    assert by_reason.loc["budget", "examples"] == 5
    assert by_reason.loc["budget", "positive_rate"] == pytest.approx(0.4)
    assert by_reason.loc["budget", "roc_auc"] == 1.0
    assert list(by_offset.index) == ["0", "30"]
    assert by_offset["examples"].sum() == 10


def test_compare_versions_scores_each_model_on_the_same_examples() -> None:
    table = report.compare_versions(LABELS, {"good": SCORES, "bad": 1 - SCORES})

    assert table.loc["good", "roc_auc"] > 0.9 > 0.1 > table.loc["bad", "roc_auc"]
    assert set(table.columns) >= {"pr_auc", "ece", "capture_top_20", "lift_top_20"}


def test_mean_abs_shap_ranks_features_by_average_pull() -> None:
    contributions = np.array([[0.5, -0.1, 0.0, 1.0], [-0.5, 0.3, 0.1, 1.0]])

    table = report.mean_abs_shap(contributions, ["a", "b", "c"], top=2)

    assert table["feature"].tolist() == ["a", "b"]
    assert table["mean_abs_shap"].tolist() == pytest.approx([0.5, 0.2])
    assert table["share"].iloc[0] == pytest.approx(0.5 / 0.75)


def test_example_rows_pick_top_typical_and_missed() -> None:
    rows = report.example_rows(LABELS, SCORES)

    assert rows == {"highest score": 2, "median score": 3, "comeback scored lowest": 5}
    assert "comeback scored lowest" not in report.example_rows(np.zeros(3), SCORES[:3])


@pytest.fixture(scope="module")
def store(small_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Two versions trained on the small export; version 2 is champion, replacing 1."""
    return trained_store(small_export_dir, tmp_path_factory)


@pytest.fixture
def champion(store: TrainedStore, monkeypatch: pytest.MonkeyPatch) -> ModelReport:
    """The champion's report."""
    for variable, value in store.environment().items():
        monkeypatch.setenv(variable, value)
    return report.load_report(f"models:/{store.name}@champion", num_threads=1)


@pytest.mark.slow
def test_report_reads_the_versions_run(champion: ModelReport, store: TrainedStore) -> None:
    assert champion.loaded.version == store.champion
    assert champion.metrics["test.roc_auc"] == pytest.approx(
        champion.evaluation["test"]["overall"]["roc_auc"]
    )
    assert "plots/calibration_curve.png" in champion.artifacts
    assert champion.params["config.seed"] == "7"
    assert champion.config.seed == 7
    assert champion.version_tags["previous_champion"] == store.previous
    overview = report.run_overview(champion)
    assert overview["version"] == store.champion
    assert overview["summary"].startswith("Scoring the top 20%")


@pytest.mark.slow
def test_baseline_table_holds_the_model_and_every_logged_baseline(champion: ModelReport) -> None:
    table = report.baseline_table(champion)

    assert list(table.index) == [
        f"model v{champion.loaded.version}",
        "points_score",
        "points_qualified",
        "logistic",
    ]
    assert table.loc["logistic", "roc_auc"] == pytest.approx(
        champion.metrics["baseline.logistic.roc_auc"]
    )
    assert table.iloc[0]["roc_auc"] > table.loc["points_score", "roc_auc"]


@pytest.mark.slow
def test_rebuilt_test_window_reproduces_the_logged_metrics(
    champion: ModelReport, small_export: Export
) -> None:
    test = report.test_examples(champion, small_export)

    assert test.labels is not None
    assert len(test) == champion.split["test"]["examples"]
    table = report.compare_versions(test.labels.target, {"m": champion.model.predict_set(test)})
    assert table.loc["m", "roc_auc"] == pytest.approx(champion.metrics["test.roc_auc"], abs=1e-12)
    assert table.loc["m", "ece"] == pytest.approx(champion.metrics["test.ece"], abs=1e-12)


@pytest.mark.slow
def test_champion_is_compared_with_the_version_it_replaced(
    champion: ModelReport, small_export: Export, store: TrainedStore
) -> None:
    test = report.test_examples(champion, small_export)
    probability = champion.model.predict_set(test)

    table = report.reference_comparison(champion, small_export, test, probability)

    assert report.reference_version(champion) == store.previous
    assert list(table.index) == [f"v{store.champion}", f"v{store.previous}"]
    assert table["examples"].tolist() == [len(test), len(test)]


@pytest.mark.slow
def test_an_older_version_is_compared_with_the_current_champion(
    store: TrainedStore, champion: ModelReport
) -> None:
    older = report.load_report(f"models:/{store.name}/{store.previous}", num_threads=1)

    assert report.reference_version(older) == store.champion


@pytest.mark.slow
def test_shap_sample_adds_up_to_the_raw_score(champion: ModelReport, small_export: Export) -> None:
    test = report.test_examples(champion, small_export)

    contributions, matrix = report.shap_sample(champion.model, test, size=50)

    raw = champion.model.booster.predict(matrix, raw_score=True)
    assert contributions.shape == (50, len(champion.model.feature_names) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, atol=1e-9)


@pytest.mark.slow
def test_artifacts_download(champion: ModelReport, tmp_path: Path) -> None:
    path = report.download_artifact(champion, "plots/shap_summary.png", tmp_path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
