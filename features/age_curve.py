"""How comebacks fall with a rejection's age, past the ages a model was fitted on.

A model is trained and calibrated on rejections up to ``trained_age_days`` old (90 days on
a four-year export: the windows and the no-lead-on-both-sides rule bound it), yet the
batch job scores every open rejection, and most are older. The booster cannot learn what it
never saw: it scores a two-year-old rejection like a 180-day-old one, several times too
high. Their outcomes are known, though: rejections re-scored at 365 or 730 days whose horizon
ended before the model's test window. At each such age ``AgeCurve`` compares how many came
back with how many the model expected (the sum of its probabilities), relative to the same
comparison at the reference age (the oldest the model was fitted on), shrunk towards 1
where comebacks are few and made non-increasing with age; a probability past the reference
age is the calibrated one times the factor of its age (``ReconversionModel.predict_matrix``).

Every rate is point in time: examples are scored at or before ``cut_us`` and labelled only
when their whole horizon ends by then, exactly as the training examples are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples, training_examples
from features.history import History
from features.labels import label_examples

#: A rate is (comebacks + PRIOR_COMEBACKS) / (examples + PRIOR_EXAMPLES): an age with no
#: comeback among its examples gets a small rate, never zero.
PRIOR_COMEBACKS = 0.5
PRIOR_EXAMPLES = 1.0
#: Observed over expected is (comebacks + PRIOR_EXPECTED) / (expected + PRIOR_EXPECTED): as
#: if every age had also seen this many comebacks where as many were expected, so an age
#: with few comebacks stays near 1 (no change) rather than swinging on one or two of them.
PRIOR_EXPECTED = 2.0


@dataclass(frozen=True)
class AgeRate:
    """What rejections re-scored ``age_days`` after they were made did.

    Attributes:
        age_days: days from the rejection to the scoring moment.
        examples: labelled examples at that age.
        comebacks: how many of them came back within the horizon.
        expected: how many the model expected: the sum of its probabilities (without a
            curve), 0 when no model was given.
    """

    age_days: int
    examples: int
    comebacks: int
    expected: float = 0.0

    @property
    def rate(self) -> float:
        """The smoothed share of those examples that came back within the horizon."""
        return (self.comebacks + PRIOR_COMEBACKS) / (self.examples + PRIOR_EXAMPLES)

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
        reference, *older = (
            AgeRate(
                int(a["age_days"]), int(a["examples"]), int(a["comebacks"]), float(a["expected"])
            )
            for a in data["ages"]
        )
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
        "rate": round(rate.rate, 6),
    }


#: A model's calibrated probabilities for examples of a history (``predict_examples``).
Predict = Callable[[History, Examples], np.ndarray]


def age_rates(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    ages_days: Sequence[int],
    predict: Predict | None = None,
) -> list[AgeRate]:
    """What rejections re-scored at each age did, as known at ``cut_us``.

    Each rejection still open at ``rejected_at + age`` (and scored by ``cut_us``) is one
    example; it counts once its label is observed by ``cut_us`` (its horizon, or for the
    ``won`` target its won deadline, ends by then), with the model's own target and horizon.
    Rows after ``cut_us`` never reach a rate: the features ``predict`` reads are those at
    each example's ``as_of``. With ``predict``, each age also sums the model's probabilities.
    """
    ages = sorted({int(a) for a in ages_days})
    at_ages = config.model_copy(update={"rescore_offsets_days": ages})
    examples = training_examples(history, at_ages, cut_us)
    labels = label_examples(history, examples, config, cut_us)
    observed = ~labels.censored
    examples, target = examples.take(observed), labels.target[observed]
    probability = predict(history, examples) if predict is not None else np.zeros(len(examples))
    rates = []
    for age in ages:
        chosen = examples.offset_days == age
        comebacks = int(np.sum(target[chosen]))
        rates.append(AgeRate(age, int(chosen.sum()), comebacks, float(np.sum(probability[chosen]))))
    return rates


def estimate_age_curve(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    reference_age_days: float,
    ages_days: Sequence[int],
    min_examples: int,
    predict: Predict,
) -> AgeCurve | None:
    """The model's age curve from the history known at ``cut_us`` (see ``age_rates`` and
    ``fitted_factors``); ``predict`` is the model's probability without a curve.

    Ages at or below the reference are ignored, and so is every age with fewer than
    ``min_examples`` labelled examples. None when the reference age itself has too few, or
    no older age has enough (the model then scores old rejections as it always did).
    """
    reference_age = int(reference_age_days)
    older = [a for a in ages_days if a > reference_age]
    rates = age_rates(history, config, cut_us, [reference_age, *older], predict)
    reference, *rest = rates
    kept = tuple(r for r in rest if r.examples >= min_examples)
    if reference.examples < min_examples or not kept:
        return None
    return AgeCurve(float(reference_age_days), reference, kept, fitted_factors(reference, kept))
