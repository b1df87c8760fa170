"""The training run's settings: a versioned YAML file validated into a frozen model.

Everything that changes a trained model lives here (features and labels, LightGBM
parameters, the time split, calibration, the seed, the promotion gate), so a run is
reproduced from its logged config alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, model_validator

from features.config import FeatureConfig, read_yaml_mapping
from features.model_store import DEFAULT_MODEL_NAME
from features.yaml_files import YamlSettings

CONFIG_VERSION = 1
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "config" / "training.yaml"
#: The shortest part of a horizon that counts as partly seen for the age curve.
MIN_PARTLY_SEEN_WINDOW_DAYS = 30
#: Seeds run from 0 to 2**32 - 1, the range numpy's and Optuna's samplers take.
MAX_SEED = 2**32 - 1
#: A registered model's name: MLflow refuses '/' and ':', a model URI reads '@' as its
#: alias, the registry's search filters quote the name, and white space at either end is
#: lost in shells and YAML; anything else MLflow takes (``Lead model (EU)``, ``modèle``).
MODEL_NAME_PATTERN = (
    r"^[^\s/:@'\"\x00-\x1f\x7f]([^/:@'\"\x00-\x1f\x7f]{0,254}[^\s/:@'\"\x00-\x1f\x7f])?$"
)
#: What ``MODEL_NAME_PATTERN`` asks, in words.
MODEL_NAME_RULE = "no '/', ':', '@', quote or control character, and no white space at either end"


class _Frozen(YamlSettings):
    """A frozen settings model (``features.yaml_files.YamlSettings``)."""


class LightGBMConfig(_Frozen):
    """LightGBM settings (binary objective, native categorical features, early stopping).

    Attributes:
        num_threads: threads for training; 0 means every core of the machine.
    """

    learning_rate: float = Field(default=0.02, gt=0, le=1)
    num_leaves: int = Field(default=4, ge=2, le=4096)
    max_depth: int = Field(default=-1, ge=-1)
    min_data_in_leaf: int = Field(default=200, ge=1)
    feature_fraction: float = Field(default=0.3, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: int = Field(default=1, ge=0)
    lambda_l1: float = Field(default=0.0, ge=0)
    lambda_l2: float = Field(default=10.0, ge=0)
    min_gain_to_split: float = Field(default=0.0, ge=0)
    cat_smooth: float = Field(default=20.0, ge=0)
    cat_l2: float = Field(default=10.0, ge=0)
    min_data_per_group: int = Field(default=50, ge=1)
    max_cat_threshold: int = Field(default=16, ge=1)
    max_rounds: int = Field(default=2000, ge=1)
    early_stopping_rounds: int = Field(default=100, ge=1)
    num_threads: int = Field(default=0, ge=0)

    def resolved_threads(self) -> int:
        """The thread count to use: ``num_threads``, or the machine's cores when 0."""
        return self.num_threads or os.cpu_count() or 1

    def booster_params(self, seed: int) -> dict[str, Any]:
        """Parameters for ``lightgbm.train``, deterministic for a given seed and thread count."""
        params = self.model_dump(exclude={"max_rounds", "early_stopping_rounds", "num_threads"})
        return {
            **params,
            "objective": "binary",
            "metric": ["binary_logloss", "auc"],
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.resolved_threads(),
            "verbosity": -1,
        }


class SplitConfig(_Frozen):
    """The time split of fully observed examples by their scoring moment ``as_of``.

    The test window is the most recent ``test_days`` of uncensored examples, the
    validation window the ``validation_days`` before it, training everything older. Each
    lead belongs to the window of its earliest example; its examples in later windows are
    dropped, so no lead is on both sides of a split.

    Attributes:
        embargo_days: drop training examples within this many days before the validation
            window, so that no training label depends on what happened in the validation
            and test windows. None (the default) means as far as labels look
            (``FeatureConfig.label_days``); 0 disables it.
        validation_embargo_days: drop validation examples within this many days before the
            test window, so that no validation label (which picks the boosting rounds and
            fits the calibration) depends on what happened during the test window. Set it
            to the label horizon, with a validation window longer than that, for a test
            score nothing after the test window's start has touched; 0 (the default) keeps
            the whole validation window.
    """

    validation_days: int = Field(default=180, ge=1)
    test_days: int = Field(default=180, ge=1)
    embargo_days: int | None = Field(default=None, ge=0)
    validation_embargo_days: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _validation_window_outlasts_its_embargo(self) -> SplitConfig:
        if self.validation_embargo_days >= self.validation_days:
            raise ValueError(
                f"validation_embargo_days ({self.validation_embargo_days}) leaves nothing of "
                f"the validation window (validation_days {self.validation_days}); make the "
                "window longer than the embargo"
            )
        return self


class CalibrationConfig(_Frozen):
    """How raw booster probabilities are calibrated on the validation window.

    ``auto`` fits isotonic regression and Platt scaling on the earlier part of the
    validation window, keeps the one with the lower log loss on its later part, then refits
    it on the whole window.
    """

    method: Literal["auto", "isotonic", "platt", "none"] = "auto"
    selection_fraction: float = Field(default=0.5, gt=0, lt=1)
    #: Lower the probabilities of rejections older than the model was fitted on by how
    #: comebacks fall with age before the test window (``features.age_curve``).
    age_curve: bool = True
    #: The ages, in days from the rejection, whose comebacks (against what the model
    #: expected) make the curve (those at or below the model's trained age are left out;
    #: the trained age itself is added).
    age_curve_days: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        default=(180, 270, 365, 455, 545, 730, 910, 1095), min_length=1
    )
    #: An age counts only with examples worth at least this many whole horizons.
    age_curve_min_examples: int = Field(default=100, ge=10)
    #: An example whose horizon is only partly seen before the test window counts when at
    #: least this many days of it are, for the share of comebacks those days hold (the
    #: ``reconverted`` target only, with 20 wholly seen comebacks to time them and 10 a year
    #: earlier to fit the timing to the time of year; less than ``features.horizon_days``);
    #: None: whole horizons only.
    age_curve_min_window_days: Annotated[int, Field(ge=MIN_PARTLY_SEEN_WINDOW_DAYS)] | None = 90


class LogisticConfig(_Frozen):
    """The regularised logistic-regression baseline (L2; ``c`` is sklearn's inverse strength)."""

    c: float = Field(default=0.1, gt=0)
    max_iter: int = Field(default=2000, ge=10)


class PromotionConfig(_Frozen):
    """The gate a challenger must pass to become champion.

    The challenger is promoted when its ``metric`` on the run's test window is better than
    every baseline's (``beat_baselines``) and beats the current champion's on the same
    examples by at least ``margin`` (or there is no champion), and the test window holds at
    least ``min_test_positives`` comebacks: with fewer, its metrics cannot tell one model
    from another, and a person decides.
    """

    metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = "pr_auc"
    margin: float = Field(default=0.002, ge=0)
    beat_baselines: bool = True
    min_test_positives: int = Field(default=20, ge=0)


class TrainingConfig(_Frozen):
    """One training run's settings.

    Attributes:
        version: the config file format version.
        features: feature and label settings (carried inside the model).
        lightgbm: booster settings.
        split: the time split.
        calibration: probability calibration.
        logistic: the logistic-regression baseline.
        promotion: the champion gate.
        seed: the seed of every random choice.
        registered_model_name: the MLflow registered model.
        experiment_name: the MLflow experiment runs are logged to.
        shap_sample: test examples explained in the SHAP summary plot.
    """

    version: Literal[1] = 1
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    logistic: LogisticConfig = Field(default_factory=LogisticConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    registered_model_name: str = Field(default=DEFAULT_MODEL_NAME, pattern=MODEL_NAME_PATTERN)
    experiment_name: str = Field(default=DEFAULT_MODEL_NAME, min_length=1)
    shap_sample: int = Field(default=2000, ge=10)

    @model_validator(mode="after")
    def _age_curve_window_shorter_than_the_horizon(self) -> TrainingConfig:
        window = self.calibration.age_curve_min_window_days
        if window is not None and window >= self.features.horizon_days:
            raise ValueError(
                f"calibration.age_curve_min_window_days ({window}) must be shorter than "
                f"features.horizon_days ({self.features.horizon_days}): a horizon seen that "
                "long is seen whole; use null to count whole horizons only"
            )
        return self

    def with_overrides(self, **changes: Any) -> TrainingConfig:
        """A copy with some settings replaced (dotted names reach into sections).

        ``features.horizon_days=180`` or ``seed=7``; None values are ignored. The result is
        validated again.
        """
        data = self.model_dump(mode="json")
        for dotted, value in changes.items():
            if value is None:
                continue
            *path, leaf = dotted.split(".")
            section = data
            for part in path:
                section = section[part]
            section[leaf] = value
        return TrainingConfig.model_validate(data)

    def to_yaml(self) -> str:
        """The resolved config as YAML (what is logged with the run)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def with_horizon_days(config: TrainingConfig, days: int | None) -> TrainingConfig:
    """``config`` predicting comebacks within ``days`` (unchanged when None).

    A horizon no longer than ``calibration.age_curve_min_window_days`` would leave no
    partly seen horizon to count, so the window follows it: half the horizon, or whole
    horizons only (None) when half is under 30 days. ``srl train --horizon-days`` reads
    this; the resolved config logged with the run shows the window used.
    """
    if days is None:
        return config
    window = config.calibration.age_curve_min_window_days
    if window is not None and window >= days:
        halved = days // 2
        window = halved if halved >= MIN_PARTLY_SEEN_WINDOW_DAYS else None
    data = config.model_dump(mode="json")
    data["features"]["horizon_days"] = days
    data["calibration"]["age_curve_min_window_days"] = window
    return TrainingConfig.model_validate(data)


def load_training_config(path: str | Path | None = None) -> TrainingConfig:
    """Read and validate a training config (``config/training.yaml`` when ``path`` is None).

    Raises:
        features.config.ConfigError: naming the file: it does not exist, cannot be read, is
            not valid YAML or does not hold a mapping.
        pydantic.ValidationError: a setting is unknown or out of range.
    """
    source = Path(path) if path is not None else DEFAULT_CONFIG_FILE
    if path is None and not source.exists():
        return TrainingConfig()
    return TrainingConfig.model_validate(read_yaml_mapping(source))
