"""The report's tables, checked on hand-made labels and scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from training import report_tables

LABELS = np.array([0, 0, 1, 0, 1, 1, 0, 0, 0, 1], dtype=float)
SCORES = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.4, 0.05, 0.15, 0.25, 0.7])


def test_calibration_table_bins_by_score_with_equal_counts() -> None:
    table = report_tables.calibration_table(LABELS, SCORES, bins=2)

    assert table["examples"].tolist() == [5, 5]
    assert table.loc[0, "observed_rate"] == 0.0  # 0.05, 0.1, 0.15, 0.2, 0.25
    assert table.loc[1, "observed_rate"] == 0.8  # 0.3, 0.4, 0.7, 0.8, 0.9
    assert table.loc[1, "mean_predicted"] == pytest.approx(0.62)
    assert table.loc[1, "gap"] == pytest.approx(0.18)


def test_gains_table_captures_and_lifts() -> None:
    table = report_tables.gains_table(
        LABELS, {"model": SCORES, "reverse": -SCORES}, shares=(0.2, 0.5)
    )

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
    gains = report_tables.gains_table(labels, {"s": score}, shares=(0.2, 0.5))
    gains_reversed = report_tables.gains_table(
        labels[reverse], {"s": score[reverse]}, shares=(0.2, 0.5)
    )
    calibration = report_tables.calibration_table(labels, score, bins=2)
    calibration_reversed = report_tables.calibration_table(labels[reverse], score[reverse], bins=2)
    # Then the ties count as broken at random, and tied scores share one calibration bin
    pd.testing.assert_frame_equal(gains, gains_reversed)
    assert gains.loc[0.2, "s capture"] == pytest.approx(2 / 6)  # 2 of the 6 tied rows
    pd.testing.assert_frame_equal(calibration, calibration_reversed)
    assert calibration["examples"].tolist() == [4, 6]


def test_segment_table_per_reason_and_offset() -> None:
    keys = pd.DataFrame(
        {"reason_code": ["budget"] * 5 + ["timing"] * 5, "offset_days": [0, 30] * 5}
    )

    by_reason = report_tables.segment_table(keys, LABELS, SCORES, "reason_code")
    by_offset = report_tables.segment_table(keys, LABELS, SCORES, "offset_days")

    assert by_reason.loc["budget", "examples"] == 5
    assert by_reason.loc["budget", "positive_rate"] == pytest.approx(0.4)
    assert by_reason.loc["budget", "roc_auc"] == 1.0
    assert list(by_offset.index) == ["0", "30"]
    assert by_offset["examples"].sum() == 10


def test_compare_versions_scores_each_model_on_the_same_examples() -> None:
    table = report_tables.compare_versions(LABELS, {"good": SCORES, "bad": 1 - SCORES})

    assert table.loc["good", "roc_auc"] > 0.9 > 0.1 > table.loc["bad", "roc_auc"]
    assert set(table.columns) >= {"pr_auc", "ece", "capture_top_20", "lift_top_20"}


def test_mean_abs_shap_ranks_features_by_average_pull() -> None:
    contributions = np.array([[0.5, -0.1, 0.0, 1.0], [-0.5, 0.3, 0.1, 1.0]])

    table = report_tables.mean_abs_shap(contributions, ["a", "b", "c"], top=2)

    assert table["feature"].tolist() == ["a", "b"]
    assert table["mean_abs_shap"].tolist() == pytest.approx([0.5, 0.2])
    assert table["share"].iloc[0] == pytest.approx(0.5 / 0.75)


def test_example_rows_pick_top_typical_and_missed() -> None:
    rows = report_tables.example_rows(LABELS, SCORES)

    assert rows == {"highest score": 2, "median score": 3, "comeback scored lowest": 5}
    assert "comeback scored lowest" not in report_tables.example_rows(np.zeros(3), SCORES[:3])


@dataclass(frozen=True)
class _Factor:
    direction: str
    text: str


def test_outcome_text_reads_the_label() -> None:
    assert report_tables.outcome_text(1.0) == "came back"
    assert report_tables.outcome_text(0.0) == "did not come back"


def test_explained_examples_list_each_example_then_its_factors() -> None:
    # Given the examples worth explaining and the factors behind two of their scores
    keys = pd.DataFrame({"reason_code": ["budget", "timing", "no_need", "other"] * 2 + ["x"] * 2})
    chosen = {"highest score": 2, "median score": 3}
    factors = [
        [_Factor("up", "rejected because a competitor won"), _Factor("down", "no reply")],
        [],
    ]
    # When they are put in words
    text = report_tables.explained_examples(chosen, keys, LABELS, SCORES, factors)
    # Then each example names its reason, probability and outcome, each factor its direction
    assert text.splitlines() == [
        "highest score: no_need, 90.0%, came back",
        "    + rejected because a competitor won",
        "    - no reply",
        "median score: other, 30.0%, did not come back",
    ]


def test_explained_examples_need_the_factors_of_every_example() -> None:
    keys = pd.DataFrame({"reason_code": ["budget"] * 10})

    with pytest.raises(ValueError, match="zip"):
        report_tables.explained_examples({"a": 0, "b": 1}, keys, LABELS, SCORES, [[]])
