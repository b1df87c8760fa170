"""Baselines scored on the same test examples as the model.

- ``points_score``: the classic points score (fit plus behaviour points) and
- ``points_qualified``: the classic qualification rule (0/1), each mapped to a probability
  by a logistic fit on the validation window (a monotone map: rankings are unchanged);
- ``logistic``: a regularised logistic regression on the same features (median imputation
  with missing-value indicators, signed log and standard scaling of numbers, one-hot
  categories), trained on the training window, its probabilities then mapped by a logistic
  fit on the validation window (Platt, monotone), as the model's are calibrated there: its
  log loss, Brier and ECE are then a calibrated baseline's, not the drift of the base rate
  between the training and test windows.

Every baseline takes the model's encoded feature matrix and returns probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from features.engine import FeatureSpec
from training.calibration import logistic_fit
from training.config import LogisticConfig

POINTS_BASELINES = ("points_score", "points_qualified")
#: The slope of a baseline's map when its score does no better than chance on the validation
#: window: small enough that every probability is the window's rate to within 1e-4 for
#: scores up to 100, yet positive, so the score's order (and its ranking metrics) stands.
MIN_SLOPE = 1e-6
MISSING_CODE = -1.0


class Baseline(Protocol):
    """Anything that turns an encoded feature matrix into probabilities."""

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities, one per row."""
        ...


@dataclass(frozen=True)
class ScoreBaseline:
    """One feature column (a rule's score) mapped to a probability by ``sigmoid(a*x + b)``."""

    column: int
    a: float
    b: float

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities from the column's values (missing counts as 0)."""
        score = np.nan_to_num(matrix[:, self.column], nan=0.0)
        return _sigmoid(self.a * score + self.b)


@dataclass(frozen=True)
class LogisticBaseline:
    """The fitted scikit-learn pipeline of the logistic-regression baseline, its log-odds
    mapped by ``a * x + b`` (the identity until ``recalibrated``)."""

    pipeline: Pipeline
    a: float = 1.0
    b: float = 0.0

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities of the positive class."""
        return _sigmoid(self.a * self.log_odds(matrix) + self.b)

    def log_odds(self, matrix: np.ndarray) -> np.ndarray:
        """The pipeline's own log-odds of the positive class."""
        with threadpool_limits(limits=1, user_api="blas"):
            return np.asarray(self.pipeline.decision_function(matrix), dtype=np.float64)

    def recalibrated(self, validation: np.ndarray, labels: np.ndarray) -> LogisticBaseline:
        """The same regression with its log-odds mapped by a logistic fit on ``validation``."""
        a, b = _platt(self.log_odds(validation), labels)
        return replace(self, a=a, b=b)


def fit_score_baseline(
    names: Sequence[str], column: str, validation: np.ndarray, labels: np.ndarray
) -> ScoreBaseline:
    """Map the rule's score to a probability by a logistic fit on validation examples."""
    index = list(names).index(column)
    score = np.nan_to_num(validation[:, index], nan=0.0)
    return ScoreBaseline(index, *_platt(score, labels))


def _platt(score: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the logistic fit ``P(label) = sigmoid(a * score + b)``, unregularised,
    with ``a > 0``: the map keeps the score's order, so a baseline's ranking metrics are the
    rule's own. A score no better than chance on the validation window (the fit's slope at or
    below 0) keeps its order with ``MIN_SLOPE`` and the window's comeback rate."""
    slope, intercept = logistic_fit(score, labels)
    if slope > 0:
        return slope, intercept
    rate = float(np.mean(labels))
    return MIN_SLOPE, math.log(rate / (1.0 - rate))


def _sigmoid(values: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    return np.asarray(np.exp(-np.logaddexp(0.0, -values)), dtype=np.float64)


def fit_logistic_baseline(
    specs: Sequence[FeatureSpec], train: np.ndarray, labels: np.ndarray, config: LogisticConfig
) -> LogisticBaseline:
    """Train the logistic-regression baseline on the training window."""
    numeric = [i for i, s in enumerate(specs) if s.kind == "numeric"]
    categorical = [i for i, s in enumerate(specs) if s.kind != "numeric"]
    numbers = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        FunctionTransformer(_signed_log),
        StandardScaler(),
    )
    categories = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=MISSING_CODE),
        OneHotEncoder(handle_unknown="ignore", min_frequency=20),
    )
    columns = ColumnTransformer(
        [("numbers", numbers, numeric), ("categories", categories, categorical)]
    )
    model = LogisticRegression(C=config.c, max_iter=config.max_iter)
    # One BLAS thread: these products are small, and spinning BLAS threads on a busy
    # machine cost far more than they save.
    with threadpool_limits(limits=1, user_api="blas"):
        pipeline = Pipeline([("columns", columns), ("logistic", model)]).fit(train, labels)
    return LogisticBaseline(pipeline)


def fit_baselines(
    specs: Sequence[FeatureSpec],
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    config: LogisticConfig,
) -> dict[str, Baseline]:
    """Every baseline, each fitted on the window it is allowed to see."""
    names = [spec.name for spec in specs]
    baselines: dict[str, Baseline] = {
        column: fit_score_baseline(names, column, *validation) for column in POINTS_BASELINES
    }
    baselines["logistic"] = fit_logistic_baseline(specs, *train, config).recalibrated(*validation)
    return baselines


def _signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: counts and amounts on a scale a linear model can use."""
    return np.sign(values) * np.log1p(np.abs(values))
