"""Labels from the future of each example, and censoring where that future is unseen.

Labels are the only code that reads rows after ``as_of``: opportunities created in
``(as_of, as_of + horizon]`` and, for ``won``, whether one of them closed won by a fixed
deadline after the horizon. Censoring depends on time alone (``as_of``, the settings and the
snapshot), never on an outcome: an example whose label needs a moment past the export's
snapshot is censored, never a negative, and every other example is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples
from features.history import CODES, DAY_US, NEVER, Events, History
from features.positions import event_positions

WON = CODES["opportunity_status"]["won"]


@dataclass(frozen=True)
class Labels:
    """Outcomes of each example.

    Attributes:
        reconverted: 1.0 when an opportunity was created within the horizon (NaN when the
            horizon is not fully observed).
        won: 1.0 when such an opportunity was closed won by the won deadline,
            ``as_of + horizon + won_close_days`` (NaN when that deadline is after the
            snapshot). An opportunity still open at the deadline, or won after it, is not won.
        censored: the configured target's label is unknown: its horizon (``reconverted``)
            or its won deadline (``won``) lies after the snapshot.
        days_to_reconversion: days from ``as_of`` to the first such opportunity, else NaN.
        target: the configured target, as floats (NaN where censored).
    """

    reconverted: np.ndarray
    won: np.ndarray
    censored: np.ndarray
    days_to_reconversion: np.ndarray
    target: np.ndarray


def label_examples(
    history: History, examples: Examples, config: FeatureConfig, snapshot_us: int
) -> Labels:
    """Label every example for the configured horizon, won deadline and target."""
    created = history.opportunities_created
    lead = history.rejections.lead[examples.rejection_row]
    horizon_end = examples.as_of + config.horizon_days * DAY_US
    deadline = horizon_end + config.won_close_days * DAY_US
    first, last = event_positions(created, lead, [examples.as_of, horizon_end])
    reconverted = (last > first).astype(np.float64)
    days = _days_to_first(created, examples.as_of, first, last)
    won = (first_won_close(created, first, last) <= deadline).astype(np.float64)
    horizon_unseen = horizon_end > snapshot_us
    deadline_unseen = deadline > snapshot_us
    reconverted[horizon_unseen] = np.nan
    days[horizon_unseen] = np.nan
    won[deadline_unseen] = np.nan
    censored = deadline_unseen if config.target == "won" else horizon_unseen
    target = (won if config.target == "won" else reconverted).copy()
    return Labels(reconverted, won, censored, days, target)


def reconverted_by(history: History, examples: Examples, end_us: np.ndarray | int) -> np.ndarray:
    """Whether an opportunity of each example's lead was created in ``(as_of, end_us]``: a
    comeback seen by ``end_us``, for an example whose horizon ends after it."""
    created = history.opportunities_created
    lead = history.rejections.lead[examples.rejection_row]
    end = np.broadcast_to(np.asarray(end_us, dtype=np.int64), examples.as_of.shape)
    first, last = event_positions(created, lead, [examples.as_of, end])
    return np.asarray(last > first)


def _days_to_first(
    created: Events, as_of: np.ndarray, first: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """Days from ``as_of`` to the first opportunity in each window ``[first, last)``, else NaN."""
    days = np.full(len(as_of), np.nan)
    hit = last > first
    days[hit] = (created.time[first[hit]] - as_of[hit]) / DAY_US
    return days


def won_close_time(created: Events) -> np.ndarray:
    """When each opportunity closed won (``NEVER`` if it is open, lost, or has no close date)."""
    return np.where(created.kind == WON, created.settled_at, NEVER)


def first_won_close(created: Events, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The earliest won close among opportunities ``[first, last)`` of each window.

    A range minimum: ``np.minimum.reduceat`` over the interleaved bounds, on the won-close
    times followed by a ``NEVER`` sentinel so that a bound at the end stays a valid index.
    ``reduceat`` answers ``values[first]`` for an empty window, so those are ``NEVER``.
    """
    if len(first) == 0:
        return np.zeros(0, dtype=np.int64)
    values = np.append(won_close_time(created), NEVER)
    bounds = np.column_stack([first, last]).ravel()
    earliest = np.minimum.reduceat(values, bounds)[::2]
    return np.where(last > first, earliest, NEVER)
