"""``srl train``: from an export to an evaluated, calibrated, registered model.

The job reads as its steps: build examples and split them by time, encode, (tune,) train
LightGBM, calibrate, fit the baselines, evaluate everything on the test window, log the run
to MLflow, log and register the model, and apply the promotion gate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.age_curve import estimate_age_curve
from features.dataset import ExampleSet, build_training_set, uncensored
from features.encoding import CategoryVocabulary
from features.engine import FeatureSpec
from features.history import history_from_export
from features.loading import Export, load_export
from features.model_store import ModelLoadError, load_model
from features.predictor import ReconversionModel, trained_age
from features.pyfunc import log_pyfunc
from features.requests import request_body
from features.timestamps import microseconds
from training import plots, registry, tracking
from training.baselines import Baseline, fit_baselines
from training.booster import BoosterFit, raw_probability, train_booster
from training.calibration import CalibrationChoice, fit_calibration
from training.config import LightGBMConfig, PromotionConfig, TrainingConfig
from training.metrics import (
    HEADLINE_METRICS,
    contactable,
    flatten,
    improvement,
    json_ready,
    metric_report,
    summary_sentence,
)
from training.registry import GateDecision
from training.split import TimeSplit, split_by_time
from training.tuning import tune

logger = logging.getLogger(__name__)

MODEL_NAME_IN_RUN = "model"
LIGHTGBM = "lightgbm"


@dataclass(frozen=True)
class Prepared:
    """The split examples encoded for the booster.

    Attributes:
        split: the time split.
        vocabulary: category vocabularies learned on the training window.
        specs: the features, in matrix column order.
        matrices: window name to ``(encoded matrix, labels)``.
    """

    split: TimeSplit
    vocabulary: CategoryVocabulary
    specs: list[FeatureSpec]
    matrices: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Evaluation:
    """The model and the baselines on the same test window.

    Attributes:
        report: the model's metrics overall, per reason and per offset.
        baselines: each baseline's report.
        gains: per baseline, how much better the model is (positive is better).
        summary: the plain-language sentence.
        probabilities: test-window probabilities of the model and each baseline.
    """

    report: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    gains: dict[str, dict[str, float]]
    summary: str
    probabilities: dict[str, np.ndarray]

    def document(self) -> dict[str, Any]:
        """Everything as a JSON-ready document (``metrics.json``)."""
        return json_ready(
            {
                "summary": self.summary,
                "test": self.report,
                "baselines": self.baselines,
                "gains_over_baselines": self.gains,
            }
        )


@dataclass(frozen=True)
class TrainingResult:
    """What a training run produced.

    Attributes:
        run_id: the MLflow run.
        model: the trained model.
        model_uri: the logged model's URI.
        version: the registered version (None when not registered).
        evaluation: test-window metrics of the model and the baselines.
        decision: the promotion gate's verdict (None when not registered).
        split: the time split's windows and sizes.
    """

    run_id: str
    model: ReconversionModel
    model_uri: str
    version: str | None
    evaluation: Evaluation
    decision: GateDecision | None
    split: dict[str, Any]


def train(
    data: str | Path,
    config: TrainingConfig,
    tune_trials: int = 0,
    register: bool = True,
    snapshot_at: pd.Timestamp | None = None,
) -> TrainingResult:
    """Train, evaluate, log and (by default) register a model on an export.

    Args:
        data: the export directory.
        config: the resolved training settings.
        tune_trials: Optuna trials to run first (0: use the configured settings).
        register: register the model, give it the challenger alias and apply the gate.
        snapshot_at: the export's end for censoring (default: its latest event time).
    """
    export = load_export(data, snapshot_at=snapshot_at)
    logger.info("step=build_examples leads=%d", len(export.leads))
    examples = build_training_set(export, config.features)
    split = split_by_time(uncensored(examples), config.split, config.features.label_days)
    with tracking.using_store():
        experiment = tracking.experiment_id(config.experiment_name)
        with mlflow.start_run(experiment_id=experiment) as run:
            return _run(run.info.run_id, export, examples, split, config, tune_trials, register)


def _run(
    run_id: str,
    export: Export,
    examples: ExampleSet,
    split: TimeSplit,
    config: TrainingConfig,
    tune_trials: int,
    register: bool,
) -> TrainingResult:
    """The steps of a run, inside the active MLflow run."""
    logger.info("step=log_inputs run_id=%s", run_id)
    log_inputs(config, export, examples, split)
    logger.info(
        "step=prepare examples=%d", len(split.train) + len(split.validation) + len(split.test)
    )
    prepared = prepare(split, config)
    settings = _settings(prepared, config, tune_trials)
    logger.info("step=train_booster threads=%d", settings.resolved_threads())
    fit = fit_booster(prepared, settings, config.seed)
    choice = calibrate(prepared, fit, config)
    if choice.note is not None:
        logger.warning("calibration: %s", choice.note)
    names = [s.name for s in prepared.specs]
    model = ReconversionModel(
        config.features,
        prepared.vocabulary,
        fit.booster,
        choice.calibration,
        names,
        num_threads=settings.resolved_threads(),
    )
    curve = fit_age_curve(export, split, config, model)
    model.metadata = {"age_curve": curve}
    logger.info("step=baselines best_iteration=%d", fit.best_iteration)
    baselines = fit_baselines(
        prepared.specs, prepared.matrices["train"], prepared.matrices["validation"], config.logistic
    )
    evaluation = evaluate_test(model, baselines, prepared)
    model.metadata = model_metadata(config, run_id, evaluation, split, fit, choice) | {
        "age_curve": curve
    }
    logger.info("step=log_results")
    log_results(prepared, model, fit, choice, evaluation, settings, config.shap_sample)
    logger.info("step=log_model")
    registered_name = config.registered_model_name if register else None
    info = log_pyfunc(model, _input_example(export, split.test), MODEL_NAME_IN_RUN, registered_name)
    version = info.registered_model_version
    decision = None
    if version:
        try:
            decision = _gate(export, split, model, evaluation, config, str(version))
        except BaseException:
            _unregister(config.registered_model_name, str(version))
            raise
    logger.info("trained run_id=%s version=%s summary=%s", run_id, version, evaluation.summary)
    return TrainingResult(
        run_id,
        model,
        info.model_uri,
        None if version is None else str(version),
        evaluation,
        decision,
        split.summary(),
    )


def prepare(split: TimeSplit, config: TrainingConfig) -> Prepared:
    """Learn category vocabularies on the training window and encode every window."""
    vocabulary = CategoryVocabulary.fit(
        split.train.features, config.features.min_category_count, config.features.max_categories
    )
    matrices = {name: _encoded(vocabulary, part) for name, part in split.parts().items()}
    return Prepared(split, vocabulary, list(split.train.features.specs), matrices)


def _encoded(vocabulary: CategoryVocabulary, part: ExampleSet) -> tuple[np.ndarray, np.ndarray]:
    assert part.labels is not None
    return vocabulary.encode(part.features), part.labels.target


def _settings(prepared: Prepared, config: TrainingConfig, trials: int) -> LightGBMConfig:
    if trials <= 0:
        return config.lightgbm
    return tune(
        prepared.specs,
        prepared.matrices["train"],
        prepared.matrices["validation"],
        config.lightgbm,
        trials,
        config.seed,
    )


def fit_booster(prepared: Prepared, settings: LightGBMConfig, seed: int) -> BoosterFit:
    """Train LightGBM on the training window with early stopping on validation."""
    return train_booster(
        prepared.specs, prepared.matrices["train"], prepared.matrices["validation"], settings, seed
    )


def calibrate(prepared: Prepared, fit: BoosterFit, config: TrainingConfig) -> CalibrationChoice:
    """Fit the calibration map on the validation window (the booster's held-out slice)."""
    matrix, labels = prepared.matrices["validation"]
    raw = raw_probability(fit.booster, matrix, config.lightgbm.resolved_threads())
    as_of = prepared.split.validation.keys["as_of"].to_numpy()
    return fit_calibration(raw, labels, as_of, config.calibration)


def evaluate_test(
    model: ReconversionModel, baselines: dict[str, Baseline], prepared: Prepared
) -> Evaluation:
    """Score the model and every baseline on the same test examples."""
    matrix, labels = prepared.matrices["test"]
    keys = prepared.split.test.keys
    probabilities = {LIGHTGBM: model.predict_matrix(matrix)}
    probabilities.update({name: b.predict(matrix) for name, b in baselines.items()})
    reachable = contactable(prepared.split.test)
    reports = {name: metric_report(keys, labels, p, reachable) for name, p in probabilities.items()}
    report = reports.pop(LIGHTGBM)
    overall = {name: r["overall"] for name, r in reports.items()}
    gains = {name: improvement(report["overall"], o) for name, o in overall.items()}
    summary = summary_sentence(report["overall"], overall, model.config.target)
    return Evaluation(report, reports, gains, summary, probabilities)


def model_metadata(
    config: TrainingConfig,
    run_id: str,
    evaluation: Evaluation,
    split: TimeSplit,
    fit: BoosterFit,
    choice: CalibrationChoice,
) -> dict[str, Any]:
    """What the model carries about itself (read by ``GET /v1/model`` and ``srl models``)."""
    overall = evaluation.report["overall"]
    return json_ready(
        {
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": run_id,
            "registered_model_name": config.registered_model_name,
            "target": config.features.target,
            "horizon_days": config.features.horizon_days,
            "metrics": {name: overall[name] for name in HEADLINE_METRICS},
            "baselines": {
                n: {m: r["overall"][m] for m in HEADLINE_METRICS}
                for n, r in evaluation.baselines.items()
            },
            "summary": evaluation.summary,
            "test_window": {"start": split.test_start.isoformat(), "end": split.end.isoformat()},
            "rejection_age_days": rejection_ages(split),
            "calibration": choice.calibration.method,
            "best_iteration": fit.best_iteration,
            "training_config_version": config.version,
        }
    )


def fit_age_curve(
    export: Export, split: TimeSplit, config: TrainingConfig, model: ReconversionModel
) -> dict[str, Any] | None:
    """The age curve (``features.age_curve``) of ``model`` (trained and calibrated, without
    a curve), as stored in its metadata: at each age, comebacks over the comebacks the model
    expected, from the history known when the test window starts, relative to the oldest
    age it is trained and calibrated on. None when turned off (``calibration.age_curve``) or
    when the history holds too few old examples."""
    settings = config.calibration
    reference = trained_age(rejection_ages(split))
    if not settings.age_curve or reference is None:
        return None
    curve = estimate_age_curve(
        history_from_export(export, config.features),
        config.features,
        microseconds(split.test_start),
        reference,
        settings.age_curve_days,
        settings.age_curve_min_examples,
        model.predict_examples,
        min_window_days=settings.age_curve_min_window_days,
    )
    factors = "none" if curve is None else curve.factors_by_age()
    partly_seen = None if curve is None else curve.partly_seen
    logger.info("step=age_curve factors=%s partly_seen=%s", factors, partly_seen)
    return None if curve is None else curve.to_dict()


def rejection_ages(split: TimeSplit) -> dict[str, float | None]:
    """The oldest rejection, in days from the rejection to ``as_of``, among the examples the
    booster was trained on and those its calibration was fitted on (None for an empty set).

    Rows scored later than ``trained`` days after their rejection are extrapolations
    (``ReconversionModel.beyond_trained_age``).
    """
    return {"trained": _oldest(split.train), "calibrated": _oldest(split.validation)}


def _oldest(part: ExampleSet) -> float | None:
    if len(part) == 0:
        return None
    return float(np.nanmax(part.features.columns["days_since_rejection"]))


def log_inputs(
    config: TrainingConfig, export: Export, examples: ExampleSet, split: TimeSplit
) -> None:
    """Record the resolved config, the data fingerprint, the code and the environment."""
    fingerprint = tracking.data_fingerprint(export, examples)
    code = tracking.code_version()
    mlflow.log_params(tracking.flat_params(config.model_dump(mode="json"), "config."))
    mlflow.log_text(config.to_yaml(), "resolved_config.yaml")
    mlflow.log_dict(fingerprint, "data_fingerprint.json")
    mlflow.log_dict(split.summary(), "split.json")
    mlflow.log_dict(code, "code_version.json")
    mlflow.log_dict(tracking.environment(), "environment.json")
    mlflow.set_tags(
        {
            "srl.data_digest": fingerprint["digest"],
            "srl.target": config.features.target,
            "srl.horizon_days": str(config.features.horizon_days),
            "srl.code_version": str(code.get("git_commit") or code["version"]),
        }
    )
    mlflow.log_metrics(
        {
            "data.examples": fingerprint["examples"],
            "data.censored": fingerprint["censored"],
            **{f"data.{name}.examples": len(part) for name, part in split.parts().items()},
        }
    )


def log_results(
    prepared: Prepared,
    model: ReconversionModel,
    fit: BoosterFit,
    choice: CalibrationChoice,
    evaluation: Evaluation,
    settings: LightGBMConfig,
    shap_sample: int,
) -> None:
    """Log metrics, the feature list, the plots and the full metrics document."""
    mlflow.log_params(tracking.flat_params(settings.model_dump(mode="json"), "booster."))
    metrics = flatten(evaluation.report, "test")
    for name, report in evaluation.baselines.items():
        metrics.update(flatten({**report, "by_reason": {}, "by_offset": {}}, f"baseline.{name}"))
    for name, gains in evaluation.gains.items():
        metrics.update({f"gain_over.{name}.{k}": v for k, v in gains.items()})
    for method, scores in choice.scores.items():
        metrics.update({f"calibration.{method}.{k}": v for k, v in scores.items()})
    metrics["best_iteration"] = fit.best_iteration
    mlflow.log_metrics(tracking.finite_metrics(metrics))
    mlflow.set_tag("srl.summary", evaluation.summary)
    mlflow.set_tag("srl.calibration", choice.calibration.method)
    if choice.note is not None:
        mlflow.set_tag("srl.calibration_note", choice.note)
    mlflow.log_dict(evaluation.document(), "metrics.json")
    mlflow.log_text(evaluation.summary + "\n", "summary.txt")
    mlflow.log_dict({"features": _feature_list(prepared.specs)}, "features.json")
    _log_plots(prepared, model, evaluation, shap_sample)


def _feature_list(specs: list[FeatureSpec]) -> list[dict[str, str]]:
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "meaning": s.meaning,
            "window": s.window,
            "source": s.source,
        }
        for s in specs
    ]


def _log_plots(
    prepared: Prepared, model: ReconversionModel, evaluation: Evaluation, shap_sample: int
) -> None:
    matrix, labels = prepared.matrices["test"]
    names = [s.name for s in prepared.specs]
    probability = evaluation.probabilities[LIGHTGBM]
    sample = _sample_rows(len(matrix), shap_sample)
    contributions = model.contributions(matrix[sample])
    gain = np.asarray(model.booster.feature_importance(importance_type="gain"), dtype=float)
    figures = {
        "calibration_curve.png": plots.calibration_curve(
            labels, {LIGHTGBM: probability, "logistic": evaluation.probabilities["logistic"]}
        ),
        "cumulative_gains_lift.png": plots.gains_chart(labels, evaluation.probabilities),
        "feature_importance.png": plots.feature_importance(names, gain),
        "shap_summary.png": plots.shap_summary(names, contributions, matrix[sample]),
        "reconversion_by_decile.png": plots.decile_rates(labels, probability),
    }
    for file_name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{file_name}")


def _sample_rows(n: int, size: int) -> np.ndarray:
    """A fixed, evenly spread sample of row positions (the same on every run)."""
    if n <= size:
        return np.arange(n)
    return np.linspace(0, n - 1, size).astype(np.int64)


def _input_example(export: Export, test: ExampleSet) -> dict[str, Any]:
    """A request body for the first test example (``log_pyfunc`` stores it without text)."""
    first = test.keys.iloc[0]
    return request_body(export, str(first["rejection_id"]), first["as_of"])


def _baseline_refusal(evaluation: Evaluation, promotion: PromotionConfig) -> GateDecision | None:
    """The gate's refusal of a challenger that does not beat every baseline, or None."""
    if not promotion.beat_baselines:
        return None
    value = float(evaluation.report["overall"][promotion.metric])
    overall = {name: report["overall"] for name, report in evaluation.baselines.items()}
    reason = registry.baseline_refusal(promotion.metric, value, overall)
    if reason is None:
        return None
    logger.warning("gate %s", reason)
    return GateDecision(False, reason, promotion.metric, promotion.margin, value)


def _no_split_refusal(
    model: ReconversionModel, split: TimeSplit, config: TrainingConfig
) -> GateDecision | None:
    """The gate's refusal of a booster without a single split, or None.

    Such a booster gives every lead the same score (its training window too small for
    ``lightgbm.min_data_in_leaf``, or nothing to learn); ``beat_baselines: false`` must not
    make it champion by itself. Asked only of a challenger the gate would promote, so any
    other refusal keeps its own reason.
    """
    splits = np.asarray(model.booster.feature_importance(importance_type="split"))
    if splits.sum() > 0:
        return None
    reason = (
        "the booster found no split, so it gives every lead the same score (its training "
        f"window holds {len(split.train):,} examples, lightgbm.min_data_in_leaf is "
        f"{config.lightgbm.min_data_in_leaf}); {registry.PERSON_DECIDES}"
    )
    logger.warning("gate %s", reason)
    return GateDecision(False, reason, config.promotion.metric, config.promotion.margin)


def _few_comebacks_refusal(split: TimeSplit, config: TrainingConfig) -> GateDecision | None:
    """The gate's refusal when the test window holds fewer comebacks than
    ``promotion.min_test_positives``, or None: its metrics then rest on a handful of leads
    and cannot tell one model from another. Asked only of a challenger the gate would
    promote."""
    labels = split.test.labels
    assert labels is not None
    comebacks = int(labels.target.sum())
    if comebacks >= config.promotion.min_test_positives:
        return None
    reason = (
        f"the test window holds {comebacks} comeback(s) among {len(split.test):,} examples, "
        f"fewer than promotion.min_test_positives ({config.promotion.min_test_positives}): "
        f"its metrics cannot tell models apart; {registry.PERSON_DECIDES}"
    )
    logger.warning("gate %s", reason)
    return GateDecision(False, reason, config.promotion.metric, config.promotion.margin)


def _champion_decision(
    export: Export,
    split: TimeSplit,
    evaluation: Evaluation,
    config: TrainingConfig,
    current: str | None,
) -> GateDecision:
    """The gate's verdict against the current champion (``current``, a version, if any)."""
    try:
        champion = (
            load_model(f"models:/{config.registered_model_name}/{current}") if current else None
        )
    except ModelLoadError as error:
        return GateDecision(
            False,
            f"champion {current} could not be loaded: {error}",
            config.promotion.metric,
            config.promotion.margin,
        )
    probability = evaluation.probabilities[LIGHTGBM]
    return registry.compare_with_champion(
        champion, export, split.test, probability, config.features, config.promotion
    )


def _unregister(name: str, version: str) -> None:
    """Delete a version whose gate failed to run or to be recorded: without its test
    results and verdict it would be listed, and could be promoted, as any other."""
    try:
        registry.registry_client().delete_model_version(name, version)
    except Exception as error:  # the registry that failed may fail again: say so, go on
        logger.error(
            "version %s of %s has no gate verdict and could not be deleted (%s): delete it "
            "by hand; srl promote refuses it while its run is not finished",
            version,
            name,
            type(error).__name__,
        )
    else:
        logger.warning("version %s of %s deleted: its gate did not complete", version, name)


def _gate(
    export: Export,
    split: TimeSplit,
    model: ReconversionModel,
    evaluation: Evaluation,
    config: TrainingConfig,
    version: str,
) -> GateDecision:
    """Apply the gate (every baseline of the run, then the current champion; a booster
    that found no split is never promoted) and record the verdict on the version."""
    client = registry.registry_client()
    name = config.registered_model_name
    try:
        current = registry.champion_version(client, name)
    except registry.RegistryError as error:  # never read as "no champion": not promoted
        decision = GateDecision(
            False,
            f"the champion could not be looked up: {error}",
            config.promotion.metric,
            config.promotion.margin,
        )
    else:
        decision = _baseline_refusal(evaluation, config.promotion) or _champion_decision(
            export, split, evaluation, config, current
        )
        if decision.promoted:
            decision = (
                _no_split_refusal(model, split, config)
                or _few_comebacks_refusal(split, config)
                or decision
            )
    tags = {f"test.{k}": f"{evaluation.report['overall'][k]:.6f}" for k in HEADLINE_METRICS}
    tags.update(
        {
            "test_window": f"{split.test_start.isoformat()}/{split.end.isoformat()}",
            "summary": evaluation.summary,
            "predicts": config.features.question,
        }
    )
    registry.record_training(client, name, version, tags, decision)
    mlflow.set_tags(decision.tags())
    logger.info(
        "gate version=%s promoted=%s reason=%s", version, decision.promoted, decision.reason
    )
    return decision
