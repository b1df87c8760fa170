"""LightGBM training: native categorical features and early stopping on validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from features.engine import FeatureSpec
from training.config import LightGBMConfig


@dataclass(frozen=True)
class BoosterFit:
    """A trained booster, cut at its best iteration, and its validation scores.

    Attributes:
        booster: the booster holding only the trees up to the best iteration.
        best_iteration: the boosting round with the lowest validation log loss.
        validation_log_loss: the raw booster's validation log loss at that round.
        validation_auc: the raw booster's validation ROC-AUC at that round.
    """

    booster: lgb.Booster
    best_iteration: int
    validation_log_loss: float
    validation_auc: float


def categorical_columns(specs: Sequence[FeatureSpec]) -> list[int]:
    """Positions of the features LightGBM treats as categories (contract codes and text)."""
    return [i for i, spec in enumerate(specs) if spec.kind in ("category", "text")]


def train_booster(
    specs: Sequence[FeatureSpec],
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    config: LightGBMConfig,
    seed: int,
) -> BoosterFit:
    """Train on the training window, stopping early on the validation window's log loss.

    Args:
        specs: the features, in matrix column order.
        train: the encoded training matrix and its labels.
        validation: the encoded validation matrix and its labels.
        config: booster settings.
        seed: the seed (with ``deterministic`` and a fixed thread count, runs repeat exactly).
    """
    names = [spec.name for spec in specs]
    categorical = categorical_columns(specs)
    params = config.booster_params(seed)
    train_set = lgb.Dataset(
        train[0],
        train[1],
        feature_name=names,
        categorical_feature=categorical,
        params={"verbosity": -1},
    )
    valid_set = lgb.Dataset(
        validation[0], validation[1], reference=train_set, categorical_feature=categorical
    )
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False)
        ],
    )
    best = booster.best_iteration or booster.current_iteration()
    scores = booster.best_score["validation"]
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return BoosterFit(trimmed, best, float(scores["binary_logloss"]), float(scores["auc"]))


def raw_probability(booster: lgb.Booster, matrix: np.ndarray, num_threads: int) -> np.ndarray:
    """The booster's uncalibrated probabilities."""
    if len(matrix) == 0:
        return np.zeros(0)
    return np.asarray(booster.predict(matrix, num_threads=num_threads), dtype=np.float64)
