"""The run's charts, drawn with matplotlib's object API (no pyplot state, no display).

Each function returns a ``matplotlib.figure.Figure``; ``train`` logs them as PNG
artifacts with ``mlflow.log_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from training.metrics import expected_found

BINS = 10
TOP_FEATURES = 20


def calibration_curve(labels: np.ndarray, probabilities: Mapping[str, np.ndarray]) -> Figure:
    """Observed re-conversion rate against mean predicted probability, ten bins each."""
    figure = Figure(figsize=(6, 6))
    axes = figure.subplots()
    top = max(float(np.max(p)) for p in probabilities.values())
    axes.plot([0, top], [0, top], linestyle="--", color="grey", label="perfectly calibrated")
    for name, probability in probabilities.items():
        predicted, observed = _reliability(labels, probability)
        axes.plot(predicted, observed, marker="o", label=name)
    axes.set(
        xlabel="mean predicted probability",
        ylabel="observed re-conversion rate",
        title="Calibration on the test window",
    )
    axes.legend(loc="upper left")
    return figure


def _reliability(labels: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bins = np.minimum((probability * BINS).astype(int), BINS - 1)
    counts = np.bincount(bins, minlength=BINS)
    filled = counts > 0
    predicted = np.bincount(bins, weights=probability, minlength=BINS)[filled] / counts[filled]
    observed = np.bincount(bins, weights=labels, minlength=BINS)[filled] / counts[filled]
    return predicted, observed


def gains_chart(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Cumulative gains (share of comebacks found) and lift against the share contacted."""
    figure = Figure(figsize=(11, 5))
    gains, lift = figure.subplots(1, 2)
    share = np.arange(1, len(labels) + 1) / len(labels)
    gains.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    for name, score in scores.items():
        found = expected_found(labels, score) / max(labels.sum(), 1)
        gains.plot(share, found, label=name)
        lift.plot(share, found / share, label=name)
    gains.set(
        xlabel="share of rejected leads contacted (by score)",
        ylabel="share of comebacks found",
        title="Cumulative gains",
    )
    lift.axhline(1.0, linestyle="--", color="grey")
    lift.set(
        xlabel="share of rejected leads contacted (by score)",
        ylabel="lift",
        title="Lift",
        xlim=(0.01, 1),
    )
    gains.legend(loc="lower right")
    return figure


def segment_chart(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """ROC-AUC and the share of comebacks found in the top 20% per segment, one panel per
    table (``training.report_tables.segment_table``), each against its own line of chance: 0.5
    for ROC-AUC, 0.2 for the top 20% (contacting a random 20% finds 20% of the comebacks).
    Each segment is labelled with its examples and comebacks: a small segment's figures
    are noise."""
    figure = Figure(figsize=(6.5 * len(tables), 4.5))
    panels = np.atleast_1d(figure.subplots(1, len(tables)))
    for axes, (name, table) in zip(panels, tables.items(), strict=True):
        positions = np.arange(len(table))
        axes.bar(positions - 0.2, table["roc_auc"], width=0.4, label="ROC-AUC")
        axes.bar(positions + 0.2, table["capture_top_20"], width=0.4, label="found in top 20%")
        axes.axhline(0.5, linestyle=":", color="tab:blue", label="ROC-AUC by chance")
        axes.axhline(0.2, linestyle=":", color="tab:orange", label="top 20% by chance")
        comebacks = (table["examples"] * table["positive_rate"]).round().astype(int)
        labels = [
            f"{segment}\n{n:,} / {c:,}"
            for segment, n, c in zip(table.index, table["examples"], comebacks, strict=True)
        ]
        axes.set_xticks(positions, labels, rotation=70, fontsize=8)
        axes.set(ylim=(0, 1), title=f"Per {name} (examples / comebacks)")
    panels[0].legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    return figure


def feature_importance(names: Sequence[str], gain: np.ndarray) -> Figure:
    """The features with the largest total split gain."""
    order = np.argsort(-gain, kind="stable")[:TOP_FEATURES][::-1]
    figure = Figure(figsize=(8, 7))
    axes = figure.subplots()
    axes.barh([names[i] for i in order], gain[order] / max(gain.sum(), 1e-12))
    axes.set(xlabel="share of total split gain", title="Feature importance (LightGBM gain)")
    figure.tight_layout()
    return figure


def shap_summary(names: Sequence[str], contributions: np.ndarray, matrix: np.ndarray) -> Figure:
    """SHAP summary: each example's contribution per top feature, coloured by its value.

    ``contributions`` are LightGBM's TreeSHAP values (``pred_contrib``) in log-odds, with
    the expected value in the last column.
    """
    values = contributions[:, :-1]
    order = np.argsort(-np.abs(values).mean(axis=0), kind="stable")[:TOP_FEATURES][::-1]
    figure = Figure(figsize=(9, 8))
    axes = figure.subplots()
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, size=len(values))
    for row, feature in enumerate(order):
        colour = _normalised(matrix[:, feature])
        axes.scatter(
            values[:, feature],
            row + jitter,
            c=colour,
            cmap="coolwarm",
            s=4,
            vmin=0,
            vmax=1,
            rasterized=True,
        )
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_yticks(range(len(order)), [names[i] for i in order])
    axes.set(
        xlabel="SHAP value (log-odds contribution)",
        title="SHAP summary (colour: feature value, low blue to high red)",
    )
    figure.tight_layout()
    return figure


def _normalised(column: np.ndarray) -> np.ndarray:
    """Values ranked into [0, 1] (missing values at 0.5)."""
    result = np.full(len(column), 0.5)
    present = ~np.isnan(column)
    if present.sum() > 1:
        ranks = column[present].argsort(kind="stable").argsort(kind="stable")
        result[present] = ranks / (present.sum() - 1)
    return result


def decile_rates(labels: np.ndarray, probability: np.ndarray) -> Figure:
    """Observed re-conversion rate and mean probability per score decile (10 = highest)."""
    order = np.argsort(probability, kind="stable")
    deciles = np.empty(len(order), dtype=int)
    deciles[order] = np.arange(len(order)) * BINS // max(len(order), 1)
    observed = [labels[deciles == d].mean() if (deciles == d).any() else 0 for d in range(BINS)]
    predicted = [
        probability[deciles == d].mean() if (deciles == d).any() else 0 for d in range(BINS)
    ]
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    positions = np.arange(1, BINS + 1)
    axes.bar(positions - 0.2, observed, width=0.4, label="observed rate")
    axes.bar(positions + 0.2, predicted, width=0.4, label="mean predicted probability")
    axes.set(
        xlabel="score decile (10 = highest scores)",
        ylabel="re-conversion rate",
        title="Re-conversion rate by score decile",
        xticks=positions,
    )
    axes.legend(loc="upper left")
    return figure
