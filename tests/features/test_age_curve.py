"""The age curve: comeback rates by a rejection's age, point in time, applied past the
model's trained age by the one predictor every path scores with."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features import age_curve
from features.age_curve import (
    HAZARD_RATIO_RANGE,
    MIN_CHECK_COMEBACKS,
    MIN_TIMING_COMEBACKS,
    PRIOR_EXPECTED,
    WHOLE_HORIZONS_ONLY,
    AgeCurve,
    AgeRate,
    ComebackTiming,
    age_rates,
    estimate_age_curve,
    fitted_factors,
    hazard_ratio_for,
    horizons_seen,
    partly_seen_timing,
    timing_check,
)
from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.examples import Examples, training_examples
from features.history import DAY_US, History, history_from_export
from features.loading import Export, load_export
from features.predictor import AGE_FEATURE, ReconversionModel
from features.synthetic import write_export
from features.timestamps import microseconds
from tests.serving.conftest import train_model
from tests.training.conftest import cut_tables
from training.age_report import partly_seen_note, without_curve

CONFIG = FeatureConfig()
AGES = (90, 180, 365, 545)
#: Partly seen horizons count from this many days seen (the training default).
WINDOW = 90


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
        "partly_seen": 0,
        "partly_seen_exposure": 0.0,
        "rate": round(39.5 / 400, 6),
    }


def test_a_curve_stored_before_partly_seen_horizons_counted_still_loads() -> None:
    stored = _curve().to_dict()
    del stored["partly_seen"]
    for age in stored["ages"]:
        del age["partly_seen"], age["partly_seen_exposure"]

    assert AgeCurve.from_dict(stored) == _curve()


def test_a_partly_seen_example_counts_for_its_share_of_a_horizon() -> None:
    # Given 100 examples of which 40 were seen for part of their horizon, worth 10 horizons
    rate = AgeRate(365, 100, 3, 5.0, partly_seen=40, partly_seen_exposure=10.0)

    # Then the rate divides by 60 + 10 horizons
    assert rate.exposure == 70.0
    assert rate.rate == pytest.approx(3.5 / 71)
    assert AgeRate(365, 100, 3).exposure == 100


def test_comeback_timing_gives_the_share_of_comebacks_within_a_window() -> None:
    timing = ComebackTiming(np.array([10.0, 20.0, 30.0, 40.0]))

    shares = timing.share(np.array([5.0, 10.0, 25.0, 40.0, 365.0]))

    np.testing.assert_array_equal(shares, [0.0, 0.25, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least one comeback"):
        ComebackTiming(np.array([]))


def test_a_hazard_ratio_makes_comebacks_come_faster_or_slower() -> None:
    days = np.array([10.0, 20.0, 30.0, 40.0])

    # Half the comebacks by day 25: twice the hazard leaves a quarter after it, half leaves
    # the square root of a half
    shares = [ComebackTiming(days, k).share(np.array([25.0]))[0] for k in (1.0, 2.0, 0.5)]
    assert shares == pytest.approx([0.5, 0.75, 1 - 0.5**0.5], rel=1e-12)
    # And a share of 0 or 1 stays so
    np.testing.assert_array_equal(ComebackTiming(days, 3.0).share(np.array([5.0, 40.0])), [0, 1])


def test_the_hazard_ratio_makes_the_timing_expect_what_was_seen() -> None:
    # Two comebacks each half expected within their days: 1 seen needs no change, 1.5 twice
    # the hazard
    halves = np.array([0.5, 0.5])
    assert hazard_ratio_for(halves, 1) == pytest.approx(1.0, abs=1e-9)
    ratio = hazard_ratio_for(np.array([0.5, 0.5, 0.5, 0.5]), 3)
    assert ratio == pytest.approx(2.0, abs=1e-9)
    # A count no ratio in the range reaches has none
    low, high = HAZARD_RATIO_RANGE
    assert hazard_ratio_for(halves, 0) is None
    assert hazard_ratio_for(halves, 2) is None
    assert hazard_ratio_for(np.array([]), 0) is None
    assert low < 1.0 < high


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


@pytest.mark.parametrize("window", [None, WINDOW], ids=["whole-horizons", "partly-seen-too"])
def test_rates_use_nothing_after_the_cut(
    export_cut: tuple[int, Export, Export], plain: ReconversionModel, window: int | None
) -> None:
    cut_us, whole, as_it_stood = export_cut
    predict = plain.predict_examples
    history, history_as_it_stood = (history_from_export(e, CONFIG) for e in (whole, as_it_stood))
    partly = partly_seen_timing(history, CONFIG, cut_us, AGES, window)
    partly_as_it_stood = partly_seen_timing(history_as_it_stood, CONFIG, cut_us, AGES, window)
    from_whole = age_rates(history, CONFIG, cut_us, AGES, predict=predict, partly=partly)
    from_cut = age_rates(
        history_as_it_stood, CONFIG, cut_us, AGES, predict=predict, partly=partly_as_it_stood
    )

    assert partly.to_dict() == partly_as_it_stood.to_dict()
    assert [(r.age_days, r.examples, r.comebacks, r.partly_seen) for r in from_whole] == [
        (r.age_days, r.examples, r.comebacks, r.partly_seen) for r in from_cut
    ]
    for field in ("expected", "partly_seen_exposure"):
        np.testing.assert_allclose(
            [getattr(r, field) for r in from_whole],
            [getattr(r, field) for r in from_cut],
            rtol=1e-9,
        )
    assert all(rate.examples > 0 and rate.expected > 0 for rate in from_whole)
    assert all(rate.partly_seen > 0 for rate in from_whole) == (window is not None)
    assert (partly.check is not None and partly.check.comebacks > 0) == (window is not None)


def test_what_a_partly_seen_horizon_shows_uses_nothing_after_the_cut_example_by_example(
    small_export: Export, tmp_path: Path
) -> None:
    # Given a cut an hour before a comeback of a lead whose horizon is partly seen then
    cut = _an_hour_before_a_partly_seen_comeback(small_export)
    folder = tmp_path / "cut"
    write_export(cut_tables(small_export.tables, cut), folder, "parquet")

    # Then the whole export and the export as it stood then show the same of every example
    cut_us = microseconds(cut)
    whole, as_it_stood = (_seen_by_example(e, cut_us) for e in (small_export, load_export(folder)))
    pd.testing.assert_frame_equal(whole, as_it_stood)
    assert whole["partly_seen"].any()


def _an_hour_before_a_partly_seen_comeback(export: Export) -> pd.Timestamp:
    """An hour before the first opportunity, later than a year before the snapshot, of a lead
    whose horizon is partly seen (for at least WINDOW days) an hour before it: a leak of an
    hour past the cut would change what that example shows."""
    start = export.snapshot_at - pd.Timedelta(days=365)
    history = history_from_export(export, CONFIG)
    opportunities = export.tables["opportunities"].sort_values("created_at")
    later = opportunities[opportunities["created_at"] > start]
    for lead, created in zip(later["lead_id"], later["created_at"], strict=True):
        cut = created - pd.Timedelta(hours=1)
        seen = _seen_by_example(export, microseconds(cut), history)
        of_lead = seen.index.get_level_values("lead_id") == lead
        if seen["partly_seen"][of_lead].any():
            return cut
    raise AssertionError("no lead comes back after a horizon partly seen")


def _seen_by_example(export: Export, cut_us: int, history: History | None = None) -> pd.DataFrame:
    """``horizons_seen`` at ``cut_us``, one row per example, indexed by lead, rejection time
    and age."""
    history = history or history_from_export(export, CONFIG)
    at_ages = CONFIG.model_copy(update={"rescore_offsets_days": AGES})
    examples = training_examples(history, at_ages, cut_us)
    partly = partly_seen_timing(history, CONFIG, cut_us, AGES, WINDOW)
    seen = horizons_seen(history, examples, CONFIG, cut_us, partly)
    rows = examples.rejection_row
    index = pd.MultiIndex.from_arrays(
        [
            history.lead_id[history.rejections.lead[rows]],
            history.rejections.time[rows],
            examples.offset_days,
        ],
        names=["lead_id", "rejected_at", "age"],
    )
    columns = dataclasses.asdict(seen)
    return pd.DataFrame(columns, index=index).sort_index()


@pytest.mark.parametrize("window", [None, WINDOW], ids=["whole-horizons", "partly-seen-too"])
def test_rates_count_open_rejections_whose_horizon_is_seen(
    export_cut: tuple[int, Export, Export], window: int | None
) -> None:
    cut_us, whole, _ = export_cut
    a_tenth = _constant_probability(0.1)
    history = history_from_export(whole, CONFIG)
    partly = partly_seen_timing(history, CONFIG, cut_us, AGES, window)
    rates = age_rates(history, CONFIG, cut_us, AGES, predict=a_tenth, partly=partly)

    ratio = 1.0 if partly.timing is None else partly.timing.hazard_ratio
    by_hand = _rates_by_hand(whole, cut_us, window, ratio)
    assert [(r.age_days, r.examples, r.comebacks, r.partly_seen) for r in rates] == [
        (age, n, c, partly) for age, (n, c, partly, _) in by_hand.items()
    ]
    # The model is expected its probability times the share of the horizon seen
    exposures = [r.examples - r.partly_seen + r.partly_seen_exposure for r in rates]
    np.testing.assert_allclose(
        [r.partly_seen_exposure for r in rates], [e for *_, e in by_hand.values()], rtol=1e-9
    )
    np.testing.assert_allclose([r.expected for r in rates], np.multiply(exposures, 0.1))


def _constant_probability(p: float) -> Callable[[History, Examples], np.ndarray]:
    return lambda _history, examples: np.full(len(examples), p)


def _rates_by_hand(
    export: Export, cut_us: int, window: int | None, hazard_ratio: float
) -> dict[int, tuple[int, int, int, float]]:
    """The same counts from the tables with pandas, per age: examples, comebacks, partly seen
    examples and their summed shares. An example is a rejection still open ``age`` days after
    it (no opportunity of the lead since, no later rejection of the lead) and scored by the
    cut; it counts when its horizon ends by the cut or, with ``window``, when that many days
    of it are seen, and it came back when the lead had an opportunity within the horizon (by
    the cut). A partly seen example's share is that of the whole horizons' comebacks (of
    every age) that came within the days it saw, ``F``, made ``1 - (1 - F) ** hazard_ratio``."""
    rejections = export.tables["rejections"]
    opportunities = export.tables["opportunities"]
    cut = pd.Timestamp(cut_us, unit="us", tz="UTC")
    horizon = pd.Timedelta(days=CONFIG.horizon_days)
    created = opportunities.groupby("lead_id")["created_at"].apply(list).to_dict()
    rejected = rejections.groupby("lead_id")["rejected_at"].apply(list).to_dict()
    whole_days: list[float] = []
    seen: dict[int, list[tuple[bool, bool, float]]] = {age: [] for age in AGES}
    for lead, rejected_at in zip(rejections["lead_id"], rejections["rejected_at"], strict=True):
        opened = created.get(lead, [])
        for age in AGES:
            as_of = rejected_at + pd.Timedelta(days=age)
            if as_of > cut or any(rejected_at < t <= as_of for t in [*opened, *rejected[lead]]):
                continue
            end = min(as_of + horizon, cut)
            days = [(t - as_of) / pd.Timedelta(days=1) for t in opened if as_of < t <= end]
            partly = as_of + horizon > cut
            window_days = (cut - as_of) / pd.Timedelta(days=1)
            if partly and (window is None or window_days < window):
                continue
            if not partly and days:
                whole_days.append(min(days))
            seen[age].append((partly, bool(days), window_days))
    assert len(whole_days) >= MIN_TIMING_COMEBACKS
    counts = {}
    for age, rows in seen.items():
        pooled = [np.mean(np.asarray(whole_days) <= w) for partly, _, w in rows if partly]
        shares = [1 - (1 - share) ** hazard_ratio for share in pooled]
        counts[age] = (len(rows), sum(c for _, c, _ in rows), len(shares), float(sum(shares)))
    return counts


def test_partly_seen_horizons_count_only_for_the_reconverted_target(
    export_cut: tuple[int, Export, Export],
) -> None:
    cut_us, whole, _ = export_cut
    history = history_from_export(whole, CONFIG)
    at_ages = CONFIG.model_copy(update={"rescore_offsets_days": AGES})
    examples = training_examples(history, at_ages, cut_us)
    won_config = CONFIG.model_copy(update={"target": "won"})

    partly = partly_seen_timing(history, CONFIG, cut_us, AGES, WINDOW)
    won = partly_seen_timing(history, won_config, cut_us, AGES, WINDOW)
    reconverted = horizons_seen(history, examples, CONFIG, cut_us, partly)
    whole_only = horizons_seen(history, examples, CONFIG, cut_us, WHOLE_HORIZONS_ONLY)

    assert won.timing is None
    assert won.reason is not None
    assert "won deadline" in won.reason
    assert partly.timing is not None
    assert reconverted.partly_seen.any()
    assert not whole_only.partly_seen.any()
    counted_wholly = reconverted.counted & ~reconverted.partly_seen
    np.testing.assert_array_equal(counted_wholly, whole_only.counted)
    assert np.all(reconverted.comeback_share[whole_only.counted] == 1.0)
    shares = reconverted.comeback_share[reconverted.partly_seen]
    assert np.all((shares > 0) & (shares <= 1))


def test_partly_seen_horizons_need_enough_whole_horizon_comebacks_for_their_timing(
    export_cut: tuple[int, Export, Export],
) -> None:
    # Given a cut so early that fewer than MIN_TIMING_COMEBACKS whole horizons came back,
    # while many examples have seen 90 days or more of theirs
    _, whole, _ = export_cut
    history = history_from_export(whole, CONFIG)
    first_rejection = int(history.rejections.time.min())
    early = first_rejection + (CONFIG.horizon_days + WINDOW + 200) * DAY_US
    at_ages = CONFIG.model_copy(update={"rescore_offsets_days": AGES})
    examples = training_examples(history, at_ages, early)
    whole_only = horizons_seen(history, examples, CONFIG, early)
    assert 0 < int(np.sum(whole_only.came_back)) < MIN_TIMING_COMEBACKS
    seen_days = (early - examples.as_of[~whole_only.counted]) / DAY_US
    assert np.sum(seen_days >= WINDOW) > 100

    # Then only whole horizons count: there is no timing to expect the others by
    partly = partly_seen_timing(history, CONFIG, early, AGES, WINDOW)
    assert partly.timing is None
    assert partly.reason is not None
    assert f"fewer than {MIN_TIMING_COMEBACKS}" in partly.reason
    assert not horizons_seen(history, examples, CONFIG, early, partly).partly_seen.any()


def test_the_timing_is_fitted_to_horizons_partly_seen_a_year_before_the_cut(
    export_cut: tuple[int, Export, Export], monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_us, whole, _ = export_cut
    history = history_from_export(whole, CONFIG)
    at_ages = CONFIG.model_copy(update={"rescore_offsets_days": AGES})
    partly = partly_seen_timing(history, CONFIG, cut_us, AGES, WINDOW)
    assert partly.timing is not None
    assert partly.check is not None
    assert partly.check.hazard_ratio == partly.timing.hazard_ratio
    assert partly.check.comebacks >= MIN_CHECK_COMEBACKS

    # Its comebacks are those of horizons partly seen a year before the cut, counted by hand
    assert (partly.check.comebacks, partly.check.seen) == _check_by_hand(whole, cut_us)

    # The fitted timing expects, a year before the cut, the comebacks seen there
    again = timing_check(history, at_ages, cut_us, WINDOW, partly.timing)
    assert (again.comebacks, again.seen) == (partly.check.comebacks, partly.check.seen)
    assert again.pooled_expected == pytest.approx(partly.check.seen, abs=1e-6)
    assert again.hazard_ratio == pytest.approx(1.0, abs=1e-6)

    # A timing that puts every comeback on the first day expects all of them within the days
    # seen; some came later, and no hazard ratio can make it expect fewer
    first_day = timing_check(history, at_ages, cut_us, WINDOW, ComebackTiming(np.array([1.0])))
    assert first_day.pooled_expected == first_day.comebacks == partly.check.comebacks
    assert first_day.seen == partly.check.seen < first_day.comebacks
    assert first_day.hazard_ratio is None

    # And without a fitting ratio, or with too few comebacks, partly seen horizons are left
    # out, saying why
    fitted = partly.check.hazard_ratio
    assert fitted is not None
    monkeypatch.setattr(age_curve, "HAZARD_RATIO_RANGE", (2 * fitted, 4 * fitted))
    no_ratio = partly_seen_timing(history, CONFIG, cut_us, AGES, WINDOW)
    monkeypatch.undo()
    monkeypatch.setattr(age_curve, "MIN_CHECK_COMEBACKS", partly.check.comebacks + 1)
    too_few = partly_seen_timing(history, CONFIG, cut_us, AGES, WINDOW)
    for refused, why in ((no_ratio, "no hazard ratio"), (too_few, "fewer than")):
        assert refused.timing is None
        assert refused.reason is not None
        assert why in refused.reason
        assert refused.to_dict()["counted"] is False


def _check_by_hand(export: Export, cut_us: int) -> tuple[int, int]:
    """``TimingCheck``'s counts from the tables with pandas: the rejections still open at
    each age a year before the cut whose horizon was seen for WINDOW days or more then, but
    not wholly; how many of their leads had an opportunity within the horizon, and how many
    of those by a year before the cut."""
    rejections = export.tables["rejections"]
    created = export.tables["opportunities"].groupby("lead_id")["created_at"].apply(list)
    rejected = rejections.groupby("lead_id")["rejected_at"].apply(list).to_dict()
    then = pd.Timestamp(cut_us, unit="us", tz="UTC") - pd.Timedelta(days=365)
    horizon = pd.Timedelta(days=CONFIG.horizon_days)
    comebacks = seen = 0
    for lead, rejected_at in zip(rejections["lead_id"], rejections["rejected_at"], strict=True):
        opened = created.get(lead, [])
        for age in AGES:
            as_of = rejected_at + pd.Timedelta(days=age)
            if not then - horizon < as_of <= then - pd.Timedelta(days=WINDOW):
                continue
            if any(rejected_at < t <= as_of for t in [*opened, *rejected[lead]]):
                continue
            came = [t for t in opened if as_of < t <= as_of + horizon]
            comebacks += bool(came)
            seen += any(t <= then for t in came)
    return comebacks, seen


def test_a_curve_needs_enough_examples_at_the_reference_and_at_an_older_age(
    export_cut: tuple[int, Export, Export], plain: ReconversionModel
) -> None:
    cut_us, whole, _ = export_cut
    history = history_from_export(whole, CONFIG)
    predict = plain.predict_examples
    partly = partly_seen_timing(history, CONFIG, cut_us, AGES, WINDOW)
    rates = age_rates(history, CONFIG, cut_us, AGES, predict=predict, partly=partly)
    enough = math.floor(min(r.exposure for r in rates[:2]))

    curve = estimate_age_curve(
        history, CONFIG, cut_us, 90.0, AGES[1:], enough, predict, min_window_days=WINDOW
    )
    assert curve is not None
    assert curve.reference == rates[0]
    assert curve.rates[0] == rates[1]
    assert all(r.exposure >= enough for r in curve.rates)
    assert curve.factors == fitted_factors(rates[0], curve.rates)
    assert curve.partly_seen == partly.to_dict()
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


def test_the_report_says_whether_partly_seen_horizons_counted(examples: ExampleSet) -> None:
    plain, curved = _plain_and_curved(examples)
    counted = {
        "counted": True,
        "min_window_days": 90,
        "check": {"comebacks": 21, "seen": 13, "pooled_expected": 16.425, "hazard_ratio": 0.579},
        "reason": None,
    }
    refused = {**counted, "counted": False, "check": None, "reason": "7 whole horizons came back"}

    def noted(partly_seen: dict[str, Any]) -> str:
        stored = {**_curve().to_dict(), "partly_seen": partly_seen}
        return partly_seen_note(
            dataclasses.replace(curved, metadata={**curved.metadata, "age_curve": stored})
        )

    assert partly_seen_note(plain) == "no age curve"
    assert partly_seen_note(curved).startswith("whole horizons only (the curve was fitted before")
    assert noted(counted) == (
        "horizons seen for 90 days or more count; a year before the test window 13 of 21 "
        "comebacks fell within the days seen where the pooled timing expected 16.4: hazard "
        "ratio 0.58"
    )
    assert noted(refused) == "whole horizons only: 7 whole horizons came back"
