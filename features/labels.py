"""Labels from the future of each example, and censoring where that future is unseen.

Labels are the only code that reads rows after ``as_of``: opportunities created in
``(as_of, as_of + horizon]``, and their status as known at the snapshot (a close dated
after the snapshot has not happened yet). An example whose horizon runs past the export's
snapshot has an unknown label: it is censored, never a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples
from features.history import CODES, DAY_US, Events, History
from features.positions import event_positions, prefix_counts

WON = CODES["opportunity_status"]["won"]
OPEN = CODES["opportunity_status"]["open"]


@dataclass(frozen=True)
class Labels:
    """Outcomes of each example.

    Attributes:
        reconverted: 1.0 when an opportunity was created within the horizon (NaN when the
            horizon is not fully observed).
        won: 1.0 when such an opportunity was closed won by the snapshot (NaN when unknown:
            horizon unobserved, or only opportunities still open at the snapshot in the
            window).
        censored: the configured target's label is unknown (horizon past the snapshot,
            or, for ``won``, the only opportunities in the window are still open at the
            snapshot).
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
    """Label every example for the configured horizon and target."""
    created = history.opportunities_created
    lead = history.rejections.lead[examples.rejection_row]
    horizon_end = examples.as_of + config.horizon_days * DAY_US
    first, last = event_positions(created, lead, [examples.as_of, horizon_end])
    in_window = last - first
    reconverted = (in_window > 0).astype(np.float64)
    days = np.full(len(examples), np.nan)
    hit = in_window > 0
    days[hit] = (created.time[first[hit]] - examples.as_of[hit]) / DAY_US
    status_counts = prefix_counts(status_at(created, snapshot_us), len(CODES["opportunity_status"]))
    window_counts = status_counts[last] - status_counts[first]
    won = (window_counts[:, WON] > 0).astype(np.float64)
    horizon_unseen = horizon_end > snapshot_us
    won_unknown = horizon_unseen | ((won == 0) & (window_counts[:, OPEN] > 0))
    reconverted[horizon_unseen] = np.nan
    won[won_unknown] = np.nan
    days[horizon_unseen] = np.nan
    censored = won_unknown if config.target == "won" else horizon_unseen
    target = (won if config.target == "won" else reconverted).copy()
    return Labels(reconverted, won, censored, days, target)


def status_at(created: Events, moment_us: int) -> np.ndarray:
    """Each opportunity's status as known at ``moment_us``: open until it has closed."""
    return np.where(created.settled_at <= moment_us, created.kind, OPEN)
