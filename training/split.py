"""The time split: train on older examples, validate and test on the most recent ones.

Only fully observed (uncensored) examples are split. Windows are cut on each example's
scoring moment ``as_of``, newest last: the test window is the last ``test_days`` before the
latest fully observed ``as_of``, the validation window the ``validation_days`` before that,
and training everything older.

A lead belongs to the window of its earliest example (its first rejection, a moment known
when it is first scored, whatever happens next); its examples that fall in later windows
are dropped ("cross-over" examples), so no lead is on both sides of a split and training
never sees a moment later than validation. Assigning leads by their latest example instead
would depend on the outcome (a lead that comes back stops being re-scored) and would fill
the earlier windows with comebacks.

A trained model records its test window; ``fitted_through`` reads the cut back, so that
``srl evaluate`` and the promotion gate leave out the examples a model was fitted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.dataset import ExampleSet
from features.timestamps import as_utc
from training.config import SplitConfig

WINDOWS = ("train", "validation", "test")


class SplitError(ValueError):
    """The export is too short or too small for the configured windows."""


@dataclass(frozen=True)
class TimeSplit:
    """Train, validation and test examples with the windows that cut them.

    Attributes:
        train: examples scored up to ``validation_start``.
        validation: examples scored in ``(validation_start, test_start]``.
        test: examples scored in ``(test_start, end]``.
        validation_start: the end of the training window.
        test_start: the end of the validation window.
        end: the latest fully observed ``as_of``.
        dropped_crossover: examples dropped because their lead belongs to an earlier window.
        dropped_embargo: training examples dropped by the embargo.
        dropped_validation_embargo: validation examples dropped by the validation embargo.
        label_days: how far a label looks past its ``as_of``.
    """

    train: ExampleSet
    validation: ExampleSet
    test: ExampleSet
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp
    dropped_crossover: int
    dropped_embargo: int
    dropped_validation_embargo: int = 0
    label_days: int = 0

    def parts(self) -> dict[str, ExampleSet]:
        """The three example sets by window name."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def summary(self) -> dict[str, Any]:
        """Window bounds, sizes and positive rates (logged with the run)."""
        sizes = {name: _describe(part) for name, part in self.parts().items()}
        return {
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "end": self.end.isoformat(),
            "dropped_crossover": self.dropped_crossover,
            "dropped_embargo": self.dropped_embargo,
            "dropped_validation_embargo": self.dropped_validation_embargo,
            "validation_labels_past_test_start_days": self.validation_labels_past_test_start(),
            **sizes,
        }

    def validation_labels_past_test_start(self) -> float:
        """How many days past ``test_start`` the validation labels look (0 when none do).

        Early stopping and calibration are fitted on validation, so over these days they
        learnt outcomes of the test window's period: its base rate, under drift. Set
        ``split.validation_embargo_days`` to the horizon to make it 0.
        """
        if len(self.validation) == 0:
            return 0.0
        reach = self.validation.keys["as_of"].max() + pd.Timedelta(days=self.label_days)
        return round(max(0.0, (reach - self.test_start) / pd.Timedelta(days=1)), 1)


def split_by_time(examples: ExampleSet, config: SplitConfig, horizon_days: int = 0) -> TimeSplit:
    """Split uncensored examples into train, validation and test windows.

    Args:
        examples: labelled, uncensored examples.
        config: the window lengths and embargo.
        horizon_days: how far labels look past ``as_of`` (``FeatureConfig.label_days``), the
            embargo when ``config.embargo_days`` is None.

    Raises:
        ValueError: the examples hold censored ones.
        SplitError: no example is fully observed, or a window is empty or has a single
            class.
    """
    if examples.labels is None or np.isnan(examples.labels.target).any():
        raise ValueError("split_by_time takes labelled, uncensored examples only")
    if len(examples) == 0:  # else "the train window (empty)", as if the windows were too long
        raise SplitError(f"{none_observed(horizon_days)}; use a longer export or a shorter horizon")
    as_of = examples.keys["as_of"]
    end = as_of.max()
    test_start = end - pd.Timedelta(days=config.test_days)
    validation_start = test_start - pd.Timedelta(days=config.validation_days)
    window = np.where(as_of > test_start, 2, np.where(as_of > validation_start, 1, 0))
    lead_window = pd.Series(window).groupby(examples.keys["lead_id"].to_numpy()).transform("min")
    keep = window == lead_window.to_numpy()
    embargo_days = horizon_days if config.embargo_days is None else config.embargo_days
    embargo = validation_start - pd.Timedelta(days=embargo_days)
    embargoed = keep & (window == 0) & (as_of > embargo).to_numpy()
    validation_embargo = test_start - pd.Timedelta(days=config.validation_embargo_days)
    validation_embargoed = keep & (window == 1) & (as_of > validation_embargo).to_numpy()
    dropped = embargoed | validation_embargoed
    train, validation, test = (examples.take(keep & ~dropped & (window == i)) for i in range(3))
    split = TimeSplit(
        train,
        validation,
        test,
        validation_start,
        test_start,
        end,
        dropped_crossover=int((~keep).sum()),
        dropped_embargo=int(embargoed.sum()),
        dropped_validation_embargo=int(validation_embargoed.sum()),
        label_days=horizon_days,
    )
    _check(split)
    return split


def fitted_through(metadata: Mapping[str, Any]) -> pd.Timestamp | None:
    """The latest ``as_of`` a trained model may have been fitted on, from its metadata.

    That is the start of its test window (``test_start``): every training and validation
    example (the booster, its early stopping and its calibration) is scored at or before
    it, every test example after it. A window is decided by ``as_of`` alone: the embargoes
    only drop examples, and a label that looks a horizon past its ``as_of`` leaves the
    example in its window. So, in any export, an example scored after ``test_start`` is one
    the model was not fitted on; one scored at or before it may be.

    Returns:
        The moment, or None when the metadata records no test window (a model saved by
        hand, or one trained before the window was recorded).
    """
    start = (metadata.get("test_window") or {}).get("start")
    return as_utc(pd.Timestamp(start)) if start else None


def none_observed(horizon_days: int) -> str:
    """Why an export yields no labelled example at all."""
    return (
        f"no example is fully observed: every label, which looks {horizon_days} days past "
        "its as_of, reaches past the export's end"
    )


def moment_text(moment: pd.Timestamp) -> str:
    """A window's cut as people read it: ``2024-12-31 21:45:57 UTC``."""
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def seen_in_fitting(keys: pd.DataFrame, through: pd.Timestamp) -> np.ndarray:
    """Whether each example (by its ``as_of``) is from the period a model was fitted on."""
    return (keys["as_of"] <= through).to_numpy()


def _check(split: TimeSplit) -> None:
    for name, part in split.parts().items():
        assert part.labels is not None
        classes = np.unique(part.labels.target)
        if len(classes) < 2:
            raise SplitError(_one_class_message(name, part, classes))


def _one_class_message(name: str, part: ExampleSet, classes: np.ndarray) -> str:
    """Why a window with examples of one class only cannot be used, in the data's words."""
    where = f"the {name} window ({_span(part)}) has {len(part):,} examples"
    if len(classes) == 1 and classes[0] == 0:
        return (
            f"{where}, none of which came back within the horizon: the export may lack "
            "the outcomes (an opportunities table empty or not exported) or the window be "
            "too short; use a longer export or shorter windows"
        )
    if len(classes) == 1:
        return (
            f"{where}, all of which came back within the horizon: nothing to tell apart; "
            "use a longer export or shorter windows"
        )
    return f"{where}; use a longer export or shorter windows"


def _span(part: ExampleSet) -> str:
    if len(part) == 0:
        return "empty"
    as_of = part.keys["as_of"]
    return f"{as_of.min():%Y-%m-%d} to {as_of.max():%Y-%m-%d}"


def _describe(part: ExampleSet) -> dict[str, Any]:
    assert part.labels is not None
    return {
        "examples": len(part),
        "leads": int(part.keys["lead_id"].nunique()),
        "positives": int(part.labels.target.sum()),
        "positive_rate": float(part.labels.target.mean()) if len(part) else float("nan"),
        "span": _span(part),
    }
