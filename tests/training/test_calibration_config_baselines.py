"""Calibration maps, the training config file, the baselines and the gate's comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from features.engine import FeatureSpec
from training.baselines import fit_logistic_baseline, fit_score_baseline
from training.calibration import fit_calibration, fit_isotonic, fit_platt
from training.config import (
    DEFAULT_CONFIG_FILE,
    CalibrationConfig,
    LogisticConfig,
    TrainingConfig,
    load_training_config,
    with_horizon_days,
)
from training.metrics import score_metrics
from training.registry import beats


@pytest.fixture(scope="module")
def miscalibrated() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw scores that overstate the truth (true p = raw ** 2), with times."""
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.01, 0.99, size=4000)
    labels = (rng.uniform(size=raw.size) < raw**2).astype(float)
    return raw, labels, np.arange(raw.size)


def test_isotonic_matches_scikit_learn_between_its_steps(miscalibrated: tuple) -> None:
    raw, labels, _ = miscalibrated
    calibration = fit_isotonic(raw, labels)
    reference = IsotonicRegression(y_min=1e-4, y_max=1 - 1e-4, out_of_bounds="clip")
    reference.fit(raw, labels)

    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(calibration.apply(grid), reference.predict(grid), atol=1e-12)
    assert np.all(np.diff(calibration.apply(grid)) >= 0)


def test_calibration_lowers_log_loss_of_a_miscalibrated_score(miscalibrated: tuple) -> None:
    raw, labels, as_of = miscalibrated

    choice = fit_calibration(raw, labels, as_of, CalibrationConfig())

    assert choice.calibration.method in ("isotonic", "platt")
    best = min(choice.scores[m]["log_loss"] for m in ("isotonic", "platt"))
    assert choice.scores[choice.calibration.method]["log_loss"] == best
    assert best < choice.scores["none"]["log_loss"]
    calibrated = score_metrics(labels, choice.calibration.apply(raw))
    assert calibrated["ece"] < score_metrics(labels, raw)["ece"]


def test_platt_is_a_plain_logistic_map(miscalibrated: tuple) -> None:
    raw, labels, _ = miscalibrated

    platt = fit_platt(raw, labels)

    assert platt.a > 1
    assert platt.to_dict()["method"] == "platt"
    assert (
        fit_calibration(raw, labels, raw, CalibrationConfig(method="none")).calibration.method
        == "none"
    )


@pytest.mark.parametrize(
    ("selection_fraction", "late_comebacks_only", "why"),
    [
        (0.5, True, "the window's earlier part holds 2,000 examples of one outcome"),
        (0.0001, False, "the window's earlier part holds no example"),
        (0.9999, False, "the window's later part is empty"),
    ],
)
def test_a_window_whose_parts_cannot_choose_is_calibrated_by_platt_saying_why(
    miscalibrated: tuple, selection_fraction: float, late_comebacks_only: bool, why: str
) -> None:
    # Given a validation window whose earlier part has no comeback, or a part left empty
    raw, labels, as_of = miscalibrated
    if late_comebacks_only:
        labels = np.where(as_of < raw.size // 2, 0.0, labels)
    config = CalibrationConfig(method="auto", selection_fraction=selection_fraction)

    choice = fit_calibration(raw, labels, as_of, config)

    # Then Platt's map is fitted on the whole window, and the choice says why
    expected = fit_platt(raw, labels)
    assert (choice.calibration.a, choice.calibration.b) == (expected.a, expected.b)
    assert choice.scores == {}
    assert choice.note is not None
    assert why in choice.note


def test_the_shipped_yaml_is_the_default_config() -> None:
    assert DEFAULT_CONFIG_FILE.exists()
    assert load_training_config() == TrainingConfig()
    assert load_training_config(DEFAULT_CONFIG_FILE) == TrainingConfig()


def test_unknown_or_out_of_range_settings_are_refused(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("version: 1\nlightgbm:\n  learning_rat: 0.1\n")
    wrong_version = tmp_path / "version.yaml"
    wrong_version.write_text("version: 2\n")

    with pytest.raises(ValidationError, match="learning_rat"):
        load_training_config(unknown)
    with pytest.raises(ValidationError, match="version"):
        load_training_config(wrong_version)
    with pytest.raises(ValidationError):
        TrainingConfig().with_overrides(**{"features.target": "sold"})


def test_a_partly_seen_horizon_window_must_be_shorter_than_the_horizon() -> None:
    # A window as long as the horizon would count nothing partly seen, silently
    as_long = {"calibration.age_curve_min_window_days": 365}
    with pytest.raises(ValidationError, match=r"age_curve_min_window_days \(365\).*\(365\)"):
        TrainingConfig().with_overrides(**as_long)
    with pytest.raises(ValidationError, match="age_curve_min_window_days"):
        TrainingConfig().with_overrides(**{"calibration.age_curve_min_window_days": 7})
    shorter_horizon = {"features.horizon_days": 180, "calibration.age_curve_min_window_days": 90}
    assert TrainingConfig().with_overrides(**shorter_horizon).features.horizon_days == 180
    whole_only = TrainingConfig(calibration=CalibrationConfig(age_curve_min_window_days=None))
    assert whole_only.calibration.age_curve_min_window_days is None


@pytest.mark.parametrize(
    ("days", "window"), [(365, 90), (91, 90), (90, 45), (60, 30), (59, None), (1, None)]
)
def test_a_shorter_horizon_takes_a_partly_seen_window_that_fits_it(
    days: int, window: int | None
) -> None:
    config = with_horizon_days(TrainingConfig(), days)

    assert config.features.horizon_days == days
    assert config.calibration.age_curve_min_window_days == window
    assert with_horizon_days(config, None) == config
    whole_only = TrainingConfig(calibration=CalibrationConfig(age_curve_min_window_days=None))
    assert with_horizon_days(whole_only, days).calibration.age_curve_min_window_days is None


def test_seeds_outside_what_the_samplers_take_are_refused() -> None:
    assert TrainingConfig(seed=2**32 - 1).seed == 2**32 - 1
    for seed in (-1, 2**32):
        with pytest.raises(ValidationError, match="seed"):
            TrainingConfig(seed=seed)


@pytest.mark.parametrize(
    "name", ["a/b", "models:x", "o'brien", 'say "hi"', "x@champion", " x", "x ", "a\tb", ""]
)
def test_a_model_name_the_registry_or_its_uris_cannot_take_is_refused(name: str) -> None:
    for taken in ("Lead model (EU) 2.1_b-c", "modèle", "srl#2", "a+b,c", ".x"):
        assert TrainingConfig(registered_model_name=taken).registered_model_name == taken
    with pytest.raises(ValidationError, match="registered_model_name"):
        TrainingConfig(registered_model_name=name)


def test_overrides_reach_into_sections_and_skip_none() -> None:
    config = TrainingConfig().with_overrides(
        **{"features.horizon_days": 180, "seed": None, "lightgbm.num_threads": 1}
    )

    assert config.features.horizon_days == 180
    assert config.seed == TrainingConfig().seed
    assert config.lightgbm.booster_params(3)["num_threads"] == 1
    assert config.lightgbm.booster_params(3)["deterministic"] is True
    assert TrainingConfig().lightgbm.resolved_threads() >= 1


def test_baselines_turn_scores_and_features_into_probabilities() -> None:
    rng = np.random.default_rng(2)
    matrix = np.column_stack(
        [rng.integers(0, 40, 600), rng.integers(0, 3, 600), rng.normal(size=600)]
    ).astype(float)
    matrix[::7, 2] = np.nan
    labels = (rng.uniform(size=600) < 0.05 + matrix[:, 0] / 60).astype(float)
    specs = [
        FeatureSpec("points_score", "numeric", "", "", ""),
        FeatureSpec("reason_code", "category", "", "", ""),
        FeatureSpec("noise", "numeric", "", "", ""),
    ]

    points = fit_score_baseline([s.name for s in specs], "points_score", matrix, labels)
    logistic = fit_logistic_baseline(specs, matrix, labels, LogisticConfig())

    order = np.argsort(matrix[:, 0])
    assert np.all(np.diff(points.predict(matrix)[order]) >= 0)
    assert score_metrics(labels, logistic.predict(matrix))["roc_auc"] > 0.6
    assert np.all((logistic.predict(matrix) > 0) & (logistic.predict(matrix) < 1))


def test_the_logistic_baseline_is_recalibrated_on_validation_keeping_its_ranking() -> None:
    # Given a regression trained where comebacks were rare, validated where they are not
    rng = np.random.default_rng(5)
    specs = [FeatureSpec("signal", "numeric", "", "", "")]

    def window(size: int, base: float) -> tuple[np.ndarray, np.ndarray]:
        signal = rng.normal(size=size)
        chance = 1.0 / (1.0 + np.exp(-(base + 1.5 * signal)))
        return signal.reshape(-1, 1), (rng.uniform(size=size) < chance).astype(float)

    train, validation = window(3000, -3.0), window(3000, -1.0)
    raw = fit_logistic_baseline(specs, *train, LogisticConfig())
    # When it is recalibrated on the validation window
    calibrated = raw.recalibrated(*validation)
    # Then its probabilities there average the observed rate, where the raw ones do not
    matrix, labels = validation
    assert abs(raw.predict(matrix).mean() - labels.mean()) > 0.1
    assert calibrated.predict(matrix).mean() == pytest.approx(labels.mean(), abs=1e-4)
    # And the map is monotone: ranking metrics are the regression's own
    order = np.argsort(raw.predict(matrix))
    assert np.all(np.diff(calibrated.predict(matrix)[order]) >= 0)
    assert score_metrics(labels, calibrated.predict(matrix))["roc_auc"] == pytest.approx(
        score_metrics(labels, raw.predict(matrix))["roc_auc"], abs=1e-12
    )


def test_a_baseline_no_better_than_chance_on_validation_keeps_its_order() -> None:
    # Given a regression that learnt "more signal, more comebacks" and a validation window
    # where the signal, by chance, points the other way
    rng = np.random.default_rng(9)
    specs = [FeatureSpec("points_score", "numeric", "", "", "")]
    signal = rng.normal(size=2000)
    train_labels = (rng.uniform(size=2000) < 1 / (1 + np.exp(2 - 1.5 * signal))).astype(float)
    flipped = (rng.uniform(size=2000) < 1 / (1 + np.exp(2 + 1.5 * signal))).astype(float)
    matrix = signal.reshape(-1, 1)
    raw = fit_logistic_baseline(specs, matrix, train_labels, LogisticConfig())
    # When it and the points score are mapped to probabilities on that window
    calibrated = raw.recalibrated(matrix, flipped)
    points = fit_score_baseline(["points_score"], "points_score", matrix, flipped)
    # Then neither map reverses the score: the ranking is the rule's own, at the window's rate
    for baseline in (calibrated, points):
        probability = baseline.predict(matrix)
        order = np.argsort(signal)
        assert np.all(np.diff(probability[order]) > 0)
        assert roc_auc_score(train_labels, probability) == roc_auc_score(train_labels, signal)
        assert probability.mean() == pytest.approx(flipped.mean(), abs=1e-4)


def test_the_gate_needs_the_margin_in_the_right_direction() -> None:
    assert beats("pr_auc", 0.40, 0.39, 0.005)
    assert not beats("pr_auc", 0.392, 0.39, 0.005)
    assert beats("log_loss", 0.30, 0.31, 0.005)
    assert not beats("log_loss", 0.31, 0.30, 0.0)
    assert not beats("roc_auc", float("nan"), 0.5, 0.0)
