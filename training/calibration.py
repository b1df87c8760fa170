"""Probability calibration on a held-out time slice: isotonic or Platt, chosen by validation.

The booster never trains on the validation window, so it is the held-out slice. In ``auto``
mode both maps are fitted on the window's earlier part (by ``as_of``) and scored on its
later part; the one with the lower log loss (Brier breaking ties) is refitted on the whole
window. When the earlier part holds one outcome only (a small window), or a part is empty,
Platt is fitted on the whole window and the choice says why. The result is a
``features.predictor.Calibration`` of plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

from features.predictor import Calibration
from training.config import CalibrationConfig

PROBABILITY_FLOOR = 1e-4
"""Isotonic steps are kept within [floor, 1 - floor]: no score is ever exactly 0 or 1."""
FITTERS = ("isotonic", "platt")


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen calibration and how each candidate scored on the selection slice.

    Attributes:
        calibration: the map, refitted on the whole validation window.
        scores: candidate name to ``{"log_loss": ..., "brier": ...}`` on the later part of
            the validation window (``none`` is the uncalibrated booster).
        note: why ``auto`` could not choose by validation, when it could not.
    """

    calibration: Calibration
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str | None = None


def fit_isotonic(raw: np.ndarray, labels: np.ndarray) -> Calibration:
    """A monotone step map fitted by isotonic regression (interpolated between steps)."""
    regression = IsotonicRegression(
        y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR, out_of_bounds="clip"
    )
    regression.fit(raw, labels)
    return Calibration(
        "isotonic",
        x=tuple(float(v) for v in regression.X_thresholds_),
        y=tuple(float(v) for v in regression.y_thresholds_),
    )


def fit_platt(raw: np.ndarray, labels: np.ndarray) -> Calibration:
    """Platt scaling: a logistic regression on the booster's log-odds."""
    clipped = np.clip(raw, 1e-12, 1 - 1e-12)
    a, b = logistic_fit(np.log(clipped / (1 - clipped)), labels)
    return Calibration("platt", a=a, b=b)


def logistic_fit(score: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the unregularised logistic fit ``P(label) = sigmoid(a * score + b)``:
    Platt's map, for the booster's log-odds here and for the baselines' scores."""
    regression = LogisticRegression(C=1e6, max_iter=1000).fit(score.reshape(-1, 1), labels)
    return float(regression.coef_[0, 0]), float(regression.intercept_[0])


def fit_calibration(
    raw: np.ndarray, labels: np.ndarray, as_of: np.ndarray, config: CalibrationConfig
) -> CalibrationChoice:
    """Calibrate raw validation probabilities as configured.

    Args:
        raw: the booster's probabilities on the validation window.
        labels: their outcomes (0/1).
        as_of: their scoring moments, to cut the selection slice in time.
        config: the method (``auto`` chooses by validation).
    """
    if config.method == "none":
        return CalibrationChoice(Calibration())
    if config.method != "auto":
        return CalibrationChoice(_fit(config.method, raw, labels))
    fit_rows, check_rows = _selection_slices(as_of, config.selection_fraction)
    unusable = _unusable_selection(labels[fit_rows], labels[check_rows])
    if unusable is not None:
        note = f"platt on the whole validation window: {unusable}, so no method was chosen"
        return CalibrationChoice(fit_platt(raw, labels), note=note)
    scores = {"none": _score(raw[check_rows], labels[check_rows])}
    for method in FITTERS:
        candidate = _fit(method, raw[fit_rows], labels[fit_rows])
        scores[method] = _score(candidate.apply(raw[check_rows]), labels[check_rows])
    best = min(FITTERS, key=lambda m: (scores[m]["log_loss"], scores[m]["brier"], m != "platt"))
    return CalibrationChoice(_fit(best, raw, labels), scores)


def _unusable_selection(fit_labels: np.ndarray, check_labels: np.ndarray) -> str | None:
    """Why the two parts of the window cannot choose a method (None when they can).

    Both maps need both outcomes to fit; a small window's earlier part may hold comebacks
    only in its later part, and a ``selection_fraction`` near 0 or 1 may leave a part empty.
    Platt's two numbers on the whole window (which the split checks for both outcomes) are
    then the safer map.
    """
    if len(check_labels) == 0:
        return "the window's later part is empty (calibration.selection_fraction)"
    outcomes = len(np.unique(fit_labels))
    if outcomes < 2:
        held = "no example" if outcomes == 0 else f"{len(fit_labels):,} examples of one outcome"
        return f"the window's earlier part holds {held}"
    return None


def _fit(method: str, raw: np.ndarray, labels: np.ndarray) -> Calibration:
    return fit_isotonic(raw, labels) if method == "isotonic" else fit_platt(raw, labels)


def _selection_slices(as_of: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The earlier and later parts of the window by ``as_of`` (stable for ties)."""
    order = np.argsort(as_of, kind="stable")
    cut = round(len(order) * fraction)
    return np.sort(order[:cut]), np.sort(order[cut:])


def _score(probability: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    clipped = np.clip(probability, 1e-12, 1 - 1e-12)
    return {
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probability)),
    }
