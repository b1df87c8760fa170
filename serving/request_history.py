"""Many scoring requests as one multi-lead ``History``, so a batch is featurised in one pass.

Each request is turned into its own one-lead history by ``features.history`` (the same code
as a single request); the histories are then stacked with their lead indices shifted. Every
feature is computed per lead, so a lead's features are the same alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples
from features.history import Events, History, Rejections, history_from_request, microseconds
from features.records import ScoreRequest


def requests_history(
    requests: Sequence[ScoreRequest], config: FeatureConfig, now: datetime
) -> tuple[History, Examples]:
    """One history holding every request's lead, and the example to score for each.

    Args:
        requests: validated scoring requests (at least one).
        config: the model's feature configuration.
        now: the moment used for requests without ``as_of``.

    Returns:
        The stacked history and one example per request, in request order.
    """
    histories = [history_from_request(request, config) for request in requests]
    history = stack_histories(histories)
    rows = _rejection_rows(histories, requests)
    as_of = np.array([_as_of(request, now) for request in requests], dtype=np.int64)
    return history, Examples.at(history, rows, as_of)


def _as_of(request: ScoreRequest, now: datetime) -> int:
    """``as_of`` (or now), never before the rejection, as in ``ReconversionModel``."""
    return max(
        microseconds(request.resolved_as_of(now)), microseconds(request.rejection.rejected_at)
    )


def _rejection_rows(histories: list[History], requests: Sequence[ScoreRequest]) -> np.ndarray:
    rows = np.empty(len(requests), dtype=np.int64)
    offset = 0
    for index, (history, request) in enumerate(zip(histories, requests, strict=True)):
        matches = np.flatnonzero(history.rejections.rejection_id == request.rejection.rejection_id)
        rows[index] = offset + matches[-1]
        offset += len(history.rejections)
    return rows


def stack_histories(histories: Sequence[History]) -> History:
    """Histories of disjoint leads as one, leads in the given order."""
    if len(histories) == 1:
        return histories[0]
    offsets = np.cumsum([0, *(h.n_leads for h in histories[:-1])])
    return History(
        lead_id=np.concatenate([h.lead_id for h in histories]),
        lead_created=np.concatenate([h.lead_created for h in histories]),
        lead_codes=_stack_columns([h.lead_codes for h in histories]),
        lead_text=_stack_columns([h.lead_text for h in histories]),
        lead_numbers=_stack_columns([h.lead_numbers for h in histories]),
        activities=_stack_events([h.activities for h in histories], offsets),
        opportunities_created=_stack_events([h.opportunities_created for h in histories], offsets),
        opportunities_closed=_stack_events([h.opportunities_closed for h in histories], offsets),
        consent=_stack_events([h.consent for h in histories], offsets),
        rejections=_stack_rejections([h.rejections for h in histories], offsets),
    )


def _stack_columns(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def _stack_events(blocks: list[Events], offsets: np.ndarray) -> Events:
    return Events(
        lead=np.concatenate([b.lead + o for b, o in zip(blocks, offsets, strict=True)]),
        time=np.concatenate([b.time for b in blocks]),
        kind=np.concatenate([b.kind for b in blocks]),
        value=np.concatenate([b.value for b in blocks]),
    )


def _stack_rejections(blocks: list[Rejections], offsets: np.ndarray) -> Rejections:
    return Rejections(
        lead=np.concatenate([b.lead + o for b, o in zip(blocks, offsets, strict=True)]),
        time=np.concatenate([b.time for b in blocks]),
        rejection_id=np.concatenate([b.rejection_id for b in blocks]),
        codes=_stack_columns([b.codes for b in blocks]),
        follow_up=np.concatenate([b.follow_up for b in blocks]),
        lead_score=np.concatenate([b.lead_score for b in blocks]),
        program=np.concatenate([b.program for b in blocks]),
    )
