"""Scoring requests as one ``History``: every request's lead, built in one pass.

A request carries one lead's own rows. ``requests_history`` turns any number of requests
(one for ``/v1/score``, many for a batch, for coalesced calls or for MLflow's pyfunc) into a
single multi-lead history, lead ``i`` being request ``i``, by flattening each table's rows
across requests and sorting once, so a batch costs a few numpy calls rather than a few per
lead. Every feature is computed per lead, so a lead's features are the same alone or among
others (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples
from features.history import (
    CODES,
    LEAD_CODE_COLUMNS,
    LEAD_NUMBER_COLUMNS,
    LEAD_TEXT_COLUMNS,
    REJECTION_CODE_COLUMNS,
    Events,
    History,
    Rejections,
    opportunity_blocks,
)
from features.numbers import custom_number
from features.records import RejectionRecord, ScoreRequest
from features.text import text_of
from features.timestamps import microseconds, utc_microseconds


def requests_history(
    requests: Sequence[ScoreRequest], config: FeatureConfig, now: datetime
) -> tuple[History, Examples]:
    """One history holding every request's lead, and the example to score for each.

    Args:
        requests: validated scoring requests.
        config: the model's feature configuration (its custom lead columns).
        now: the moment used for requests without ``as_of``.

    Returns:
        The history (lead ``i`` is request ``i``) and one example per request, in order:
        the request's rejection scored at its ``as_of`` (or ``now``), never before the
        rejection itself.
    """
    history, scored_rows = history_from_requests(requests, config)
    as_of = np.fromiter(
        (
            max(microseconds(r.resolved_as_of(now)), microseconds(r.rejection.rejected_at))
            for r in requests
        ),
        np.int64,
        len(requests),
    )
    return history, Examples.at(history, scored_rows, as_of)


def history_from_requests(
    requests: Sequence[ScoreRequest], config: FeatureConfig
) -> tuple[History, np.ndarray]:
    """The history of every request's lead, and the row of each request's scored rejection."""
    leads = [request.lead for request in requests]
    rejections, scored_rows = _rejections(requests)
    created, closed = _opportunities(requests)
    return (
        History(
            lead_id=np.array([lead.lead_id for lead in leads], dtype=object),
            lead_created=utc_microseconds([lead.created_at for lead in leads]),
            lead_codes={
                c: _codes(c, [getattr(lead, c) for lead in leads]) for c in LEAD_CODE_COLUMNS
            },
            lead_text=_lead_text(leads, config),
            lead_numbers=_lead_numbers(leads, config),
            activities=_events(requests, "activities", "occurred_at", "activity_type"),
            opportunities_created=created,
            opportunities_closed=closed,
            consent=_events(requests, "consent", "changed_at", "status"),
            rejections=rejections,
        ),
        scored_rows,
    )


def _lead_text(leads: list[Any], config: FeatureConfig) -> dict[str, np.ndarray]:
    text = {
        c: np.array([getattr(lead, c) for lead in leads], dtype=object) for c in LEAD_TEXT_COLUMNS
    }
    for column in config.custom_columns.categorical:
        values = [lead.custom_value(column) for lead in leads]
        text[column] = np.array([text_of(v) for v in values], dtype=object)
    return text


def _lead_numbers(leads: list[Any], config: FeatureConfig) -> dict[str, np.ndarray]:
    numbers = {
        c: np.array([_float(getattr(lead, c)) for lead in leads], dtype=np.float64)
        for c in LEAD_NUMBER_COLUMNS
    }
    for column in config.custom_columns.numeric:
        values = [custom_number(lead.custom_value(column)) for lead in leads]
        numbers[column] = np.array(values, dtype=np.float64)
    return numbers


#: The contract vocabulary of each event table's kind column.
EVENT_VOCABULARY = {"activities": "activity_type", "consent": "consent_status"}


def _owners(counts: list[int]) -> np.ndarray:
    """The lead (request index) of each flattened row, given rows per request."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _events(requests: Sequence[ScoreRequest], table: str, time: str, kind: str) -> Events:
    """One event table of every request: rows ``request.<table>``, times and codes by name."""
    per_request = [getattr(request, table) for request in requests]
    rows = [row for group in per_request for row in group]
    return Events.build(
        _owners([len(group) for group in per_request]),
        utc_microseconds(list(map(attrgetter(time), rows))),
        _codes(EVENT_VOCABULARY[table], list(map(attrgetter(kind), rows))),
    )


def _opportunities(requests: Sequence[ScoreRequest]) -> tuple[Events, Events]:
    """Creations and closures of every request's opportunities."""
    per_request = [request.opportunities for request in requests]
    rows = [row for group in per_request for row in group]
    blocks = opportunity_blocks(
        _owners([len(group) for group in per_request]),
        utc_microseconds([row.created_at for row in rows]),
        np.array([microseconds(row.closed_at) for row in rows], dtype=np.int64),
        _codes("opportunity_status", [row.status for row in rows]),
        np.array([_float(row.amount) for row in rows], dtype=np.float64),
    )
    return blocks["opportunities_created"], blocks["opportunities_closed"]


def _rejections(requests: Sequence[ScoreRequest]) -> tuple[Rejections, np.ndarray]:
    """Every request's rejections sorted by (lead, time, id), and each scored one's row."""
    per_request: list[list[RejectionRecord]] = [
        [*request.earlier_rejections, request.rejection] for request in requests
    ]
    rows = [row for group in per_request for row in group]
    lead = _owners([len(group) for group in per_request])
    time = utc_microseconds([row.rejected_at for row in rows])
    ids = np.array([row.rejection_id for row in rows], dtype=object)
    scored = np.zeros(len(rows), dtype=bool)
    scored[np.cumsum([len(group) for group in per_request]) - 1] = True
    rank_of = {rejection_id: rank for rank, rejection_id in enumerate(sorted(set(ids)))}
    id_rank = np.fromiter((rank_of[i] for i in ids), np.int64, len(ids))
    order = np.lexsort((id_rank, time, lead))
    rejections = Rejections(
        lead=lead[order],
        time=time[order],
        rejection_id=ids[order],
        codes={
            c: _codes(c, [getattr(row, c) for row in rows])[order] for c in REJECTION_CODE_COLUMNS
        },
        follow_up=np.array([microseconds(row.follow_up_date) for row in rows], np.int64)[order],
        lead_score=np.array([_float(row.lead_score_at_rejection) for row in rows])[order],
        program=np.array([row.recommended_program for row in rows], dtype=object)[order],
    )
    return rejections, np.flatnonzero(scored[order])


def _codes(column: str, values: Sequence[str | None]) -> np.ndarray:
    codes = CODES[column]
    return np.fromiter((-1 if v is None else codes[v] for v in values), np.int64, len(values))


def _float(value: float | int | None) -> float:
    return np.nan if value is None else float(value)
