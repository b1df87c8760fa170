"""Metrics on hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    expected_calibration_error,
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


def test_improvement_is_positive_when_the_model_is_better() -> None:
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

    assert all(v > 0 for v in improvement(model, baseline).values())


def test_the_summary_reads_like_a_sentence() -> None:
    overall = {"capture_top_20": 0.55, "lift_top_20": 2.75, "positive_rate": 0.12}

    sentence = summary_sentence(overall, {"points_score": {"capture_top_20": 0.3}})

    assert sentence == (
        "Scoring the top 20% of rejected leads finds 55% of the comebacks (2.8x the average "
        "rate of 12.0%); the classic points score finds 30%."
    )
