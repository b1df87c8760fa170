"""How comebacks fall with a rejection's age, past the ages a model was fitted on.

A model is trained and calibrated on rejections up to ``trained_age_days`` old (90 days on
a four-year export: the windows and the no-lead-on-both-sides rule bound it), yet the
batch job scores every open rejection, and most are older. The booster cannot learn what it
never saw: it scores a two-year-old rejection like a 180-day-old one, several times too
high. Their outcomes are known, though: rejections re-scored at 365 or 730 days before the
model's test window. At each such age ``AgeCurve`` compares how many came back with how
many the model expected (the sum of its probabilities), relative to the same comparison at
the reference age (the oldest the model was fitted on), shrunk towards 1 where comebacks
are few and made non-increasing with age; a probability past the reference age is the
calibrated one times the factor of its age (``ReconversionModel.predict_matrix``).

Every rate is point in time: examples are scored at or before ``cut_us`` and read with
nothing after it. An example whose whole horizon ends by then counts as the training
examples do. One whose horizon is only partly seen (at least ``min_window_days`` of it)
counts too, for what was seen: a comeback by the cut is a comeback, and the model is
expected only the share of its probability that falls in the days seen. That share is
``ComebackTiming``'s: how the comebacks of the fully seen examples spread over their
horizon. Partly seen horizons take the curve to ages whose whole horizons ended too recently
to count: on a four-year export, from about 270 days to about 545.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples, training_examples
from features.history import DAY_US, History
from features.labels import Labels, label_examples, reconverted_by

#: A rate is (comebacks + PRIOR_COMEBACKS) / (examples + PRIOR_EXAMPLES): an age with no
#: comeback among its examples gets a small rate, never zero.
PRIOR_COMEBACKS = 0.5
PRIOR_EXAMPLES = 1.0
#: Observed over expected is (comebacks + PRIOR_EXPECTED) / (expected + PRIOR_EXPECTED): as
#: if every age had also seen this many comebacks where as many were expected, so an age
#: with few comebacks stays near 1 (no change) rather than swinging on one or two of them.
PRIOR_EXPECTED = 2.0
#: Partly seen horizons count only when at least this many fully seen examples came back:
#: their days to the comeback are the timing the partly seen ones are expected by.
MIN_TIMING_COMEBACKS = 20


@dataclass(frozen=True)
class AgeRate:
    """What rejections re-scored ``age_days`` after they were made did.

    Attributes:
        age_days: days from the rejection to the scoring moment.
        examples: examples at that age whose horizon is seen, wholly or partly.
        comebacks: how many of them came back within the horizon (by the cut, for a partly
            seen one).
        expected: how many the model expected: the sum of its probabilities (without a
            curve), each times the share of the horizon's comebacks that falls in the days
            seen (1 for a whole horizon); 0 when no model was given.
        partly_observed: how many of ``examples`` had only part of their horizon seen.
        partial_exposure: the sum of those examples' shares.
    """

    age_days: int
    examples: int
    comebacks: int
    expected: float = 0.0
    partly_observed: int = 0
    partial_exposure: float = 0.0

    @property
    def exposure(self) -> float:
        """The examples as whole horizons: each partly seen one counts for its share."""
        return self.examples - self.partly_observed + self.partial_exposure

    @property
    def rate(self) -> float:
        """The smoothed share of those examples that came back within the horizon."""
        return (self.comebacks + PRIOR_COMEBACKS) / (self.exposure + PRIOR_EXAMPLES)

    @property
    def observed_over_expected(self) -> float:
        """Comebacks over the model's expected comebacks, shrunk towards 1."""
        return (self.comebacks + PRIOR_EXPECTED) / (self.expected + PRIOR_EXPECTED)


@dataclass(frozen=True)
class AgeCurve:
    """Factors for probabilities of rejections older than ``reference_age_days``.

    Attributes:
        reference_age_days: the oldest age the model was trained and calibrated on; at or
            below it (in whole days) the factor is 1.
        reference: what rejections of that age did.
        rates: what older ones did, ascending by age, each from enough examples.
        factors: each older age's factor (``fitted_factors``), in (0, 1].
    """

    reference_age_days: float
    reference: AgeRate
    rates: tuple[AgeRate, ...]
    factors: tuple[float, ...]

    def factor(self, age_days: np.ndarray) -> np.ndarray:
        """The factor of each age (days from the rejection to ``as_of``).

        1 up to the reference age in whole days (``ReconversionModel.beyond_trained_age``
        is False there); between the ages with rates, linear in age from the reference (1)
        through each older age's factor; past the last, that last factor. A missing age
        gets 1.
        """
        age = np.asarray(age_days, dtype=np.float64)
        knots, values = self._interpolation
        # A missing age compares False (factor 1), and interpolates to NaN, never taken.
        return np.where(np.floor(age) > self.reference_age_days, np.interp(age, knots, values), 1.0)

    @functools.cached_property
    def _interpolation(self) -> tuple[np.ndarray, np.ndarray]:
        """The ages and factors ``factor`` interpolates between, from the reference on."""
        ages = [self.reference_age_days, *(float(r.age_days) for r in self.rates)]
        return np.asarray(ages), np.asarray([1.0, *self.factors])

    def factors_by_age(self) -> dict[str, float]:
        """Each older age's factor, keyed by its days as text (as JSON keys are)."""
        pairs = zip(self.rates, self.factors, strict=True)
        return {str(rate.age_days): round(float(factor), 6) for rate, factor in pairs}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored in the model's metadata as ``age_curve``)."""
        return {
            "reference_age_days": self.reference_age_days,
            "ages": [_rate_dict(r) for r in (self.reference, *self.rates)],
            "factors": [float(f) for f in self.factors],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> AgeCurve:
        """The inverse of ``to_dict``."""
        reference, *older = (_rate_from_dict(a) for a in data["ages"])
        factors = tuple(float(f) for f in data["factors"])
        return AgeCurve(float(data["reference_age_days"]), reference, tuple(older), factors)


def fitted_factors(reference: AgeRate, older: Sequence[AgeRate]) -> tuple[float, ...]:
    """Each older age's observed-over-expected relative to the reference age's, made
    non-increasing with age (isotonic regression, each age weighted by its expected
    comebacks and the prior) and at most 1: the curve only lowers the model's probability,
    and a noisy age cannot make an older rejection score higher than a younger one."""
    from sklearn.isotonic import IsotonicRegression

    ages = np.asarray([r.age_days for r in older], dtype=np.float64)
    relative = [r.observed_over_expected / reference.observed_over_expected for r in older]
    weights = [r.expected + PRIOR_EXPECTED for r in older]
    fit = IsotonicRegression(increasing=False).fit(ages, relative, sample_weight=weights)
    return tuple(float(f) for f in np.minimum(fit.predict(ages), 1.0))


def _rate_dict(rate: AgeRate) -> dict[str, Any]:
    return {
        "age_days": rate.age_days,
        "examples": rate.examples,
        "comebacks": rate.comebacks,
        "expected": rate.expected,
        "partly_observed": rate.partly_observed,
        "partial_exposure": rate.partial_exposure,
        "rate": round(rate.rate, 6),
    }


def _rate_from_dict(data: dict[str, Any]) -> AgeRate:
    """The inverse of ``_rate_dict``; a curve stored before partly seen horizons counted has
    none."""
    return AgeRate(
        int(data["age_days"]),
        int(data["examples"]),
        int(data["comebacks"]),
        float(data["expected"]),
        int(data.get("partly_observed", 0)),
        float(data.get("partial_exposure", 0.0)),
    )


@dataclass(frozen=True)
class ComebackTiming:
    """When, within their horizon, fully seen examples came back.

    Attributes:
        days: days from ``as_of`` to each comeback, ascending.
    """

    days: np.ndarray

    def share(self, window_days: np.ndarray) -> np.ndarray:
        """The share of comebacks that came within ``window_days`` of ``as_of``: what part
        of a horizon's comebacks a window that long sees, if timing does not change with
        age."""
        return np.searchsorted(self.days, window_days, side="right") / len(self.days)


@dataclass(frozen=True)
class Observed:
    """What the cut shows of each example's horizon.

    Attributes:
        counted: the horizon is seen wholly, or partly and long enough.
        partly: the horizon is seen only partly (a subset of ``counted``).
        share: the share of the horizon's comebacks the days seen cover (1 when whole).
        came_back: the lead came back within the horizon, by the cut.
    """

    counted: np.ndarray
    partly: np.ndarray
    share: np.ndarray
    came_back: np.ndarray


def observed_by(
    history: History,
    examples: Examples,
    config: FeatureConfig,
    cut_us: int,
    min_window_days: int | None,
) -> Observed:
    """What ``cut_us`` shows of each example's horizon (``Observed``).

    Whole horizons are labelled as for training. With ``min_window_days``, and for the
    ``reconverted`` target (a ``won`` label needs its deadline), a horizon seen for at least
    that many days counts too, with the share of comebacks ``ComebackTiming`` gives those
    days; only when at least ``MIN_TIMING_COMEBACKS`` whole horizons hold a comeback.
    """
    labels = label_examples(history, examples, config, cut_us)
    whole = ~labels.censored
    share = whole.astype(np.float64)
    came_back = np.where(whole, labels.target, 0.0) == 1.0
    nothing_partly = np.zeros(len(examples), dtype=bool)
    timing = _whole_horizon_timing(labels)
    if min_window_days is None or config.target != "reconverted" or timing is None:
        return Observed(whole, nothing_partly, share, came_back)
    window_days = (cut_us - examples.as_of) / DAY_US
    partly = labels.censored & (window_days >= min_window_days)
    share[partly] = timing.share(window_days[partly])
    came_back[partly] = reconverted_by(history, examples.take(partly), cut_us)
    return Observed(whole | partly, partly, share, came_back)


def _whole_horizon_timing(labels: Labels) -> ComebackTiming | None:
    """The timing of the comebacks of whole horizons; None when they are too few."""
    came = ~labels.censored & (labels.target == 1.0)
    days = np.sort(labels.days_to_reconversion[came])
    return ComebackTiming(days) if days.size >= MIN_TIMING_COMEBACKS else None


#: A model's calibrated probabilities for examples of a history (``predict_examples``).
Predict = Callable[[History, Examples], np.ndarray]


def age_rates(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    ages_days: Sequence[int],
    predict: Predict | None = None,
    min_window_days: int | None = None,
) -> list[AgeRate]:
    """What rejections re-scored at each age did, as known at ``cut_us``.

    Each rejection still open at ``rejected_at + age`` (and scored by ``cut_us``) is one
    example; it counts once its label is observed by ``cut_us`` (its horizon, or for the
    ``won`` target its won deadline, ends by then), with the model's own target and horizon,
    or, with ``min_window_days``, once that much of its horizon is seen (``observed_by``).
    Rows after ``cut_us`` never reach a rate: the features ``predict`` reads are those at
    each example's ``as_of``. With ``predict``, each age also sums the model's probabilities,
    each times its example's share.
    """
    ages = sorted({int(a) for a in ages_days})
    at_ages = config.model_copy(update={"rescore_offsets_days": ages})
    examples = training_examples(history, at_ages, cut_us)
    seen = observed_by(history, examples, config, cut_us, min_window_days)
    counted = seen.counted
    examples = examples.take(counted)
    share, came_back, partly = seen.share[counted], seen.came_back[counted], seen.partly[counted]
    probability = predict(history, examples) if predict is not None else np.zeros(len(examples))
    expected = probability * share
    rates = []
    for age in ages:
        chosen = examples.offset_days == age
        rates.append(
            AgeRate(
                age,
                int(chosen.sum()),
                int(np.sum(came_back[chosen])),
                float(np.sum(expected[chosen])),
                int(np.sum(partly[chosen])),
                float(np.sum(share[chosen & partly])),
            )
        )
    return rates


def estimate_age_curve(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    reference_age_days: float,
    ages_days: Sequence[int],
    min_examples: int,
    predict: Predict,
    min_window_days: int | None = None,
) -> AgeCurve | None:
    """The model's age curve from the history known at ``cut_us`` (see ``age_rates`` and
    ``fitted_factors``); ``predict`` is the model's probability without a curve.

    Ages at or below the reference are ignored, and so is every age with fewer than
    ``min_examples`` examples whose horizon is seen (wholly, or for ``min_window_days``).
    None when the reference age itself has too few, or no older age has enough (the model
    then scores old rejections as it always did).
    """
    reference_age = int(reference_age_days)
    older = [a for a in ages_days if a > reference_age]
    ages = [reference_age, *older]
    rates = age_rates(history, config, cut_us, ages, predict, min_window_days)
    reference, *rest = rates
    kept = tuple(r for r in rest if r.examples >= min_examples)
    if reference.examples < min_examples or not kept:
        return None
    return AgeCurve(float(reference_age_days), reference, kept, fitted_factors(reference, kept))
