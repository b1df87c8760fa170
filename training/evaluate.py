"""``srl evaluate``: score every labelled, fully observed example of an export with a model.

The model may be older than the export: features are built with the model's own settings
and its vocabularies, so a model trained on last quarter's export scores this quarter's.

Every example is written with its probability, but the metrics count only the examples
the model was not fitted on: those scored after the start of its test window, the cut its
metadata records (``training.split.fitted_through``). An export that overlaps the model's
training and validation windows would otherwise grade the model on its own homework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.dataset import ExampleSet, build_training_set, uncensored
from features.loading import load_export
from features.model_store import LoadedModel, load_model
from features.output import check_output_file, write_table
from features.predictor import ReconversionModel
from features.table_files import check_not_an_export_table
from training.metrics import contactable, json_ready, metric_report, summary_sentence, top_share
from training.split import fitted_through, moment_text, none_observed, seen_in_fitting

PREDICTION_COLUMNS = (
    "rejection_id",
    "lead_id",
    "as_of",
    "probability",
    "label",
    "seen_in_fitting",
    "beyond_trained_age",
)


@dataclass(frozen=True)
class Scored:
    """The labelled, uncensored examples of an export with a model's probabilities.

    Attributes:
        examples: the examples, built with the model's feature settings.
        probability: the model's calibrated probability of each example.
        fitted_through: the latest ``as_of`` the model may have been fitted on (None when
            its metadata records no test window).
        seen: per example, whether the model may have been fitted on it (all missing when
            ``fitted_through`` is unknown).
        beyond_trained_age: per example, whether its rejection is older than the model was
            trained and calibrated on (``ReconversionModel.beyond_trained_age``).
    """

    examples: ExampleSet
    probability: np.ndarray
    fitted_through: pd.Timestamp | None
    seen: pd.Series
    beyond_trained_age: np.ndarray

    def unseen(self) -> np.ndarray:
        """The examples the metrics count: all of them when the windows are unknown."""
        return ~self.seen.fillna(False).to_numpy(dtype=bool)


def evaluate(data: str | Path, model_uri: str, out: str | Path) -> dict[str, Any]:
    """Write predictions for every uncensored example of ``data`` and return the metrics.

    Args:
        data: the export directory.
        model_uri: a registry alias or version, a run URI or a local model folder.
        out: the predictions file (``.parquet`` or ``.csv``), written atomically.

    Returns:
        A JSON-ready document: the model's identity, how many examples were scored and how
        many were left out of the metrics as fitted on (``fitting``), and the summary
        sentence and the metrics overall, per rejection reason and per ``as_of`` offset on
        the examples the model was not fitted on.

    Raises:
        features.output.OutputPathError: ``out`` cannot be written, or is one of the
            export's table files (checked first).
        features.output.OutputWriteError: writing ``out`` failed (the previous file is kept).
    """
    target = check_not_an_export_table(check_output_file(out), data)
    loaded = load_model(model_uri, num_threads=os.cpu_count() or 1)
    scored = score_export(loaded.model, data)
    write_table(prediction_table(scored), target)
    return json_ready(_document(loaded, scored, target))


def score_export(model: ReconversionModel, data: str | Path) -> Scored:
    """Score every labelled, uncensored example of an export and flag what ``model`` saw."""
    examples = uncensored(build_training_set(load_export(data), model.config))
    through = fitted_through(model.metadata)
    seen = _seen(examples.keys, through)
    probability = model.predict_set(examples)
    return Scored(examples, probability, through, seen, model.beyond_trained_age(examples.features))


def _seen(keys: pd.DataFrame, through: pd.Timestamp | None) -> pd.Series:
    flags = pd.NA if through is None else seen_in_fitting(keys, through)
    return pd.Series(flags, index=keys.index, dtype="boolean")


def prediction_table(scored: Scored) -> pd.DataFrame:
    """One row per example: ``PREDICTION_COLUMNS``, ``seen_in_fitting`` missing when unknown."""
    labels = scored.examples.labels
    assert labels is not None
    frame = scored.examples.keys[["rejection_id", "lead_id", "as_of"]].copy()
    frame["probability"] = scored.probability
    frame["label"] = labels.target.astype(np.int64)
    frame["seen_in_fitting"] = scored.seen
    frame["beyond_trained_age"] = scored.beyond_trained_age
    return frame


def _document(loaded: LoadedModel, scored: Scored, out: Path) -> dict[str, Any]:
    unseen = scored.unseen()
    measured = scored.examples.take(unseen)
    return {
        "model": {
            "uri": loaded.uri,
            "name": loaded.name,
            "version": loaded.version,
            "alias": loaded.alias,
            "run_id": loaded.run_id,
        },
        "predictions": str(out),
        "examples": len(scored.examples),
        "fitting": _fitting(scored),
        **_measured(
            measured, scored.probability[unseen], scored.fitted_through, loaded.model.config.target
        ),
    } | _when_nothing_observed(scored, loaded.model.config.label_days)


def _when_nothing_observed(scored: Scored, horizon_days: int) -> dict[str, Any]:
    """The summary of an export without one labelled example (too short for the horizon),
    which is not a model that saw everything (``_nothing_unseen``)."""
    if len(scored.examples):
        return {}
    return {"summary": f"{none_observed(horizon_days)}: evaluate the model on a longer export."}


def _fitting(scored: Scored) -> dict[str, Any]:
    """How many examples the metrics count and leave out, and why."""
    through = scored.fitted_through
    left_out = int(len(scored.examples) - scored.unseen().sum())
    if through is None:
        note = (
            "the model records no test window (a model saved by hand or an older bundle), so "
            "which examples it was trained or calibrated on is unknown: the metrics count every "
            "example, including any it was fitted on"
        )
    else:
        note = (
            f"{left_out:,} examples scored at or before {through.isoformat()}, the start of the "
            "model's test window, are left out of the metrics: the model may have been trained "
            "or calibrated on them"
        )
    return {
        "fitted_through": None if through is None else through.isoformat(),
        "evaluated_examples": len(scored.examples) - left_out,
        "left_out_examples": left_out,
        "note": note,
    }


def _measured(
    examples: ExampleSet, probability: np.ndarray, through: pd.Timestamp | None, target: str
) -> dict[str, Any]:
    """The summary sentence and the metrics of the examples the model was not fitted on."""
    assert examples.labels is not None
    labels = examples.labels.target
    report = metric_report(examples.keys, labels, probability, contactable(examples))
    return {"summary": _summary(examples, report["overall"], through, target), **report}


def _summary(
    examples: ExampleSet, overall: dict[str, float], through: pd.Timestamp | None, target: str
) -> str:
    if len(examples) == 0:
        return _nothing_unseen(through)
    assert examples.labels is not None
    labels = examples.labels.target
    points = examples.features.columns.get("points_score")
    baselines = {}
    if points is not None:
        _, capture = top_share(labels, np.nan_to_num(points), 0.2)
        baselines["points_score"] = {"capture_top_20": capture}
    return f"{summary_sentence(overall, baselines, target)} {_scope(len(examples), through)}"


def _scope(count: int, through: pd.Timestamp | None) -> str:
    """What the summary sentence was measured on."""
    noun = "example" if count == 1 else "examples"
    if through is None:
        return (
            f"Measured on all {count:,} {noun}: the model records no test window, so some may "
            "be examples it was fitted on."
        )
    return (
        f"Measured on the {count:,} {noun} scored after {moment_text(through)}, "
        "none of which the model was fitted on."
    )


def _nothing_unseen(through: pd.Timestamp | None) -> str:
    if through is None:
        return "no examples"
    return (
        f"Every example was scored at or before {moment_text(through)}, the start of the "
        "model's test window, so the model may have been fitted on any of them: there is "
        "nothing it has not seen to measure. Evaluate it on a later export."
    )
