"""The model report: a registered version's run, its review window and comparisons.

Checked on a real sqlite MLflow store with two versions trained by ``training.train``
(slow); the tables themselves are checked on hand-made numbers in ``test_report_tables.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.dataset import build_training_set, uncensored
from features.loading import Export, load_export
from features.synthetic import write_export
from tests.trained_store import TrainedStore, trained_store
from tests.training.conftest import cut_tables
from training import plots, report, report_tables
from training.report import ModelReport
from training.split import fitted_through, split_by_time


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
    ages = champion.model.metadata["rejection_age_days"]
    assert overview["oldest_rejection_trained_on_days"] == ages["trained"]
    assert overview["oldest_rejection_calibrated_on_days"] == ages["calibrated"]


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
    table = report_tables.compare_versions(
        test.labels.target, {"m": champion.model.predict_set(test)}
    )
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
def test_a_version_predicting_another_outcome_is_not_graded_on_these_labels(
    champion: ModelReport, small_export: Export, store: TrainedStore
) -> None:
    # Given the champion as if it predicted comebacks within 180 days, not 365 as v1 does
    asks_180 = champion.model.config.model_copy(update={"horizon_days": 180})
    shorter = replace(champion.model, config=asks_180)
    review = replace(champion, loaded=replace(champion.loaded, model=shorter))
    test = report.test_window(champion, small_export).examples

    comparison = report.reference_comparison(review, small_export, test, np.zeros(len(test)))

    # Then nothing is compared, as the promotion gate would compare nothing
    assert comparison.table.empty
    assert comparison.note == (
        f"nothing compared: v{store.previous} predicts reconverted within 365 days, this "
        "version reconverted within 180 days: the same labels cannot grade both"
    )


@pytest.mark.slow
def test_an_older_version_is_compared_with_the_current_champion(
    store: TrainedStore, champion: ModelReport
) -> None:
    older = report.load_report(f"models:/{store.name}/{store.previous}", num_threads=1)

    assert report.reference_version(older) == store.champion


@pytest.mark.slow
def test_shap_sample_adds_up_to_the_raw_score(champion: ModelReport, small_export: Export) -> None:
    test = report.test_window(champion, small_export).examples

    contributions, matrix = report_tables.shap_sample(champion.model, test, size=50)

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
