"""A registered model judged from its MLflow run and on an export: the computations of
``notebooks/02_model_report.ipynb``.

``load_report`` reads a model version (by alias or number) and what its run recorded: the
metrics, the params, the artifacts, the test-window report with the baselines, the resolved
training config and the registry's tags. ``test_window`` rebuilds from an export the
examples to review the version on (none it was fitted on), and ``reference_comparison``
sets it beside the version it replaced or challenges. ``training.report_tables`` turns the
window's predictions into tables; nothing here draws (``training.plots`` and the notebook
do).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlflow import MlflowClient

from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.loading import Export
from features.model_store import LoadedModel, load_model
from features.predictor import ReconversionModel
from features.timestamps import as_utc
from training.config import TrainingConfig
from training.registry import PREVIOUS_CHAMPION_TAG, champion_version, registry_client
from training.report_tables import REPORT_METRICS, compare_versions
from training.split import fitted_through, moment_text, seen_in_fitting, split_by_time
from training.tracking import export_digest, file_digests


@dataclass(frozen=True)
class ModelReport:
    """A registered model version and what its MLflow run recorded.

    Attributes:
        loaded: the model, its registry name, resolved version and run.
        metrics: the run's MLflow metrics (``test.roc_auc``, ``baseline.logistic.pr_auc``, ...).
        params: the run's MLflow params (the flattened resolved config and booster settings).
        tags: the run's tags.
        artifacts: every artifact path of the run (``plots/calibration_curve.png``, ...).
        evaluation: ``metrics.json``: the test-window report, the baselines' reports, the
            gains over each baseline and the plain-language summary.
        config: the run's resolved training config.
        split: ``split.json``: the time windows and their sizes.
        fingerprint: ``data_fingerprint.json``: the files, digest and snapshot it was
            trained on.
        version_tags: the registry version's tags (gate verdict, promotion history).
    """

    loaded: LoadedModel
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    artifacts: list[str]
    evaluation: dict[str, Any]
    config: TrainingConfig
    split: dict[str, Any]
    fingerprint: dict[str, Any]
    version_tags: dict[str, str]

    @property
    def model(self) -> ReconversionModel:
        """The loaded model."""
        return self.loaded.model

    @property
    def label(self) -> str:
        """``v<version>`` (or the URI for a model outside the registry)."""
        return f"v{self.loaded.version}" if self.loaded.name else self.loaded.uri


def load_report(model_uri: str, num_threads: int = 0) -> ModelReport:
    """Load a model (``models:/name@alias``, ``models:/name/3``, ...) and its run's records.

    Raises:
        features.model_store.ModelLoadError: the model cannot be loaded.
        ValueError: the model was not logged by an MLflow run.
    """
    loaded = load_model(model_uri, num_threads=num_threads)
    if loaded.run_id is None:
        raise ValueError(f"{model_uri}: the model has no MLflow run to report on")
    client = registry_client()
    run = client.get_run(loaded.run_id)
    documents = _run_documents(client, loaded.run_id)
    return ModelReport(
        loaded=loaded,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        artifacts=artifact_paths(client, loaded.run_id),
        evaluation=json.loads(documents["metrics.json"]),
        config=TrainingConfig.model_validate(yaml.safe_load(documents["resolved_config.yaml"])),
        split=json.loads(documents["split.json"]),
        fingerprint=json.loads(documents["data_fingerprint.json"]),
        version_tags=_version_tags(client, loaded),
    )


def _run_documents(client: MlflowClient, run_id: str) -> dict[str, str]:
    names = ("metrics.json", "resolved_config.yaml", "split.json", "data_fingerprint.json")
    with tempfile.TemporaryDirectory(prefix="srl-report-") as scratch:
        paths = {name: client.download_artifacts(run_id, name, scratch) for name in names}
        return {name: Path(path).read_text(encoding="utf-8") for name, path in paths.items()}


def _version_tags(client: MlflowClient, loaded: LoadedModel) -> dict[str, str]:
    if loaded.name is None:
        return {}
    return dict(client.get_model_version(loaded.name, loaded.version).tags or {})


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    """Every file a run logged, as paths relative to the run's artifact root."""
    paths: list[str] = []
    for entry in client.list_artifacts(run_id, folder):
        if entry.is_dir:
            paths += artifact_paths(client, run_id, entry.path)
        else:
            paths.append(entry.path)
    return sorted(paths)


def download_artifact(report: ModelReport, path: str, destination: str | Path) -> Path:
    """Download one artifact of the report's run (for example ``plots/shap_summary.png``)."""
    client = registry_client()
    assert report.loaded.run_id is not None
    return Path(client.download_artifacts(report.loaded.run_id, path, str(destination)))


def run_overview(report: ModelReport) -> pd.Series:
    """The version at a glance: where it came from, what it predicts, how it was judged."""
    metadata = report.model.metadata
    window = metadata.get("test_window", {})
    ages = metadata.get("rejection_age_days") or {}
    return pd.Series(
        {
            "model": report.loaded.name or report.loaded.uri,
            "version": report.loaded.version,
            "run_id": report.loaded.run_id,
            "trained_at": metadata.get("trained_at"),
            "target": report.model.config.target,
            "horizon_days": report.model.config.horizon_days,
            "test_window": f"{window.get('start')} .. {window.get('end')}",
            "calibration": metadata.get("calibration"),
            "oldest_rejection_trained_on_days": ages.get("trained"),
            "oldest_rejection_calibrated_on_days": ages.get("calibrated"),
            "gate": report.version_tags.get("gate.reason"),
            "summary": report.evaluation.get("summary"),
        },
        name=report.label,
    )


def baseline_table(report: ModelReport) -> pd.DataFrame:
    """The model beside each baseline on the run's test window (as logged in ``metrics.json``).

    Returns:
        One row for the model and one per baseline (points score, qualification rule,
        logistic regression); columns ``REPORT_METRICS``.
    """
    rows = {f"model {report.label}": report.evaluation["test"]["overall"]}
    for name, baseline in report.evaluation.get("baselines", {}).items():
        rows[name] = baseline["overall"]
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.reindex(columns=list(REPORT_METRICS)).astype(float)


def reference_version(report: ModelReport) -> str | None:
    """The version to compare with: the champion it replaced, or the champion it challenges.

    For the current champion this is the version recorded as the one it replaced; for any
    other version, the current champion. None when there is nothing to compare with.
    """
    if report.loaded.name is None:
        return None
    current = champion_version(registry_client(), report.loaded.name)
    if current is None:
        return None
    if current == report.loaded.version:
        return report.version_tags.get(PREVIOUS_CHAMPION_TAG)
    return current


@dataclass(frozen=True)
class ReviewWindow:
    """The examples a version is reviewed on: its test window rebuilt from an export, less
    any example the model may have been fitted on.

    Attributes:
        examples: the examples the model was not fitted on.
        rebuilt: how many examples the rebuilt window held.
        fitted_through: the latest ``as_of`` the model may have been fitted on (None when
            its metadata records no test window: then nothing can be left out).
        snapshot_at: the export's end the window was cut at.
        trained_on: whether the export holds the very files the run was trained on (then
            the run's own snapshot is used, and the window is the run's test window).
    """

    examples: ExampleSet
    rebuilt: int
    fitted_through: pd.Timestamp | None
    snapshot_at: pd.Timestamp
    trained_on: bool

    @property
    def left_out(self) -> int:
        """Examples of the rebuilt window the model may have been fitted on."""
        return self.rebuilt - len(self.examples)

    def note(self) -> str:
        """Which examples these are, in one sentence."""
        source = "the run's test window (the export it was trained on)"
        if not self.trained_on:
            as_of = self.examples.keys["as_of"]
            scored = f"scored {as_of.min():%Y-%m-%d} to {as_of.max():%Y-%m-%d}"
            source = f"the newest fully observed window of this export ({scored})"
        if self.fitted_through is None:
            return f"{len(self.examples):,} examples: {source}; the model records no test window"
        if not self.left_out:
            return f"{len(self.examples):,} examples: {source}; the model was fitted on none"
        return (
            f"{len(self.examples):,} examples: {source}, less {self.left_out:,} scored up to "
            f"{moment_text(self.fitted_through)}, which the model may have been trained or "
            "calibrated on"
        )


def test_window(report: ModelReport, export: Export) -> ReviewWindow:
    """The examples to review a version on, rebuilt from ``export``.

    On the export the model was trained on (the same files) this is exactly the run's test
    window, cut at the run's own snapshot (its ``--snapshot-at`` too). On another export
    it is the newest fully observed window: of a newer export, examples the model has never
    seen; of an older one, examples it may have been trained or calibrated on, which are
    left out as ``srl evaluate`` and the promotion gate leave them out
    (``training.split.fitted_through``).

    Raises:
        ValueError: the model may have been fitted on every example of the window.
    """
    trained_on = _same_files(report, export)
    if trained_on:
        export = replace(
            export, snapshot_at=as_utc(pd.Timestamp(report.fingerprint["snapshot_at"]))
        )
    examples = uncensored(build_training_set(export, report.model.config))
    window = split_by_time(examples, report.config.split, report.config.features.label_days).test
    through = fitted_through(report.model.metadata)
    unseen = np.ones(len(window), dtype=bool)
    if through is not None:
        unseen = ~seen_in_fitting(window.keys, through)
    if through is not None and not unseen.any():
        raise ValueError(
            f"{report.label} may have been trained or calibrated on every example of this "
            f"export's newest fully observed window (it was fitted on examples scored up to "
            f"{moment_text(through)}); review it on the export it was trained on, or a newer one"
        )
    return ReviewWindow(window.take(unseen), len(window), through, export.snapshot_at, trained_on)


def _same_files(report: ModelReport, export: Export) -> bool:
    """Whether ``export`` was read from the very files the report's run was trained on."""
    recorded = report.fingerprint.get("digest")
    return bool(export.files) and recorded == export_digest(file_digests(export))


def scores_on(
    model: ReconversionModel, export: Export, examples: ExampleSet, config: FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Another model's probabilities for the same (rejection, as_of) examples.

    Args:
        model: the model to score with (its own feature settings are used).
        export: the export the examples were built from.
        examples: the examples, built with ``config``.
        config: the feature settings ``examples`` were built with.

    Returns:
        ``(rows, probability)``: the positions in ``examples`` the model could score (all
        of them when its settings match) and its probabilities for those rows.
    """
    if model.config == config:
        return np.arange(len(examples)), model.predict_set(examples)
    theirs = build_training_set(export, model.config)
    keys = ["rejection_id", "as_of"]
    pairs = theirs.keys[keys].reset_index().merge(examples.keys[keys].reset_index(), on=keys)
    return pairs["index_y"].to_numpy(), model.predict_set(theirs.take(pairs["index_x"].to_numpy()))


@dataclass(frozen=True)
class Comparison:
    """Two versions on the same examples.

    Attributes:
        table: one row per version (``REPORT_METRICS``); empty when nothing is compared.
        note: which examples were compared, or why none were.
    """

    table: pd.DataFrame
    note: str


def reference_comparison(
    report: ModelReport, export: Export, examples: ExampleSet, probability: np.ndarray
) -> Comparison:
    """This version beside the reference version (``reference_version``) on the same examples,
    less those the reference may have been fitted on (as the promotion gate compares them).

    Args:
        report: the version under review.
        export: the export ``examples`` were built from.
        examples: labelled examples built with the reviewed model's feature settings (the
            ``ReviewWindow`` examples: none the reviewed model was fitted on).
        probability: the reviewed model's probabilities for ``examples``.
    """
    if report.loaded.name is None:
        return _nothing_compared("the model is not registered, so it has no other version")
    other = reference_version(report)
    if other is None or examples.labels is None:
        return _nothing_compared("no earlier champion to compare with")
    reference = load_model(f"models:/{report.loaded.name}/{other}", report.model.num_threads)
    theirs_asks, ours_asks = reference.model.config.question, report.model.config.question
    if theirs_asks != ours_asks:
        return _nothing_compared(
            f"v{other} predicts {theirs_asks}, this version {ours_asks}: the same labels "
            "cannot grade both"
        )
    through = fitted_through(reference.model.metadata)
    if through is None:
        return _nothing_compared(
            f"v{other} records no test window, so which examples it was fitted on is unknown"
        )
    fresh = ~seen_in_fitting(examples.keys, through)
    if not fresh.any():
        return _nothing_compared(
            f"v{other} may have been trained or calibrated on every one of these examples "
            f"(it was fitted on examples scored up to {moment_text(through)})"
        )
    kept = examples.take(fresh)
    assert kept.labels is not None
    rows, theirs = scores_on(reference.model, export, kept, report.model.config)
    labels = kept.labels.target[rows]
    table = compare_versions(labels, {report.label: probability[fresh][rows], f"v{other}": theirs})
    left_out = len(examples) - len(kept)
    note = f"{len(rows):,} examples scored by both"
    if left_out:
        note += f"; {left_out:,} that v{other} may have been fitted on were left out"
    return Comparison(table, note)


def _nothing_compared(why: str) -> Comparison:
    return Comparison(pd.DataFrame(columns=list(REPORT_METRICS)), f"nothing compared: {why}")
