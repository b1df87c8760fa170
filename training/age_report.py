"""How a model reads old rejections: its age curve, and its calibration by the rejection's
age on examples it was never fitted on (``notebooks/02_model_report.ipynb``,
``benchmarks/age_calibration.py``; the method is in ``docs/training.md``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from features.dataset import build_training_set, uncensored
from features.loading import Export
from features.predictor import ReconversionModel
from training.split import fitted_through

#: The ages examples are re-scored at, in days after their rejection.
REVIEW_AGES = (0, 30, 90, 180, 270, 365, 450, 540, 630, 730, 820, 910, 1000)
#: The bands the calibration is read in (first and last day, both included).
AGE_BANDS = ((0, 0), (30, 30), (90, 90), (180, 180), (270, 365), (450, 630), (730, 1000))


def age_curve_table(model: ReconversionModel) -> pd.DataFrame:
    """The model's age curve, one row per age (the reference first, factor 1): the
    ``examples`` whose horizon was seen, how many of them only ``partly_seen``, all of
    them as whole horizons (``exposure``), ``comebacks``, the comebacks the model
    ``expected`` (its probabilities summed, without the curve, each times the share of the
    horizon seen), the smoothed ``rate`` and the ``factor`` a probability at that age is
    multiplied by. Empty for a model without a curve."""
    curve = model.age_curve
    columns = [
        "age_days",
        "examples",
        "partly_seen",
        "exposure",
        "comebacks",
        "expected",
        "rate",
        "factor",
    ]
    if curve is None:
        return pd.DataFrame(columns=columns)
    rates = (curve.reference, *curve.rates)
    factors = [1.0, *curve.factors]
    rows = [
        (r.age_days, r.examples, r.partly_seen, r.exposure, r.comebacks, r.expected, r.rate, f)
        for r, f in zip(rates, factors, strict=True)
    ]
    return pd.DataFrame(rows, columns=columns)


def partly_seen_note(model: ReconversionModel) -> str:
    """In plain words, whether the model's age curve counted horizons partly seen before its
    test window, and the timing check they were expected by (``features.age_curve``)."""
    curve = model.age_curve
    if curve is None:
        return "no age curve"
    partly = curve.partly_seen
    if partly is None:
        return "whole horizons only (the curve was fitted before partly seen horizons counted)"
    if not partly["counted"]:
        return f"whole horizons only: {partly['reason']}"
    check = partly["check"]
    return (
        f"horizons seen for {partly['min_window_days']} days or more count; a year before the "
        f"test window {check['seen']} of {check['comebacks']} comebacks fell within the days "
        f"seen where the pooled timing expected {check['pooled_expected']:.1f}: hazard ratio "
        f"{check['hazard_ratio']:.2f}"
    )


def without_curve(model: ReconversionModel) -> ReconversionModel:
    """The same model with no age curve: its probabilities as before curves existed."""
    metadata = {k: v for k, v in model.metadata.items() if k != "age_curve"}
    return dataclasses.replace(model, metadata=metadata)


def calibration_by_age(
    export: Export, model: ReconversionModel, ages: tuple[int, ...] = REVIEW_AGES
) -> pd.DataFrame:
    """Per age band, on the export's examples re-scored at ``ages`` and scored after the
    model's test window started (none fitted on), with their label observed: ``examples``,
    the share that ``came_back``, and the mean probability with the model's age curve and
    without it.

    Raises:
        ValueError: the model records no test window, so which examples it was fitted on is
            unknown.
    """
    cut = fitted_through(model.metadata)
    if cut is None:
        raise ValueError("the model records no test window")
    config = model.config.model_copy(update={"rescore_offsets_days": tuple(sorted(set(ages)))})
    examples = uncensored(build_training_set(export, config))
    unseen = examples.take((examples.keys["as_of"] > cut).to_numpy())
    assert unseen.labels is not None
    with_curve = model.predict_features(unseen.features)
    plain = without_curve(model).predict_features(unseen.features)
    offsets = unseen.keys["offset_days"].to_numpy()
    rows = []
    for low, high in AGE_BANDS:
        chosen = (offsets >= low) & (offsets <= high)
        if chosen.any():
            rows.append(
                {
                    "days since the rejection": f"{low}" if low == high else f"{low} to {high}",
                    "examples": int(chosen.sum()),
                    "came_back": float(np.mean(unseen.labels.target[chosen])),
                    "mean_p_with_curve": float(np.mean(with_curve[chosen])),
                    "mean_p_without_curve": float(np.mean(plain[chosen])),
                }
            )
    return pd.DataFrame(rows)
