"""How comebacks fall with a rejection's age, past the ages a model was fitted on.

A model is trained and calibrated on rejections up to ``trained_age_days`` old (90 days on
a four-year export: the windows and the no-lead-on-both-sides rule bound it), yet the
batch job scores every open rejection, and most are older. The booster cannot learn what it
never saw: it scores a two-year-old rejection like a 180-day-old one, several times too
high. Labels need no booster, though: the comeback rate of rejections re-scored at 365 or
730 days is known from the history before the model's test window, where the booster's
examples stop. ``AgeCurve`` holds those rates as factors of the rate at the reference age
(the oldest the model was fitted on); a probability past that age is the calibrated one
times the factor of its age (``ReconversionModel.predict_matrix``).

Every rate is point in time: examples are scored at or before ``cut_us`` and labelled only
when their whole horizon ends by then, exactly as the training examples are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.config import FeatureConfig
from features.examples import training_examples
from features.history import History
from features.labels import label_examples

#: A rate is (comebacks + PRIOR_COMEBACKS) / (examples + PRIOR_EXAMPLES): an age with no
#: comeback among its examples gets a small rate, never zero (a probability of zero would
#: claim a certainty no sample of a few hundred gives).
PRIOR_COMEBACKS = 0.5
PRIOR_EXAMPLES = 1.0


@dataclass(frozen=True)
class AgeRate:
    """The comeback rate of rejections re-scored ``age_days`` after they were made."""

    age_days: int
    examples: int
    comebacks: int

    @property
    def rate(self) -> float:
        """The smoothed share of those examples that came back within the horizon."""
        return (self.comebacks + PRIOR_COMEBACKS) / (self.examples + PRIOR_EXAMPLES)


@dataclass(frozen=True)
class AgeCurve:
    """Factors for probabilities of rejections older than ``reference_age_days``.

    Attributes:
        reference_age_days: the oldest age the model was trained and calibrated on; at or
            below it (in whole days) the factor is 1.
        reference: the comeback rate at that age.
        rates: the rates at older ages, ascending, each from enough examples.
    """

    reference_age_days: float
    reference: AgeRate
    rates: tuple[AgeRate, ...]

    @property
    def factors(self) -> np.ndarray:
        """Each older age's rate over the reference rate, at most 1: the curve only lowers
        the model's probability, never raises it past what the model knows."""
        ratios = [r.rate / self.reference.rate for r in self.rates]
        return np.minimum(np.asarray(ratios, dtype=np.float64), 1.0)

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
        return np.asarray(ages), np.concatenate([[1.0], self.factors])

    def factors_by_age(self) -> dict[str, float]:
        """Each older age's factor, keyed by its days as text (as JSON keys are)."""
        pairs = zip(self.rates, self.factors, strict=True)
        return {str(rate.age_days): round(float(factor), 6) for rate, factor in pairs}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored in the model's metadata as ``age_curve``)."""
        return {
            "reference_age_days": self.reference_age_days,
            "ages": [_rate_dict(r) for r in (self.reference, *self.rates)],
            "factors": [round(float(f), 6) for f in self.factors],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> AgeCurve:
        """The inverse of ``to_dict`` (``factors`` is derived, so it is not read back)."""
        reference, *older = (
            AgeRate(int(a["age_days"]), int(a["examples"]), int(a["comebacks"]))
            for a in data["ages"]
        )
        return AgeCurve(float(data["reference_age_days"]), reference, tuple(older))


def _rate_dict(rate: AgeRate) -> dict[str, Any]:
    return {
        "age_days": rate.age_days,
        "examples": rate.examples,
        "comebacks": rate.comebacks,
        "rate": round(rate.rate, 6),
    }


def age_rates(
    history: History, config: FeatureConfig, cut_us: int, ages_days: Sequence[int]
) -> list[AgeRate]:
    """The comeback rate of rejections re-scored at each age, as known at ``cut_us``.

    Each rejection still open at ``rejected_at + age`` (and scored by ``cut_us``) is one
    example; it counts once its label is observed by ``cut_us`` (its horizon, or for the
    ``won`` target its won deadline, ends by then), with the model's own target and horizon.
    Rows after ``cut_us`` never reach a rate.
    """
    ages = sorted({int(a) for a in ages_days})
    at_ages = config.model_copy(update={"rescore_offsets_days": ages})
    examples = training_examples(history, at_ages, cut_us)
    labels = label_examples(history, examples, config, cut_us)
    observed = ~labels.censored
    rates = []
    for age in ages:
        chosen = observed & (examples.offset_days == age)
        comebacks = int(np.nansum(labels.target[chosen]))
        rates.append(AgeRate(age, int(chosen.sum()), comebacks))
    return rates


def estimate_age_curve(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    reference_age_days: float,
    ages_days: Sequence[int],
    min_examples: int,
) -> AgeCurve | None:
    """The model's age curve from the history known at ``cut_us`` (see ``age_rates``).

    Ages at or below the reference are ignored, and so is every age with fewer than
    ``min_examples`` observed examples. None when the reference age itself has too few, or
    no older age has enough (the model then scores old rejections as it always did).
    """
    reference_age = int(reference_age_days)
    older = [a for a in ages_days if a > reference_age]
    rates = age_rates(history, config, cut_us, [reference_age, *older])
    reference, *rest = rates
    kept = tuple(r for r in rest if r.examples >= min_examples)
    if reference.examples < min_examples or not kept:
        return None
    return AgeCurve(float(reference_age_days), reference, kept)
