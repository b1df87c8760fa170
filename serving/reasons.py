"""Reasons behind a score: the features that pushed it up or down, in plain words.

Contributions come from LightGBM's TreeSHAP (``ReconversionModel.contributions``) in
log-odds of the raw booster; they add up, with the expected value, to the raw score. The
calibration map is monotone, so a factor that raises the raw score raises the calibrated
probability too. Selection is vectorised over all rows; only the chosen factors become
``Reason`` objects, so the API (one row) and the batch job (a million rows) share this code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from features.dataset import ExampleSet
from features.encoding import CategoryVocabulary
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
        value: the lead's value of the feature (category label, number, or None if missing;
            free text the model did not learn as a category is ``<other>``).
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
        top_k: factors per row, ranked by absolute contribution (both directions shown
            when two or more are asked for and both exist, see ``rank_factors``); None
            keeps every factor with a non-zero contribution.

    Returns:
        One list of reasons per row, in row order (empty lists for an empty matrix).
    """
    if top_k is not None and top_k < 1:
        return [[] for _ in range(len(matrix))]
    contributions = model.contributions(matrix)[:, :-1]
    chosen = rank_factors(contributions, top_k)
    return [
        _row_reasons(features, model.vocabulary, contributions[row], row, columns)
        for row, columns in enumerate(chosen)
    ]


def explain_rows(
    model: ReconversionModel, examples: ExampleSet, rows: Sequence[int], top_k: int | None = 3
) -> list[list[Reason]]:
    """The reasons ``explain`` gives for some rows of an example set, in the order given.

    Args:
        model: the model that scored the examples.
        examples: the examples (their raw features are encoded with ``model.matrix``).
        rows: positions of the rows to explain.
        top_k: factors per row, as for ``explain``.
    """
    features = examples.take(np.asarray(rows, dtype=np.int64)).features
    return explain(model, features, model.matrix(features), top_k)


def rank_factors(contributions: np.ndarray, top_k: int | None) -> np.ndarray:
    """Column indices of each row's largest absolute contributions, largest first.

    With two or more factors asked for, a row shows both directions when it has both: if
    its ``top_k`` strongest factors all push the same way, the weakest of them gives way
    to the strongest factor pushing the other way (a reader sees what holds the lead back
    as well as what speaks for it).

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
    if top_k >= 2:
        candidates = _with_both_directions(contributions, candidates)
    order = np.argsort(np.take_along_axis(strength, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def _with_both_directions(contributions: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``candidates`` with, in rows whose factors all push one way, the weakest replaced by
    the strongest factor pushing the other way (where the row has one)."""
    picked = np.take_along_axis(contributions, candidates, axis=1)
    rows = np.arange(len(contributions))
    strongest_up = np.argmax(contributions, axis=1)
    strongest_down = np.argmin(contributions, axis=1)
    lacks_down = (contributions[rows, strongest_down] < 0) & ~(picked < 0).any(axis=1)
    lacks_up = (contributions[rows, strongest_up] > 0) & ~(picked > 0).any(axis=1)
    lacking = lacks_down | lacks_up
    if not lacking.any():
        return candidates
    weakest = np.argmin(np.abs(picked), axis=1)
    substitute = np.where(lacks_down, strongest_down, strongest_up)
    repaired = candidates.copy()
    repaired[rows[lacking], weakest[lacking]] = substitute[lacking]
    return repaired


def _row_reasons(
    features: FeatureTable,
    vocabulary: CategoryVocabulary,
    contributions: np.ndarray,
    row: int,
    columns: np.ndarray,
) -> list[Reason]:
    reasons = []
    for column in columns:
        contribution = float(contributions[column])
        if contribution == 0.0:
            break
        spec = features.specs[column]
        raw = features.columns[spec.name][row]
        reasons.append(_reason(spec, display_value(spec, raw, vocabulary), contribution))
    return reasons


def _reason(spec: FeatureSpec, value: float | str | None, contribution: float) -> Reason:
    return Reason(
        feature=spec.name,
        direction="up" if contribution > 0 else "down",
        contribution=contribution,
        value=value,
        text=phrase_for(spec)(value),
    )
