"""Metrics on hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    expected_calibration_error,
    expected_found,
    flatten,
    improvement,
    json_ready,
    metric_report,
    score_metrics,
    summary_sentence,
    top_share,
)


def test_expected_calibration_error_weights_bin_gaps_by_size() -> None:
    probability = np.array([0.05, 0.05, 0.05, 0.05, 0.75, 0.75])
    labels = np.array([0, 0, 0, 1, 1, 1])

    # bin 0: predicted 0.05, observed 0.25 (4 rows); bin 7: predicted 0.75, observed 1 (2 rows)
    expected = (4 * 0.2 + 2 * 0.25) / 6
    assert expected_calibration_error(labels, probability) == pytest.approx(expected)


def test_a_perfectly_calibrated_score_has_no_calibration_error() -> None:
    probability = np.array([0.25] * 4 + [0.5] * 2)
    labels = np.array([1, 0, 0, 0, 1, 0])

    assert expected_calibration_error(labels, probability) == pytest.approx(0.0)


def test_lift_and_capture_of_the_top_share() -> None:
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    score = np.linspace(1, 0, 10)

    lift, capture = top_share(labels, score, 0.2)

    assert capture == pytest.approx(2 / 3)
    assert lift == pytest.approx(1.0 / 0.3)


def test_a_constant_score_captures_exactly_its_share_whatever_the_row_order() -> None:
    # Given a constant score (the points_qualified baseline: all zeros) and labels sorted so
    # that every comeback comes first, as an export ordered by lead can be
    labels = np.array([1.0] * 30 + [0.0] * 70)
    constant = np.zeros(100)
    # When the top 10% and 20% are measured
    metrics = score_metrics(labels, constant)
    # Then the score finds exactly its share of the comebacks: it ranks no one above another
    assert metrics["capture_top_10"] == pytest.approx(0.1)
    assert metrics["capture_top_20"] == pytest.approx(0.2)
    assert metrics["lift_top_10"] == pytest.approx(1.0)
    assert metrics["lift_top_20"] == pytest.approx(1.0)


def test_ties_split_by_the_cut_count_in_proportion_to_the_rows_inside() -> None:
    # Given one clear top example and four tied examples holding two comebacks
    labels = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    score = np.array([0.9, 0.5, 0.5, 0.5, 0.5])
    # When the top 2, 3, ... are counted
    found = expected_found(labels, score)
    # Then the tied group adds half a comeback per row taken from it
    np.testing.assert_allclose(found, [0.0, 0.5, 1.0, 1.5, 2.0])


def test_ranking_metrics_do_not_depend_on_the_row_order() -> None:
    # Given a score with many ties (plateaus, as isotonic calibration makes)
    rng = np.random.default_rng(3)
    score = rng.integers(0, 4, 500) / 4
    labels = (rng.uniform(size=500) < score).astype(float)
    # When the rows are listed comebacks first, then comebacks last, then shuffled
    first, last = np.argsort(-labels, kind="stable"), np.argsort(labels, kind="stable")
    shuffled = rng.permutation(500)
    before = score_metrics(labels[first], score[first])
    after = score_metrics(labels[last], score[last])
    again = score_metrics(labels[shuffled], score[shuffled])
    # Then every metric is the same
    assert before == pytest.approx(after)
    assert before == pytest.approx(again)


def test_without_ties_the_top_share_counts_the_top_rows() -> None:
    # Given distinct scores
    rng = np.random.default_rng(4)
    score = rng.permutation(200) / 200
    labels = (rng.uniform(size=200) < score).astype(float)
    # When the top 20% is measured
    lift, capture = top_share(labels, score, 0.2)
    # Then it is the share of comebacks among the 40 highest scores
    top = np.argsort(-score)[:40]
    assert capture == pytest.approx(labels[top].sum() / labels.sum())
    assert lift == pytest.approx(labels[top].mean() / labels.mean())


def test_every_metric_is_computed_and_single_class_segments_have_no_auc() -> None:
    rng = np.random.default_rng(0)
    probability = rng.uniform(size=200)
    labels = (rng.uniform(size=200) < probability).astype(float)

    metrics = score_metrics(labels, probability)
    single = score_metrics(np.zeros(5), np.full(5, 0.1))

    assert 0.6 < metrics["roc_auc"] <= 1
    assert {"pr_auc", "log_loss", "brier", "ece", "lift_top_10", "capture_top_20"} <= set(metrics)
    assert math.isnan(single["roc_auc"])
    assert math.isnan(single["capture_top_20"])
    assert json_ready(single)["roc_auc"] is None


def test_the_report_has_segments_and_flat_metric_names() -> None:
    keys = pd.DataFrame({"reason_code": ["budget", "timing"] * 50, "offset_days": [0, 30] * 50})
    labels = np.tile([1.0, 0.0, 0.0, 1.0], 25)
    probability = np.tile([0.8, 0.3, 0.2, 0.6], 25)

    report = metric_report(keys, labels, probability)
    flat = flatten(report, "test")

    assert set(report["by_reason"]) == {"budget", "timing"}
    assert list(report["by_offset"]) == ["0", "30"]
    assert flat["test.roc_auc"] == report["overall"]["roc_auc"]
    assert "test.reason.budget.brier" in flat
    assert "test.offset.30.ece" in flat


def test_improvement_is_positive_when_the_model_is_better_and_negative_when_worse() -> None:
    model = {
        "roc_auc": 0.8,
        "pr_auc": 0.4,
        "log_loss": 0.3,
        "brier": 0.09,
        "ece": 0.01,
        "capture_top_10": 0.3,
        "capture_top_20": 0.5,
    }
    baseline = {
        "roc_auc": 0.6,
        "pr_auc": 0.2,
        "log_loss": 0.4,
        "brier": 0.1,
        "ece": 0.03,
        "capture_top_10": 0.1,
        "capture_top_20": 0.3,
    }

    gains = {
        "roc_auc": 0.2,
        "pr_auc": 0.2,
        "log_loss": 0.1,
        "brier": 0.01,
        "ece": 0.02,
        "capture_top_10": 0.2,
        "capture_top_20": 0.2,
    }

    assert improvement(model, baseline) == pytest.approx(gains)
    assert improvement(baseline, model) == pytest.approx({k: -v for k, v in gains.items()})


def test_the_summary_reads_like_a_sentence() -> None:
    overall = {"capture_top_20": 0.55, "lift_top_20": 2.75, "positive_rate": 0.12}

    sentence = summary_sentence(overall, {"points_score": {"capture_top_20": 0.3}})

    assert sentence == (
        "Scoring the top 20% of rejected leads finds 55% of the comebacks (2.8x the average "
        "rate of 12.0%); the classic points score finds 30%."
    )


def test_the_summary_of_a_won_model_counts_wins() -> None:
    overall = {"capture_top_20": 0.17, "lift_top_20": 0.85, "positive_rate": 0.016}

    found = summary_sentence(overall, {}, "won")
    nothing = summary_sentence({**overall, "positive_rate": 0.0, "examples": 3}, {}, "won")

    assert found == (
        "Scoring the top 20% of rejected leads finds 17% of the wins (0.8x the average rate "
        "of 1.6%)."
    )
    assert nothing.startswith("None of the 3 evaluated examples was won within the horizon")


def test_the_summary_says_when_there_is_no_comeback_to_find() -> None:
    # Given the metrics of examples none of which came back
    overall = score_metrics(np.zeros(12), np.linspace(0.1, 0.6, 12))
    # When the summary is written
    sentence = summary_sentence(overall, {"points_score": {"capture_top_20": math.nan}})
    # Then it says there is no comeback, with no nan, and the metrics stay undefined
    assert sentence == (
        "None of the 12 evaluated examples came back within the horizon, so there is no "
        "comeback for a score to find: lift and capture are not measured."
    )
    assert "nan" not in sentence
    assert json_ready(overall)["capture_top_20"] is None
