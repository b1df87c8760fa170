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
``ComebackTiming``'s: how the comebacks of the wholly seen examples spread over their
horizon, made as fast or as slow as the comebacks that horizons partly seen a year before
the cut, at the same time of year, caught in their days (``TimingCheck``, a hazard ratio).
It still assumes that the spread does not depend on the rejection's age. Partly seen
horizons take the curve to ages whose whole horizons ended too recently to count: on a
four-year export, from about 270 days to about 455 or 545.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples, training_examples
from features.history import DAY_US, History
from features.labels import label_examples, reconverted_by

#: A rate is (comebacks + PRIOR_COMEBACKS) / (exposure + PRIOR_EXAMPLES), the exposure
#: being the examples as whole horizons: an age with no comeback gets a small rate, never 0.
PRIOR_COMEBACKS = 0.5
PRIOR_EXAMPLES = 1.0
#: Observed over expected is (comebacks + PRIOR_EXPECTED) / (expected + PRIOR_EXPECTED): as
#: if every age had also seen this many comebacks where as many were expected, so an age
#: with few comebacks stays near 1 (no change) rather than swinging on one or two of them.
PRIOR_EXPECTED = 2.0
#: Partly seen horizons count only when at least this many wholly seen examples came back:
#: their days to the comeback are the timing the partly seen ones are expected by.
MIN_TIMING_COMEBACKS = 20
#: ... and when at least this many horizons partly seen a year before the cut came back:
#: what they caught in their days sets the timing's hazard ratio.
MIN_CHECK_COMEBACKS = 10
#: The hazard ratios a timing may be given; a year that needs one outside is too unlike the
#: pooled timing to expect partly seen horizons by it.
HAZARD_RATIO_RANGE = (0.25, 4.0)


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
        partly_seen: how many of ``examples`` had only part of their horizon seen.
        partly_seen_exposure: those examples as whole horizons: the sum of their shares.
    """

    age_days: int
    examples: int
    comebacks: int
    expected: float = 0.0
    partly_seen: int = 0
    partly_seen_exposure: float = 0.0

    @property
    def exposure(self) -> float:
        """The examples as whole horizons: each partly seen one counts for its share."""
        return self.examples - self.partly_seen + self.partly_seen_exposure

    @property
    def rate(self) -> float:
        """The smoothed comebacks per whole horizon."""
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
        partly_seen: what was done with partly seen horizons (``PartlySeenTiming.to_dict``);
            None for a curve stored before they counted.
    """

    reference_age_days: float
    reference: AgeRate
    rates: tuple[AgeRate, ...]
    factors: tuple[float, ...]
    partly_seen: dict[str, Any] | None = None

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
            "partly_seen": self.partly_seen,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> AgeCurve:
        """The inverse of ``to_dict``."""
        reference, *older = (_rate_from_dict(a) for a in data["ages"])
        factors = tuple(float(f) for f in data["factors"])
        reference_age = float(data["reference_age_days"])
        return AgeCurve(reference_age, reference, tuple(older), factors, data.get("partly_seen"))


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
        "partly_seen": rate.partly_seen,
        "partly_seen_exposure": rate.partly_seen_exposure,
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
        int(data.get("partly_seen", 0)),
        float(data.get("partly_seen_exposure", 0.0)),
    )


@dataclass(frozen=True)
class ComebackTiming:
    """When, within their horizon, wholly seen examples came back.

    Attributes:
        days: days from ``as_of`` to each comeback, ascending (at least one).
        hazard_ratio: how much faster (above 1) or slower comebacks come than ``days``
            say: a share ``F`` becomes ``1 - (1 - F) ** hazard_ratio``.
    """

    days: np.ndarray
    hazard_ratio: float = 1.0

    def __post_init__(self) -> None:
        if len(self.days) == 0:
            raise ValueError("a comeback timing needs at least one comeback")

    def share(self, window_days: np.ndarray) -> np.ndarray:
        """The share of a horizon's comebacks that a window of ``window_days`` from
        ``as_of`` holds, if timing is the same for every example."""
        pooled = np.searchsorted(self.days, window_days, side="right") / len(self.days)
        return 1.0 - (1.0 - pooled) ** self.hazard_ratio


@dataclass(frozen=True)
class TimingCheck:
    """The timing against horizons partly seen a year before the cut (for at least the
    minimum window), which the cut shows whole: of those that came back, how many came back
    within the days seen then.

    Attributes:
        comebacks: how many of those horizons held a comeback.
        seen: how many of the comebacks fell within the days seen then.
        pooled_expected: how many the timing without a hazard ratio expected there.
        hazard_ratio: the ratio that makes the timing expect ``seen`` (None when no ratio
            in ``HAZARD_RATIO_RANGE`` does, or there were no comebacks).
    """

    comebacks: int
    seen: int
    pooled_expected: float
    hazard_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        ratio = None if self.hazard_ratio is None else round(self.hazard_ratio, 6)
        return {
            "comebacks": self.comebacks,
            "seen": self.seen,
            "pooled_expected": round(self.pooled_expected, 6),
            "hazard_ratio": ratio,
        }


@dataclass(frozen=True)
class PartlySeenTiming:
    """Whether partly seen horizons count, and the timing they are expected by.

    Attributes:
        min_window_days: the fewest days of a horizon a partly seen example must show.
        timing: the comeback timing of whole horizons, with the check's hazard ratio; None
            when partly seen horizons do not count.
        check: the timing's check a year before the cut (None when not made).
        reason: why partly seen horizons do not count (None when they do).
    """

    min_window_days: int | None
    timing: ComebackTiming | None = None
    check: TimingCheck | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored with the curve)."""
        return {
            "counted": self.timing is not None,
            "min_window_days": self.min_window_days,
            "check": None if self.check is None else self.check.to_dict(),
            "reason": self.reason,
        }


#: Partly seen horizons never count.
WHOLE_HORIZONS_ONLY = PartlySeenTiming(None, reason="min_window_days is not set")


def partly_seen_timing(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    ages_days: Sequence[int],
    min_window_days: int | None,
) -> PartlySeenTiming:
    """Whether horizons partly seen at ``cut_us`` may count at these ages, and by what timing.

    They count with ``min_window_days``, for the ``reconverted`` target (a ``won`` label
    needs its won deadline), when at least ``MIN_TIMING_COMEBACKS`` wholly seen examples
    came back (their days to the comeback are the timing) and ``TimingCheck`` found at
    least ``MIN_CHECK_COMEBACKS`` comebacks and a hazard ratio for them. Everything is read
    as known at ``cut_us``.
    """
    if min_window_days is None:
        return WHOLE_HORIZONS_ONLY
    if config.target != "reconverted":
        return PartlySeenTiming(min_window_days, reason="a won label needs its won deadline")
    at_ages = config.model_copy(update={"rescore_offsets_days": sorted(set(ages_days))})
    examples = training_examples(history, at_ages, cut_us)
    labels = label_examples(history, examples, config, cut_us)
    came = ~labels.censored & (labels.target == 1.0)
    days = np.sort(labels.days_to_reconversion[came])
    if days.size < MIN_TIMING_COMEBACKS:
        too_few = f"{days.size} whole horizons came back, fewer than {MIN_TIMING_COMEBACKS}"
        return PartlySeenTiming(min_window_days, reason=too_few)
    check = timing_check(history, at_ages, cut_us, min_window_days, ComebackTiming(days))
    failed = _check_failed(check)
    if failed is not None or check.hazard_ratio is None:
        return PartlySeenTiming(min_window_days, check=check, reason=failed)
    return PartlySeenTiming(min_window_days, ComebackTiming(days, check.hazard_ratio), check)


def _check_failed(check: TimingCheck) -> str | None:
    """Why the timing cannot be used after ``check`` (None when it can)."""
    if check.comebacks < MIN_CHECK_COMEBACKS:
        return (
            f"{check.comebacks} horizons partly seen a year before the cut came back, fewer "
            f"than {MIN_CHECK_COMEBACKS}"
        )
    if check.hazard_ratio is None:
        low, high = HAZARD_RATIO_RANGE
        return (
            f"a year before the cut {check.seen} of {check.comebacks} comebacks fell within "
            f"the days seen where the timing expected {check.pooled_expected:.1f}: no hazard "
            f"ratio from {low} to {high} fits"
        )
    return None


def timing_check(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    min_window_days: int,
    timing: ComebackTiming,
) -> TimingCheck:
    """``TimingCheck`` at whole years before ``cut_us`` (as many as a horizon needs): the
    examples at ``config``'s re-scoring offsets whose horizons were partly seen then, for at
    least ``min_window_days``, and are wholly seen at ``cut_us``, at the same time of year."""
    years = math.ceil(config.horizon_days / 365)
    then = cut_us - years * 365 * DAY_US
    examples = training_examples(history, config, then)
    window_days = (then - examples.as_of) / DAY_US
    partly = (window_days < config.horizon_days) & (window_days >= min_window_days)
    examples, window_days = examples.take(partly), window_days[partly]
    came = label_examples(history, examples, config, cut_us).target == 1.0
    seen = int(np.sum(reconverted_by(history, examples.take(came), then)))
    pooled = timing.share(window_days[came])
    ratio = hazard_ratio_for(pooled, seen)
    return TimingCheck(int(came.sum()), seen, float(pooled.sum()), ratio)


def hazard_ratio_for(pooled_shares: np.ndarray, seen: int) -> float | None:
    """The ratio ``k`` in ``HAZARD_RATIO_RANGE`` at which ``1 - (1 - share) ** k`` sums to
    ``seen`` (the sum grows with ``k``), or None when none does."""
    from scipy.optimize import brentq

    def excess(ratio: float) -> float:
        return float(np.sum(1.0 - (1.0 - pooled_shares) ** ratio)) - seen

    low, high = HAZARD_RATIO_RANGE
    if pooled_shares.size == 0 or excess(low) > 0 or excess(high) < 0:
        return None
    return float(brentq(excess, low, high, xtol=1e-9))


@dataclass(frozen=True)
class HorizonSeen:
    """What the cut shows of each example's horizon.

    Attributes:
        counted: the horizon is seen wholly, or partly and long enough.
        partly_seen: the horizon is seen only partly (a subset of ``counted``).
        comeback_share: the share of the horizon's comebacks the days seen hold (1 when
            whole, 0 when not counted).
        came_back: the lead came back within the horizon, by the cut.
    """

    counted: np.ndarray
    partly_seen: np.ndarray
    comeback_share: np.ndarray
    came_back: np.ndarray


def horizons_seen(
    history: History,
    examples: Examples,
    config: FeatureConfig,
    cut_us: int,
    partly: PartlySeenTiming = WHOLE_HORIZONS_ONLY,
) -> HorizonSeen:
    """What ``cut_us`` shows of each example's horizon (``HorizonSeen``): whole horizons
    labelled as for training and, when ``partly`` has a timing, horizons seen for at least
    its minimum window, with the share of comebacks the timing gives the days seen."""
    labels = label_examples(history, examples, config, cut_us)
    whole = ~labels.censored
    share = whole.astype(np.float64)
    came_back = np.where(whole, labels.target, 0.0) == 1.0
    if partly.timing is None or partly.min_window_days is None:
        return HorizonSeen(whole, np.zeros(len(examples), dtype=bool), share, came_back)
    window_days = (cut_us - examples.as_of) / DAY_US
    partly_seen = labels.censored & (window_days >= partly.min_window_days)
    share[partly_seen] = partly.timing.share(window_days[partly_seen])
    came_back[partly_seen] = reconverted_by(history, examples.take(partly_seen), cut_us)
    return HorizonSeen(whole | partly_seen, partly_seen, share, came_back)


#: A model's calibrated probabilities for examples of a history (``predict_examples``).
Predict = Callable[[History, Examples], np.ndarray]


def age_rates(
    history: History,
    config: FeatureConfig,
    cut_us: int,
    ages_days: Sequence[int],
    *,
    predict: Predict | None = None,
    partly: PartlySeenTiming = WHOLE_HORIZONS_ONLY,
) -> list[AgeRate]:
    """What rejections re-scored at each age did, as known at ``cut_us``.

    Each rejection still open at ``rejected_at + age`` (and scored by ``cut_us``) is one
    example; it counts once its label is observed by ``cut_us`` (its horizon, or for the
    ``won`` target its won deadline, ends by then), with the model's own target and horizon,
    or, when ``partly`` has a timing, once enough of its horizon is seen (``horizons_seen``).
    Rows after ``cut_us`` never reach a rate: the features ``predict`` reads are those at
    each example's ``as_of``. With ``predict``, each age also sums the model's probabilities,
    each times its example's share.
    """
    ages = sorted({int(a) for a in ages_days})
    at_ages = config.model_copy(update={"rescore_offsets_days": ages})
    examples = training_examples(history, at_ages, cut_us)
    seen = horizons_seen(history, examples, config, cut_us, partly)
    counted = seen.counted
    examples = examples.take(counted)
    share, came_back = seen.comeback_share[counted], seen.came_back[counted]
    partly_seen = seen.partly_seen[counted]
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
                int(np.sum(partly_seen[chosen])),
                float(np.sum(share[chosen & partly_seen])),
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
    *,
    min_window_days: int | None = None,
) -> AgeCurve | None:
    """The model's age curve from the history known at ``cut_us`` (see ``age_rates`` and
    ``fitted_factors``); ``predict`` is the model's probability without a curve.

    Ages at or below the reference are ignored, and so is every age whose examples are
    worth fewer than ``min_examples`` whole horizons (partly seen ones, with
    ``min_window_days``, count for their share; ``partly_seen_timing``).
    None when the reference age itself has too few, or no older age has enough (the model
    then scores old rejections as it always did).
    """
    reference_age = int(reference_age_days)
    older = [a for a in ages_days if a > reference_age]
    ages = [reference_age, *older]
    partly = partly_seen_timing(history, config, cut_us, ages, min_window_days)
    rates = age_rates(history, config, cut_us, ages, predict=predict, partly=partly)
    reference, *rest = rates
    kept = tuple(r for r in rest if r.exposure >= min_examples)
    if reference.exposure < min_examples or not kept:
        return None
    factors = fitted_factors(reference, kept)
    return AgeCurve(float(reference_age_days), reference, kept, factors, partly.to_dict())
