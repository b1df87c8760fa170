"""``srl evaluate``: score every labelled, fully observed example of an export with a model.

The model may be older than the export: features are built with the model's own settings
and its vocabularies, so a model trained on last quarter's export scores this quarter's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.dataset import ExampleSet, build_training_set, uncensored
from features.loading import load_export
from features.model_store import LoadedModel, load_model
from features.output import check_output_file, write_table
from training.metrics import json_ready, metric_report, summary_sentence, top_share

PREDICTION_COLUMNS = ("rejection_id", "lead_id", "as_of", "probability", "label")


def evaluate(data: str | Path, model_uri: str, out: str | Path) -> dict[str, Any]:
    """Write predictions for every uncensored example of ``data`` and return the metrics.

    Args:
        data: the export directory.
        model_uri: a registry alias or version, a run URI or a local model folder.
        out: the predictions file (``.parquet`` or ``.csv``), written atomically.

    Returns:
        A JSON-ready document: the model's identity, the summary sentence and the metrics
        overall, per rejection reason and per ``as_of`` offset.

    Raises:
        features.output.OutputPathError: ``out`` cannot be written (checked first).
        features.output.OutputWriteError: writing ``out`` failed (the previous file is kept).
    """
    target = check_output_file(out)
    loaded = load_model(model_uri, num_threads=os.cpu_count() or 1)
    examples = uncensored(build_training_set(load_export(data), loaded.model.config))
    probability = loaded.model.predict_set(examples)
    write_table(prediction_table(examples, probability), target)
    return json_ready(_document(loaded, examples, probability, target))


def prediction_table(examples: ExampleSet, probability: np.ndarray) -> pd.DataFrame:
    """One row per example: ``rejection_id, lead_id, as_of, probability, label``."""
    assert examples.labels is not None
    frame = examples.keys[["rejection_id", "lead_id", "as_of"]].copy()
    frame["probability"] = probability
    frame["label"] = examples.labels.target.astype(np.int64)
    return frame


def _document(
    loaded: LoadedModel, examples: ExampleSet, probability: np.ndarray, out: Path
) -> dict[str, Any]:
    assert examples.labels is not None
    labels = examples.labels.target
    report = metric_report(examples.keys, labels, probability)
    points = examples.features.columns.get("points_score")
    baselines = {}
    if points is not None and len(labels):
        _, capture = top_share(labels, np.nan_to_num(points), 0.2)
        baselines["points_score"] = {"capture_top_20": capture}
    summary = summary_sentence(report["overall"], baselines) if len(labels) else "no examples"
    return {
        "model": {
            "uri": loaded.uri,
            "name": loaded.name,
            "version": loaded.version,
            "alias": loaded.alias,
            "run_id": loaded.run_id,
        },
        "predictions": str(out),
        "examples": len(examples),
        "summary": summary,
        **report,
    }
