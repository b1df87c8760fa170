"""Point-in-time look-ups over events sorted by (lead, time): the engine's one primitive.

For a query (lead, t), the position is the index just past the lead's last event at or
before ``t`` (``side="right"``) or strictly before ``t`` (``side="left"``). Subtracting the
lead's first index gives a count; differences of prefix sums between two positions give
counts in a window. Times are replaced by their dense rank among events and queries, so the
(lead, rank) pair packs exactly into one int64 and one ``searchsorted`` answers every query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from features.history import Events

#: Up to this many events a dense (events x kinds) table is cheaper than per-kind searches.
SMALL_EVENTS = 4096


def lead_starts(event_lead: np.ndarray, n_leads: int) -> np.ndarray:
    """Index of each lead's first event (length ``n_leads + 1``; the last is the total)."""
    return np.searchsorted(event_lead, np.arange(n_leads + 1), side="left")


def positions(
    event_lead: np.ndarray,
    event_time: np.ndarray,
    query_lead: np.ndarray,
    query_times: Sequence[np.ndarray],
    side: Literal["left", "right"] = "right",
) -> list[np.ndarray]:
    """Positions of each query among events sorted by (lead, time).

    Args:
        event_lead: lead index of each event, sorted ascending.
        event_time: event times, ascending within each lead.
        query_lead: lead index of each query.
        query_times: one or more arrays of query times, each as long as ``query_lead``.
        side: ``right`` counts events at the query time as before it; ``left`` does not.

    Returns:
        One int64 position array per entry of ``query_times``.
    """
    if len(event_lead) == 0:
        return [np.zeros(len(query_lead), dtype=np.int64) for _ in query_times]
    if _one_lead(event_lead, query_lead):
        return [np.searchsorted(event_time, t, side=side).astype(np.int64) for t in query_times]
    stacked = np.concatenate([event_time, *query_times])
    _, rank = np.unique(stacked, return_inverse=True)
    width = np.int64(rank.max()) + 2
    event_keys = event_lead * width + rank[: len(event_time)]
    found: list[np.ndarray] = []
    offset = len(event_time)
    for times in query_times:
        keys = query_lead * width + rank[offset : offset + len(times)]
        found.append(np.searchsorted(event_keys, keys, side=side).astype(np.int64))
        offset += len(times)
    return found


def _one_lead(event_lead: np.ndarray, query_lead: np.ndarray) -> bool:
    """True when every event and query belongs to the same lead (an API request)."""
    lead = event_lead[0]
    return bool(event_lead[-1] == lead and (query_lead == lead).all())


def event_positions(
    events: Events,
    query_lead: np.ndarray,
    query_times: Sequence[np.ndarray],
    side: Literal["left", "right"] = "right",
) -> list[np.ndarray]:
    """``positions`` for an ``Events`` block."""
    return positions(events.lead, events.time, query_lead, query_times, side)


def prefix_counts(kind: np.ndarray, n_kinds: int) -> np.ndarray:
    """Running counts per kind: row ``i`` counts events ``0 .. i-1`` (shape ``(n+1, k)``)."""
    counts = np.zeros((len(kind) + 1, n_kinds), dtype=np.int32)
    counts[np.arange(1, len(kind) + 1), kind] = 1
    return np.cumsum(counts, axis=0, dtype=np.int32)


def last_of_each_kind(kind: np.ndarray, n_kinds: int, upto: np.ndarray) -> np.ndarray:
    """Index of the last event of each kind before position ``upto`` (-1 when none).

    Returns an array of shape ``(len(upto), n_kinds)``; one binary search per kind keeps
    memory linear in the events.
    """
    if len(kind) <= SMALL_EVENTS:
        return _prefix_last(kind, n_kinds)[upto]
    last = np.full((len(upto), n_kinds), -1, dtype=np.int64)
    for code in range(n_kinds):
        where = np.flatnonzero(kind == code)
        if where.size:
            found = np.searchsorted(where, upto, side="left") - 1
            last[:, code] = np.where(found >= 0, where[np.maximum(found, 0)], -1)
    return last


def _prefix_last(kind: np.ndarray, n_kinds: int) -> np.ndarray:
    """Row ``i``: index of the last event of each kind before ``i`` (few events only)."""
    last = np.full((len(kind) + 1, n_kinds), -1, dtype=np.int64)
    last[np.arange(1, len(kind) + 1), kind] = np.arange(len(kind))
    return np.maximum.accumulate(last, axis=0)


def range_sums(values: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Sum of ``values[start:stop]`` per query, NaN as zero, added in event order.

    Adding each lead's own values one by one (rather than differencing a running total
    over all leads) keeps the result independent of which other leads share the batch,
    so one lead scores identically alone and inside an export. A sum past a float's range
    (amounts near 1.8e308 are valid input) saturates at the largest finite float of its sign,
    so every feature stays a finite number (one that overflows both ways counts as zero).
    """
    clean = np.where(np.isnan(values), 0.0, values)
    total = np.zeros(len(start))
    lengths = stop - start
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(int(lengths.max(initial=0))):
            active = lengths > step
            total[active] += clean[start[active] + step]
    largest = np.finfo(np.float64).max
    return np.nan_to_num(total, nan=0.0, posinf=largest, neginf=-largest)
