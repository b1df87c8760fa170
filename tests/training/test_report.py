"""The model report: tables from test-window predictions, and a registered version's run.

The table functions are checked on hand-made numbers; ``load_report`` and the comparisons on
a real sqlite MLflow store with two versions trained by ``training.train`` (slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.dataset import build_training_set, uncensored
from features.loading import Export, load_export
from features.synthetic import write_export
from tests.trained_store import TrainedStore, trained_store
from tests.training.conftest import cut_tables
from training import plots, report
from training.report import ModelReport
from training.split import fitted_through, split_by_time

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
    window = report.test_window(champion, small_export)
    test = window.examples

    assert window.trained_on
    assert window.left_out == 0
    assert test.labels is not None
    assert len(test) == champion.split["test"]["examples"]
    table = report.compare_versions(test.labels.target, {"m": champion.model.predict_set(test)})
    assert table.loc["m", "roc_auc"] == pytest.approx(champion.metrics["test.roc_auc"], abs=1e-12)
    assert table.loc["m", "ece"] == pytest.approx(champion.metrics["test.ece"], abs=1e-12)


@pytest.mark.slow
def test_champion_is_compared_with_the_version_it_replaced(
    champion: ModelReport, small_export: Export, store: TrainedStore
) -> None:
    test = report.test_window(champion, small_export).examples
    probability = champion.model.predict_set(test)

    comparison = report.reference_comparison(champion, small_export, test, probability)

    assert report.reference_version(champion) == store.previous
    assert list(comparison.table.index) == [f"v{store.champion}", f"v{store.previous}"]
    assert comparison.table["examples"].tolist() == [len(test), len(test)]
    assert comparison.note == f"{len(test):,} examples scored by both"


@pytest.mark.slow
def test_an_older_version_is_compared_with_the_current_champion(
    store: TrainedStore, champion: ModelReport
) -> None:
    older = report.load_report(f"models:/{store.name}/{store.previous}", num_threads=1)

    assert report.reference_version(older) == store.champion


@pytest.mark.slow
def test_shap_sample_adds_up_to_the_raw_score(champion: ModelReport, small_export: Export) -> None:
    test = report.test_window(champion, small_export).examples

    contributions, matrix = report.shap_sample(champion.model, test, size=50)

    raw = champion.model.booster.predict(matrix, raw_score=True)
    assert contributions.shape == (50, len(champion.model.feature_names) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, atol=1e-9)


@pytest.mark.slow
def test_artifacts_download(champion: ModelReport, tmp_path: Path) -> None:
    path = report.download_artifact(champion, "plots/shap_summary.png", tmp_path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize(("older_by_days", "wholly_fitted_on"), [(90, False), (180, True)])
def test_an_older_export_is_reviewed_only_on_examples_the_model_was_not_fitted_on(
    champion: ModelReport,
    small_export: Export,
    tmp_path: Path,
    older_by_days: int,
    wholly_fitted_on: bool,
) -> None:
    # Given the same world exported earlier: its newest window reaches into the period the
    # champion was trained and calibrated on (all of it when 180 days earlier)
    older = tmp_path / "older"
    cutoff = small_export.snapshot_at - pd.Timedelta(days=older_by_days)
    write_export(cut_tables(small_export.tables, cutoff), older, "parquet")
    export = load_export(older)
    through = fitted_through(champion.model.metadata)
    assert through is not None
    examples = uncensored(build_training_set(export, champion.model.config))
    newest = split_by_time(examples, champion.config.split, champion.config.features.label_days)
    fresh = int((newest.test.keys["as_of"] > through).sum())
    assert (fresh == 0) == wholly_fitted_on
    # When the report rebuilds the window to review the champion on
    if wholly_fitted_on:
        with pytest.raises(ValueError, match="may have been trained or calibrated on every"):
            report.test_window(champion, export)
        return
    window = report.test_window(champion, export)
    # Then only the examples scored after the champion's fitting windows are kept, and said
    assert not window.trained_on
    assert len(window.examples) == fresh < len(newest.test)
    assert window.left_out == len(newest.test) - fresh
    assert (window.examples.keys["as_of"] > through).all()
    assert f"less {window.left_out:,} scored up to" in window.note()
    first, last = window.examples.keys["as_of"].min(), window.examples.keys["as_of"].max()
    assert f"(scored {first:%Y-%m-%d} to {last:%Y-%m-%d})" in window.note()


def test_segment_chart_draws_each_metric_against_its_own_chance_line() -> None:
    table = pd.DataFrame(
        {
            "examples": [100, 20],
            "positive_rate": [0.1, 0.05],
            "roc_auc": [0.7, np.nan],
            "capture_top_20": [0.45, 1.0],
        },
        index=["budget", "timing"],
    )

    figure = plots.segment_chart({"reason": table, "offset": table})

    assert len(figure.axes) == 2
    chance = {line.get_label(): line.get_ydata()[0] for line in figure.axes[0].get_lines()}
    assert chance == {"ROC-AUC by chance": 0.5, "top 20% by chance": 0.2}
    ticks = [label.get_text() for label in figure.axes[1].get_xticklabels()]
    assert ticks == ["budget\n100 / 10", "timing\n20 / 1"]
    assert figure.axes[1].get_title() == "Per offset (examples / comebacks)"
