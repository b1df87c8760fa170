"""Reasons behind a score: the features that pushed it up or down, in plain words.

Contributions come from LightGBM's TreeSHAP (``ReconversionModel.contributions``) in
log-odds of the raw booster; they add up, with the expected value, to the raw score. The
calibration map is monotone, so a factor that raises the raw score raises the calibrated
probability too. Selection is vectorised over all rows; only the chosen factors become
``Reason`` objects, so the API (one row) and the batch job (a million rows) share this code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from features.engine import FeatureSpec, FeatureTable
from features.predictor import ReconversionModel
from serving.phrases import display_value, phrase_for

Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class Reason:
    """One factor of one lead's score.

    Attributes:
        feature: the feature's name (see the feature catalogue).
        direction: ``up`` when it raised the score, ``down`` when it lowered it.
        contribution: its SHAP contribution in log-odds of the raw model score.
        value: the lead's value of the feature (category label, number, or None if missing).
        text: the factor in plain words, for a marketer.
    """

    feature: str
    direction: Direction
    contribution: float
    value: float | str | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "feature": self.feature,
            "direction": self.direction,
            "contribution": self.contribution,
            "value": self.value,
            "text": self.text,
        }


def explain(
    model: ReconversionModel,
    features: FeatureTable,
    matrix: np.ndarray,
    top_k: int | None = 3,
) -> list[list[Reason]]:
    """The strongest factors of each row's score, strongest first.

    Args:
        model: the model that scored the rows.
        features: the rows' raw feature columns (values and labels are read from here).
        matrix: the encoded matrix of the same rows (``model.matrix(features)``).
        top_k: factors per row, ranked by absolute contribution; None keeps every factor
            with a non-zero contribution.

    Returns:
        One list of reasons per row, in row order (empty lists for an empty matrix).
    """
    if top_k is not None and top_k < 1:
        return [[] for _ in range(len(matrix))]
    contributions = model.contributions(matrix)[:, :-1]
    chosen = rank_factors(contributions, top_k)
    return [
        _row_reasons(features, contributions[row], row, columns)
        for row, columns in enumerate(chosen)
    ]


def rank_factors(contributions: np.ndarray, top_k: int | None) -> np.ndarray:
    """Column indices of each row's largest absolute contributions, largest first.

    Args:
        contributions: rows x features (without the expected-value column).
        top_k: how many per row; None ranks every column.

    Returns:
        rows x k indices; columns whose contribution is zero may appear at the end of a
        row and are dropped by the caller.
    """
    n_features = contributions.shape[1]
    strength = -np.abs(contributions)
    if top_k is None or top_k >= n_features:
        return np.argsort(strength, axis=1, kind="stable")
    candidates = np.argpartition(strength, top_k - 1, axis=1)[:, :top_k]
    order = np.argsort(np.take_along_axis(strength, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def _row_reasons(
    features: FeatureTable, contributions: np.ndarray, row: int, columns: np.ndarray
) -> list[Reason]:
    reasons = []
    for column in columns:
        contribution = float(contributions[column])
        if contribution == 0.0:
            break
        spec = features.specs[column]
        reasons.append(_reason(spec, features.columns[spec.name][row], contribution))
    return reasons


def _reason(spec: FeatureSpec, raw: Any, contribution: float) -> Reason:
    value = display_value(spec, raw)
    return Reason(
        feature=spec.name,
        direction="up" if contribution > 0 else "down",
        contribution=contribution,
        value=value,
        text=phrase_for(spec)(value),
    )
