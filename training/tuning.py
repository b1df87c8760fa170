"""Hyper-parameter search with Optuna on the validation window only.

Each trial trains a booster on the training window with early stopping on validation and
is logged as a nested MLflow run; the trial with the lowest validation log loss wins. The
test window is never looked at, so the test metrics of the final model stay honest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import mlflow
import numpy as np
import optuna

from features.engine import FeatureSpec
from training.booster import train_booster
from training.config import LightGBMConfig

logger = logging.getLogger(__name__)


def suggest(trial: optuna.Trial, base: LightGBMConfig) -> LightGBMConfig:
    """One point of the search space, on top of the configured settings."""
    changes: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.1, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 3, 63, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 500, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.2, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
    }
    return base.model_copy(update=changes)


def tune(
    specs: Sequence[FeatureSpec],
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    base: LightGBMConfig,
    trials: int,
    seed: int,
) -> LightGBMConfig:
    """Run ``trials`` Optuna trials (nested MLflow runs) and return the best settings.

    Must be called inside an active MLflow run. The sampler is seeded, so the same data,
    settings and seed give the same trials.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("tune() must run inside an active MLflow run")
    experiment = parent.info.experiment_id

    def objective(trial: optuna.Trial) -> float:
        settings = suggest(trial, base)
        with mlflow.start_run(
            run_name=f"trial-{trial.number}", nested=True, experiment_id=experiment
        ):
            fit = train_booster(specs, train, validation, settings, seed)
            mlflow.log_params({f"lightgbm.{k}": v for k, v in trial.params.items()})
            mlflow.log_metrics(
                {
                    "validation.log_loss": fit.validation_log_loss,
                    "validation.roc_auc": fit.validation_auc,
                    "best_iteration": fit.best_iteration,
                }
            )
        trial.set_user_attr("best_iteration", fit.best_iteration)
        return fit.validation_log_loss

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    logger.info(
        "tuning best_trial=%s validation_log_loss=%.5f", study.best_trial.number, study.best_value
    )
    mlflow.log_metric("tuning.best_validation_log_loss", study.best_value)
    mlflow.set_tag("tuning.best_trial", str(study.best_trial.number))
    return suggest(study.best_trial, base)  # type: ignore[arg-type]
