"""Evaluation metrics: discrimination, calibration and lift, overall and per segment.

Every metric is computed overall, per rejection reason and per ``as_of`` offset (scored at
rejection versus re-scored later). A segment with a single class has no ROC-AUC or PR-AUC
(NaN, written as null in JSON).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from features.contract import NO_CONTACT_CONSENT, NO_CONTACT_REASONS
from features.dataset import ExampleSet
from features.history import CODES

TOP_SHARES = (0.1, 0.2)
ECE_BINS = 10
HEADLINE_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "capture_top_20")
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray) -> float:
    """Expected calibration error over ten equal-width probability bins.

    The mean, weighted by bin size, of ``|observed rate - mean predicted probability|``.
    """
    if len(labels) == 0:
        return math.nan
    bins = np.minimum((probability * ECE_BINS).astype(int), ECE_BINS - 1)
    counts = np.bincount(bins, minlength=ECE_BINS)
    observed = np.bincount(bins, weights=labels, minlength=ECE_BINS)
    predicted = np.bincount(bins, weights=probability, minlength=ECE_BINS)
    filled = counts > 0
    gaps = np.abs(observed[filled] - predicted[filled]) / counts[filled]
    return float(np.sum(gaps * counts[filled]) / len(labels))


def expected_found(labels: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Positives expected among the top ``k`` examples by score, for ``k = 1 .. n``.

    Examples with equal scores are in no particular order, so a group of ties that the
    cut splits contributes its positives in proportion to how many of its rows fall inside
    the top: the value expected under random tie-breaking, whatever the input order.

    Returns:
        An array of ``n`` floats; entry ``k - 1`` is the expected count in the top ``k``.
    """
    labels = np.asarray(labels, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if len(labels) == 0:
        return np.zeros(0)
    order = np.argsort(-score, kind="stable")
    starts, sizes = _tie_groups(score[order])
    positives = np.add.reduceat(labels[order], starts)
    found_before = np.cumsum(positives) - positives
    group = np.repeat(np.arange(len(starts)), sizes)
    inside = np.arange(1, len(labels) + 1) - starts[group]
    return found_before[group] + positives[group] * inside / sizes[group]


def _tie_groups(ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and size of each run of equal values (NaN equal to NaN) in a non-empty array."""
    same = (ranked[1:] == ranked[:-1]) | (np.isnan(ranked[1:]) & np.isnan(ranked[:-1]))
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    sizes = np.diff(np.append(starts, len(ranked)))
    return starts, sizes


def top_share(labels: np.ndarray, score: np.ndarray, share: float) -> tuple[float, float]:
    """Lift and capture rate of the top ``share`` of examples by score.

    Returns:
        ``(lift, capture)``: the top's positive rate over the overall rate, and the
        fraction of all positives found in the top. Ties at the cut count as broken at
        random (``expected_found``), so a constant score captures exactly ``share``.
    """
    total = float(np.sum(labels))
    if len(labels) == 0 or total == 0:
        return math.nan, math.nan
    top = max(1, math.ceil(share * len(labels)))
    found = float(expected_found(labels, score)[top - 1])
    return (found / top) / (total / len(labels)), found / total


def score_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Every metric for one set of examples."""
    labels = np.asarray(labels, dtype=np.float64)
    probability = np.asarray(probability, dtype=np.float64)
    two_classes = len(np.unique(labels)) == 2
    clipped = np.clip(probability, 1e-12, 1 - 1e-12)
    metrics = {
        "examples": float(len(labels)),
        "positive_rate": float(labels.mean()) if len(labels) else math.nan,
        "roc_auc": float(roc_auc_score(labels, probability)) if two_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, probability)) if two_classes else math.nan,
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])) if len(labels) else math.nan,
        "brier": float(brier_score_loss(labels, probability)) if len(labels) else math.nan,
        "ece": expected_calibration_error(labels, probability),
    }
    for share in TOP_SHARES:
        lift, capture = top_share(labels, probability, share)
        percent = round(share * 100)
        metrics[f"lift_top_{percent}"] = lift
        metrics[f"capture_top_{percent}"] = capture
    return metrics


def metric_report(
    keys: pd.DataFrame,
    labels: np.ndarray,
    probability: np.ndarray,
    reachable: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics overall, per ``reason_code`` and per ``offset_days``; with ``reachable``
    (``contactable``), also on the examples a contact program may reach."""
    report = {
        "overall": score_metrics(labels, probability),
        "by_reason": _by_group(keys["reason_code"].astype(str).to_numpy(), labels, probability),
        "by_offset": _by_group(keys["offset_days"].astype(str).to_numpy(), labels, probability),
    }
    if reachable is not None:
        report["contactable"] = score_metrics(labels[reachable], probability[reachable])
    return report


def contactable(examples: ExampleSet) -> np.ndarray:
    """Which examples a contact program may reach at their ``as_of``: consent not
    ``NO_CONTACT_CONSENT`` then, and a rejection reason not ``NO_CONTACT_REASONS`` (the
    suppressions every routing policy keeps). The others are scored, but no score of theirs
    leads to a contact, so the metrics that matter to marketing are those of these."""
    reasons = examples.keys["reason_code"].astype(str).isin(NO_CONTACT_REASONS).to_numpy()
    consent = examples.features.columns.get("consent_status")
    if consent is None:
        return ~reasons
    codes = [CODES["consent_status"][status] for status in sorted(NO_CONTACT_CONSENT)]
    return ~(reasons | np.isin(consent, codes))


def _by_group(
    groups: np.ndarray, labels: np.ndarray, probability: np.ndarray
) -> dict[str, dict[str, float]]:
    order = sorted(set(groups), key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
    return {g: score_metrics(labels[groups == g], probability[groups == g]) for g in order}


def improvement(model: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """How much better the model is than a baseline, per metric (positive is better)."""
    gains = {}
    for name in (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "ece",
        "capture_top_10",
        "capture_top_20",
    ):
        sign = -1.0 if name in LOWER_IS_BETTER else 1.0
        gains[name] = sign * (model[name] - baseline[name])
    return gains


#: What a positive example is called in the summary, by target.
OUTCOME_NOUNS = {"reconverted": "comebacks", "won": "wins"}


def summary_sentence(
    overall: dict[str, float],
    baselines: dict[str, dict[str, float]],
    target: str = "reconverted",
) -> str:
    """A plain-language sentence a marketer can read about the test window, naming the
    positives of ``target`` (comebacks, or wins for ``won``).

    Without a single positive there is nothing to find: the sentence says so (lift and
    capture stay undefined) instead of printing ``nan%``.
    """
    if not overall["positive_rate"] > 0:
        return no_comeback_sentence(int(overall["examples"]), target)
    capture = overall["capture_top_20"]
    lift = overall["lift_top_20"]
    rate = overall["positive_rate"]
    sentence = (
        f"Scoring the top 20% of rejected leads finds {capture:.0%} of the "
        f"{OUTCOME_NOUNS[target]} ({lift:.1f}x the average rate of {rate:.1%})"
    )
    points = baselines.get("points_score")
    if points is not None:
        sentence += f"; the classic points score finds {points['capture_top_20']:.0%}"
    return sentence + "."


def no_comeback_sentence(examples: int, target: str = "reconverted") -> str:
    """The summary when no evaluated example came back (or, for ``won``, was won) within
    the horizon."""
    noun = "example" if examples == 1 else "examples"
    if target == "won":
        return (
            f"None of the {examples:,} evaluated {noun} was won within the horizon, so there "
            "is no win for a score to find: lift and capture are not measured."
        )
    return (
        f"None of the {examples:,} evaluated {noun} came back within the horizon, so there "
        "is no comeback for a score to find: lift and capture are not measured."
    )


def json_ready(value: Any) -> Any:
    """Metrics with NaN and infinities as None, ready for ``json.dumps``."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def flatten(report: dict[str, Any], prefix: str) -> dict[str, float]:
    """MLflow metric names for a report: ``test.roc_auc``, ``test.reason.budget.ece``,
    ``test.contactable.pr_auc``, ..."""
    stems = [(prefix, report["overall"])]
    if "contactable" in report:
        stems.append((f"{prefix}.contactable", report["contactable"]))
    for section, label in (("by_reason", "reason"), ("by_offset", "offset")):
        stems += [(f"{prefix}.{label}.{group}", m) for group, m in report[section].items()]
    flat: dict[str, float] = {}
    for stem, metrics in stems:
        flat.update({f"{stem}.{k}": v for k, v in metrics.items() if math.isfinite(v)})
    return flat
