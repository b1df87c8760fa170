"""The age curve: comeback rates by a rejection's age, point in time, applied past the
model's trained age by the one predictor every path scores with."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.age_curve import (
    PRIOR_EXPECTED,
    AgeCurve,
    AgeRate,
    age_rates,
    estimate_age_curve,
    fitted_factors,
)
from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.history import history_from_export
from features.loading import Export, load_export
from features.predictor import AGE_FEATURE, ReconversionModel
from features.synthetic import write_export
from features.timestamps import microseconds
from tests.serving.conftest import train_model
from tests.training.conftest import cut_tables
from training.age_report import without_curve

CONFIG = FeatureConfig()
AGES = (90, 180, 365, 545)


def _curve() -> AgeCurve:
    """A curve with its factors as stored: 0.4 at 180 days, 0.15 at 365 and 545."""
    return AgeCurve(
        90.0,
        AgeRate(90, 399, 39, 40.0),
        (AgeRate(180, 199, 7, 18.0), AgeRate(365, 199, 2, 15.0), AgeRate(545, 99, 1, 6.0)),
        (0.4, 0.15, 0.15),
    )


def test_the_factor_is_one_up_to_the_trained_age_and_follows_the_curve_after_it() -> None:
    curve = _curve()

    ages = np.array([0.0, 90.0, 90.99, 135.0, 180.0, 272.5, 365.0, 2000.0, np.nan])
    factors = curve.factor(ages)

    expected = [1.0, 1.0, 1.0, 0.7, 0.4, 0.275, 0.15, 0.15, 1.0]  # the last holds; NaN: 1
    np.testing.assert_allclose(factors, expected, rtol=1e-12)
    assert curve.factors_by_age() == {"180": 0.4, "365": 0.15, "545": 0.15}


def test_a_curve_survives_its_json_form() -> None:
    curve = _curve()
    again = AgeCurve.from_dict(curve.to_dict())
    assert again == curve
    assert curve.to_dict()["ages"][0] == {
        "age_days": 90,
        "examples": 399,
        "comebacks": 39,
        "expected": 40.0,
        "rate": round(39.5 / 400, 6),
    }


def test_an_age_without_comebacks_gets_a_small_rate_not_zero() -> None:
    assert AgeRate(730, 149, 0).rate == pytest.approx(0.5 / 150)


def test_factors_compare_comebacks_with_what_the_model_expected_relative_to_the_reference() -> None:
    # Given a model right at its reference age, and 5 comebacks where it expected 20 at 180
    reference = AgeRate(90, 400, 38, 38.0)
    older = [AgeRate(180, 300, 5, 20.0)]

    # Then the factor is observed over expected, shrunk towards 1 by the prior
    (factor,) = fitted_factors(reference, older)
    assert factor == pytest.approx((5 + PRIOR_EXPECTED) / (20 + PRIOR_EXPECTED))


def test_factors_never_rise_with_age_nor_pass_one() -> None:
    # Given a reference the model got right, and older ages whose observed-over-expected
    # ratios are 12/22, 5/17, 8/14 and 14/8 (a noisy rise after 270 days)
    reference = AgeRate(90, 400, 40, 40.0)
    older = [
        AgeRate(180, 300, 10, 20.0),
        AgeRate(270, 250, 3, 15.0),
        AgeRate(365, 200, 6, 12.0),
        AgeRate(545, 100, 12, 6.0),
    ]

    factors = fitted_factors(reference, older)

    # Then the rise is pooled with the ages before it, each weighted by its expected
    # comebacks and the prior (22, 17, 14, 8): isotonic regression pools all four here
    assert factors == pytest.approx((39 / 61,) * 4, rel=1e-9)
    # And a ratio above the reference's is cut to 1: the curve never raises a score
    assert fitted_factors(reference, [AgeRate(180, 300, 30, 20.0)]) == (1.0,)
    assert all(a >= b for a, b in itertools.pairwise(fitted_factors(reference, older[:2])))


@pytest.fixture(scope="module")
def export_cut(
    small_export: Export, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, Export, Export]:
    """A moment a year before the small export's snapshot, the export itself, and the same
    export as it stood at that moment."""
    cut = small_export.snapshot_at - pd.Timedelta(days=365)
    folder = tmp_path_factory.mktemp("age-curve") / "cut"
    write_export(cut_tables(small_export.tables, cut), folder, "parquet")
    return microseconds(cut), small_export, load_export(folder)


def test_rates_use_nothing_after_the_cut(
    export_cut: tuple[int, Export, Export], plain: ReconversionModel
) -> None:
    cut_us, whole, as_it_stood = export_cut
    predict = plain.predict_examples
    from_whole = age_rates(history_from_export(whole, CONFIG), CONFIG, cut_us, AGES, predict)
    from_cut = age_rates(history_from_export(as_it_stood, CONFIG), CONFIG, cut_us, AGES, predict)

    assert [(r.age_days, r.examples, r.comebacks) for r in from_whole] == [
        (r.age_days, r.examples, r.comebacks) for r in from_cut
    ]
    np.testing.assert_allclose(
        [r.expected for r in from_whole], [r.expected for r in from_cut], rtol=1e-9
    )
    assert all(rate.examples > 0 and rate.expected > 0 for rate in from_whole)


def test_rates_count_open_rejections_whose_whole_horizon_is_seen(
    export_cut: tuple[int, Export, Export],
) -> None:
    cut_us, whole, _ = export_cut
    rates = age_rates(history_from_export(whole, CONFIG), CONFIG, cut_us, AGES)

    expected = [_rate_by_hand(whole, cut_us, age) for age in AGES]
    assert [(r.age_days, r.examples, r.comebacks) for r in rates] == expected


def _rate_by_hand(export: Export, cut_us: int, age: int) -> tuple[int, int, int]:
    """The same count from the tables with pandas: each rejection still open ``age`` days
    after it (no opportunity of the lead since, no later rejection of the lead), scored and
    labelled by the cut, and whether the lead had an opportunity within the horizon."""
    rejections = export.tables["rejections"]
    opportunities = export.tables["opportunities"]
    cut = pd.Timestamp(cut_us, unit="us", tz="UTC")
    horizon = pd.Timedelta(days=CONFIG.horizon_days)
    examples = comebacks = 0
    created = opportunities.groupby("lead_id")["created_at"].apply(list).to_dict()
    rejected = rejections.groupby("lead_id")["rejected_at"].apply(list).to_dict()
    for lead, rejected_at in zip(rejections["lead_id"], rejections["rejected_at"], strict=True):
        as_of = rejected_at + pd.Timedelta(days=age)
        if as_of + horizon > cut:
            continue
        opened = created.get(lead, [])
        if any(rejected_at < t <= as_of for t in opened):
            continue
        if any(rejected_at < t <= as_of for t in rejected[lead]):
            continue
        examples += 1
        comebacks += any(as_of < t <= as_of + horizon for t in opened)
    return age, examples, comebacks


def test_a_curve_needs_enough_examples_at_the_reference_and_at_an_older_age(
    export_cut: tuple[int, Export, Export], plain: ReconversionModel
) -> None:
    cut_us, whole, _ = export_cut
    history = history_from_export(whole, CONFIG)
    predict = plain.predict_examples
    rates = age_rates(history, CONFIG, cut_us, AGES, predict)
    enough = min(r.examples for r in rates[:2])

    curve = estimate_age_curve(history, CONFIG, cut_us, 90.0, AGES[1:], enough, predict)
    assert curve is not None
    assert curve.reference == rates[0]
    assert curve.rates[0] == rates[1]
    assert all(r.examples >= enough for r in curve.rates)
    assert curve.factors == fitted_factors(rates[0], curve.rates)
    assert estimate_age_curve(history, CONFIG, cut_us, 90.0, AGES[1:], 10**6, predict) is None


@pytest.fixture(scope="module")
def examples(small_export: Export) -> ExampleSet:
    """The small export's uncensored examples, re-scored up to two years after rejection."""
    config = CONFIG.model_copy(update={"rescore_offsets_days": (0, 30, 90, 91, 180, 365, 730)})
    return uncensored(build_training_set(small_export, config))


def _plain_and_curved(examples: ExampleSet) -> tuple[ReconversionModel, ReconversionModel]:
    """A model trained on re-scores up to 90 days without an age curve, and with one."""
    plain = without_curve(train_model(examples.take(examples.keys["offset_days"].to_numpy() <= 90)))
    curve = _curve().to_dict()
    return plain, dataclasses.replace(plain, metadata={**plain.metadata, "age_curve": curve})


@pytest.fixture(scope="module")
def plain(examples: ExampleSet) -> ReconversionModel:
    """A model trained on re-scores up to 90 days, without an age curve."""
    return _plain_and_curved(examples)[0]


def test_the_model_multiplies_old_rejections_probabilities_by_their_factor(
    examples: ExampleSet,
) -> None:
    # Given a model with an age curve and the same model without one
    plain, curved = _plain_and_curved(examples)
    matrix = plain.matrix(examples.features)
    age = examples.features.columns[AGE_FEATURE]
    factor = _curve().factor(age)
    assert set(np.unique(age)) == {0.0, 30.0, 90.0, 91.0, 180.0, 365.0, 730.0}

    # Then every probability is the plain one times its age's factor (1 up to 90 days)
    np.testing.assert_allclose(
        curved.predict_matrix(matrix), plain.predict_matrix(matrix) * factor, rtol=1e-12
    )
    assert np.all(factor[age <= 90] == 1.0)
    assert np.all(factor[(age > 90) & (age <= 365)] < 1.0)
    # And the age feature's contribution carries the factor's shift in log-odds
    shift = curved.contributions(matrix) - plain.contributions(matrix)
    column = plain.feature_names.index(AGE_FEATURE)
    np.testing.assert_allclose(shift[:, column], np.log(factor), rtol=1e-12, atol=1e-12)
    assert not np.delete(shift, column, axis=1).any()


def test_a_saved_model_keeps_its_curve(examples: ExampleSet, tmp_path: Path) -> None:
    plain, curved = _plain_and_curved(examples)

    loaded = ReconversionModel.load(curved.save(tmp_path / "model"))

    assert loaded.age_curve == _curve()
    matrix = plain.matrix(examples.features)
    np.testing.assert_array_equal(loaded.predict_matrix(matrix), curved.predict_matrix(matrix))
