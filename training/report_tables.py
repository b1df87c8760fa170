"""Tables a model is read by, from labels and test-window probabilities: calibration,
cumulative gains and lift, metrics per segment and per version, SHAP summaries and a few
examples worth explaining, in words (``notebooks/02_model_report.ipynb``).

Each takes plain arrays (or a key frame), so it reads the same for any model or baseline;
``training.report`` finds the version, its run and the examples these are computed on.
Nothing here draws; ``training.plots`` and the notebook do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from features.dataset import ExampleSet
from features.predictor import ReconversionModel
from training.metrics import HEADLINE_METRICS, expected_found, metric_report, score_metrics

REPORT_METRICS = (*HEADLINE_METRICS, "lift_top_20", "examples", "positive_rate")
SEGMENT_METRICS = ("examples", "positive_rate", "roc_auc", "pr_auc", "ece", "capture_top_20")
GAIN_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)


class Factor(Protocol):
    """One factor of a score, as ``serving.reasons.Reason`` gives it."""

    @property
    def direction(self) -> str:
        """``up`` when it raised the score, ``down`` when it lowered it."""
        ...

    @property
    def text(self) -> str:
        """The factor in plain words."""
        ...


def compare_versions(labels: np.ndarray, probabilities: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Every model's metrics on the same examples, one row per model."""
    rows = {name: score_metrics(labels, p) for name, p in probabilities.items()}
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(REPORT_METRICS))


def calibration_table(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed comeback rate against mean predicted probability in equal-count bins.

    Equal probabilities always share a bin (the one of their middle rank), so the table
    does not depend on the input order; bins are then only about equal in size.

    Returns:
        One row per bin (lowest scores first): ``examples``, ``mean_predicted``,
        ``observed_rate`` and ``gap`` (observed minus predicted).
    """
    ranked = np.sort(probability)
    lowest = np.searchsorted(ranked, probability, side="left")
    highest = np.searchsorted(ranked, probability, side="right") - 1
    groups = ((lowest + highest) / 2 * bins // max(len(probability), 1)).astype(np.int64)
    frame = pd.DataFrame({"bin": groups, "predicted": probability, "observed": labels})
    table = frame.groupby("bin").agg(
        examples=("observed", "size"),
        mean_predicted=("predicted", "mean"),
        observed_rate=("observed", "mean"),
    )
    table["gap"] = table["observed_rate"] - table["mean_predicted"]
    return table


def gains_table(
    labels: np.ndarray, scores: Mapping[str, np.ndarray], shares: Sequence[float] = GAIN_SHARES
) -> pd.DataFrame:
    """Share of comebacks found and lift when contacting the top share of leads by each score.

    Ties at a cut count as broken at random (``training.metrics.expected_found``).

    Returns:
        Indexed by the share contacted; columns ``<score> capture`` and ``<score> lift``.
    """
    total = max(float(labels.sum()), 1.0)
    base_rate = total / max(len(labels), 1)
    columns: dict[str, list[float]] = {}
    for name, score in scores.items():
        ranked = expected_found(labels, score)
        tops = [max(1, int(np.ceil(share * len(labels)))) for share in shares]
        columns[f"{name} capture"] = [ranked[top - 1] / total for top in tops]
        columns[f"{name} lift"] = [ranked[top - 1] / top / base_rate for top in tops]
    table = pd.DataFrame(columns, index=pd.Index(list(shares), name="share contacted"))
    return table


def segment_table(
    keys: pd.DataFrame, labels: np.ndarray, probability: np.ndarray, by: str = "reason_code"
) -> pd.DataFrame:
    """Metrics per rejection reason (``reason_code``) or re-scoring offset (``offset_days``).

    Segments with a single class have no ROC-AUC or PR-AUC (NaN).
    """
    report = metric_report(keys, labels, probability)
    section = {"reason_code": "by_reason", "offset_days": "by_offset"}[by]
    table = pd.DataFrame.from_dict(report[section], orient="index")
    table.index.name = by
    return table.reindex(columns=list(SEGMENT_METRICS))


def shap_sample(
    model: ReconversionModel, examples: ExampleSet, size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """TreeSHAP contributions of an evenly spread sample of examples.

    Returns:
        ``(contributions, matrix)``: log-odds contributions with the expected value in the
        last column (as ``training.plots.shap_summary`` takes them), and the encoded rows.
    """
    rows = np.linspace(0, len(examples) - 1, min(size, len(examples))).astype(np.int64)
    matrix = model.matrix(examples.take(rows).features)
    return model.contributions(matrix), matrix


def mean_abs_shap(contributions: np.ndarray, names: Sequence[str], top: int = 15) -> pd.DataFrame:
    """Features ranked by mean absolute SHAP value (their average pull on the score)."""
    strength = np.abs(contributions[:, : len(names)]).mean(axis=0)
    table = pd.DataFrame({"feature": list(names), "mean_abs_shap": strength})
    table["share"] = table["mean_abs_shap"] / max(float(strength.sum()), 1e-12)
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable").head(top)


def example_rows(labels: np.ndarray, probability: np.ndarray) -> dict[str, int]:
    """A few examples worth explaining: the top score, a typical lead, the comeback scored lowest.

    Returns:
        Description to row position (the missed comeback only when there is one).
    """
    order = np.argsort(probability, kind="stable")
    rows = {"highest score": int(order[-1]), "median score": int(order[len(order) // 2])}
    comebacks = np.flatnonzero(labels == 1)
    if comebacks.size:
        rows["comeback scored lowest"] = int(comebacks[np.argmin(probability[comebacks])])
    return rows


def outcome_text(label: float) -> str:
    """An example's label in words: ``came back`` (1) or ``did not come back``."""
    return "came back" if label == 1 else "did not come back"


def explained_examples(
    chosen: Mapping[str, int],
    keys: pd.DataFrame,
    labels: np.ndarray,
    probability: np.ndarray,
    factors: Sequence[Sequence[Factor]],
) -> str:
    """A few examples and the factors behind their scores, as a marketer reads them.

    Args:
        chosen: description to row position (``example_rows``).
        keys: the examples' keys (``reason_code`` is shown).
        labels: every example's label.
        probability: every example's probability.
        factors: the factors of each chosen row, in the order of ``chosen``
            (``serving.reasons.explain_rows``).

    Returns:
        One line per example (its reason, probability and outcome), then one per factor
        (``+`` raised the score, ``-`` lowered it).
    """
    lines = []
    for (title, row), reasons in zip(chosen.items(), factors, strict=True):
        reason = keys["reason_code"].iloc[row]
        lines.append(f"{title}: {reason}, {probability[row]:.1%}, {outcome_text(labels[row])}")
        lines += [f"    {'+' if f.direction == 'up' else '-'} {f.text}" for f in reasons]
    return "\n".join(lines)
