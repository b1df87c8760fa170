"""Which (rejection, as_of) pairs to featurise: training points, open rejections, a request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.config import FeatureConfig
from features.history import DAY_US, History
from features.positions import event_positions, positions


@dataclass(frozen=True)
class Examples:
    """Points at which a rejection is scored.

    Attributes:
        rejection_row: index into ``History.rejections`` (sorted order).
        as_of: the scoring moment, int64 microseconds since the epoch (UTC).
        offset_days: whole days from the rejection to ``as_of``.
    """

    rejection_row: np.ndarray
    as_of: np.ndarray
    offset_days: np.ndarray

    def __len__(self) -> int:
        return len(self.rejection_row)

    @staticmethod
    def at(history: History, rows: np.ndarray, as_of: np.ndarray) -> Examples:
        """Examples for rejection ``rows`` scored at ``as_of``."""
        rows = np.asarray(rows, dtype=np.int64)
        as_of = np.asarray(as_of, dtype=np.int64)
        offset = (as_of - history.rejections.time[rows]) // DAY_US
        return Examples(rows, as_of, offset.astype(np.int64))

    def take(self, mask: np.ndarray) -> Examples:
        """The examples selected by a boolean mask or index array."""
        return Examples(self.rejection_row[mask], self.as_of[mask], self.offset_days[mask])


def is_open(history: History, rows: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """Whether each rejection is still open at ``as_of``.

    Open means no opportunity was created for the lead in ``(rejected_at, as_of]`` and no
    strictly later rejection of the lead happened by ``as_of`` (rejections at the very same
    moment are neither earlier nor later than each other). Only rows at or before
    ``as_of`` are consulted.
    """
    rejections = history.rejections
    lead = rejections.lead[rows]
    rejected_at = rejections.time[rows]
    created = history.opportunities_created
    after, upto = event_positions(created, lead, [rejected_at, as_of])
    no_new_opportunity = upto == after
    # Every rejection of the lead in (rejected_at, as_of], not only the next row: the next
    # may share this one's moment while a truly later one follows it.
    after, upto = positions(rejections.lead, rejections.time, lead, [rejected_at, as_of])
    return no_new_opportunity & (upto == after)


def training_examples(history: History, config: FeatureConfig, snapshot_us: int) -> Examples:
    """One example per rejection and re-scoring offset while the rejection is still open.

    Offsets whose ``as_of`` lies past the snapshot are skipped (that moment has not
    happened in the data); offset 0 (scoring at rejection) is always open.
    """
    n = len(history.rejections)
    offsets = np.asarray(config.rescore_offsets_days, dtype=np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), len(offsets))
    offset = np.tile(offsets, n)
    as_of = history.rejections.time[rows] + offset * DAY_US
    keep = as_of <= snapshot_us
    rows, as_of = rows[keep], as_of[keep]
    keep = is_open(history, rows, as_of)
    return Examples.at(history, rows[keep], as_of[keep])


def open_rejection_examples(history: History, as_of_us: int) -> Examples:
    """Every rejection open at ``as_of_us``: each lead's latest rejection by then, if open."""
    rejections = history.rejections
    rejected_by_then = rejections.time <= as_of_us
    rows = np.flatnonzero(rejected_by_then)
    if rows.size == 0:
        return Examples.at(history, rows, rows)
    lead = rejections.lead[rows]
    latest = np.append(lead[1:] != lead[:-1], True)
    rows = rows[latest]
    as_of = np.full(rows.size, as_of_us, dtype=np.int64)
    keep = is_open(history, rows, as_of)
    return Examples.at(history, rows[keep], as_of[keep])
