"""A lead history as sorted numpy columns: the one input shape of the feature engine.

Both a whole export (training, batch scoring) and one API request (one lead's rows) are
turned into a ``History``; the engine never sees pandas or pydantic, so both paths run the
same arithmetic on the same integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import (
    ACTIVITY_TYPES,
    BARRIER_SIDES,
    CONSENT_STATUSES,
    JOB_LEVELS,
    LEAD_SOURCES,
    OPPORTUNITY_STATUSES,
    PRODUCT_FITS,
    REASON_CODES,
    REP_POTENTIALS,
    STAGES,
)
from features.loading import Export, positions_in
from features.numbers import numbers_from_text
from features.text import texts_of
from features.timestamps import MISSING_TIME, to_microseconds

DAY_US = 86_400_000_000
#: The settling time of an event whose kind is not final yet (an opportunity still open).
NEVER = np.iinfo(np.int64).max

LEAD_TEXT_COLUMNS = ("industry", "country", "job_title")
LEAD_CODE_COLUMNS = {
    "lead_source": LEAD_SOURCES,
    "job_level": JOB_LEVELS,
    "product_fit": PRODUCT_FITS,
}
LEAD_NUMBER_COLUMNS = ("employee_count", "annual_revenue")
REJECTION_CODE_COLUMNS = {
    "reason_code": REASON_CODES,
    "stage_at_rejection": STAGES,
    "barrier_side": BARRIER_SIDES,
    "rep_potential": REP_POTENTIALS,
}
CODES = {
    name: {value: i for i, value in enumerate(vocab)}
    for name, vocab in {
        **LEAD_CODE_COLUMNS,
        **REJECTION_CODE_COLUMNS,
        "activity_type": ACTIVITY_TYPES,
        "opportunity_status": OPPORTUNITY_STATUSES,
        "consent_status": CONSENT_STATUSES,
    }.items()
}


@dataclass(frozen=True)
class Events:
    """Timed events of many leads, sorted by (lead, time, kind).

    Attributes:
        lead: lead index (into ``History.lead_id``) of each event.
        time: event time, int64 microseconds since the epoch (UTC).
        kind: an integer code (activity type, consent status, ...).
        value: an optional float per event (an opportunity amount).
        settled_at: when ``kind`` became final: the event time for an activity or a consent
            change; an opportunity's close for its status (``NEVER`` while it is open).
    """

    lead: np.ndarray
    time: np.ndarray
    kind: np.ndarray
    value: np.ndarray
    settled_at: np.ndarray

    @staticmethod
    def build(lead: Any, time: Any, kind: Any, value: Any = None, settled_at: Any = None) -> Events:
        """Sort raw columns into an ``Events`` block (settled at their time by default)."""
        lead = np.asarray(lead, dtype=np.int64)
        time = np.asarray(time, dtype=np.int64)
        kind = np.asarray(kind, dtype=np.int64)
        value = np.zeros(len(lead)) if value is None else np.asarray(value, dtype=np.float64)
        settled = time if settled_at is None else np.asarray(settled_at, dtype=np.int64)
        known = lead >= 0  # rows of leads absent from the leads table belong to no history
        order = np.lexsort((kind, time, lead))
        order = order[known[order]]
        return Events(lead[order], time[order], kind[order], value[order], settled[order])

    def __len__(self) -> int:
        return len(self.lead)

    def between_leads(self, first: int, stop: int) -> Events:
        """Events of leads ``first <= lead < stop``, re-indexed from zero."""
        lo, hi = np.searchsorted(self.lead, [first, stop], side="left")
        return Events(
            self.lead[lo:hi] - first,
            self.time[lo:hi],
            self.kind[lo:hi],
            self.value[lo:hi],
            self.settled_at[lo:hi],
        )


@dataclass(frozen=True)
class Rejections:
    """Rejections sorted by (lead, rejected_at, rejection_id)."""

    lead: np.ndarray
    time: np.ndarray
    rejection_id: np.ndarray
    codes: dict[str, np.ndarray]
    follow_up: np.ndarray
    lead_score: np.ndarray
    program: np.ndarray

    def __len__(self) -> int:
        return len(self.lead)

    def take(self, rows: np.ndarray) -> Rejections:
        """The rejections at positions ``rows`` (already in sorted order)."""
        return Rejections(
            self.lead[rows],
            self.time[rows],
            self.rejection_id[rows],
            {name: codes[rows] for name, codes in self.codes.items()},
            self.follow_up[rows],
            self.lead_score[rows],
            self.program[rows],
        )


@dataclass(frozen=True)
class History:
    """Every row the features may use, for a set of leads, as sorted numpy columns."""

    lead_id: np.ndarray
    lead_created: np.ndarray
    lead_codes: dict[str, np.ndarray]
    lead_text: dict[str, np.ndarray]
    lead_numbers: dict[str, np.ndarray]
    activities: Events
    opportunities_created: Events
    opportunities_closed: Events
    consent: Events
    rejections: Rejections
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_leads(self) -> int:
        """How many leads the history holds."""
        return len(self.lead_id)

    def latest_consent(self, lead: np.ndarray) -> np.ndarray:
        """Each lead's latest consent code in the whole history (-1: never changed).

        Unlike the ``consent_status`` feature (consent at ``as_of``), this reads every
        row, later ones included: contact happens now, so a later opt-out must count. At
        equal times the most restrictive status wins, as in the feature.
        """
        consent = self.consent
        stops = np.searchsorted(consent.lead, lead, side="right")
        starts = np.searchsorted(consent.lead, lead, side="left")
        latest = consent.kind[np.maximum(stops - 1, 0)] if len(consent) else np.zeros(len(lead))
        return np.where(stops > starts, latest, -1).astype(np.int64)

    def between_leads(self, first: int, stop: int) -> History:
        """The history of leads ``first <= lead < stop``, re-indexed from zero."""
        lo, hi = np.searchsorted(self.rejections.lead, [first, stop], side="left")
        rejections = self.rejections.take(np.arange(lo, hi))
        return replace(
            self,
            lead_id=self.lead_id[first:stop],
            lead_created=self.lead_created[first:stop],
            lead_codes={k: v[first:stop] for k, v in self.lead_codes.items()},
            lead_text={k: v[first:stop] for k, v in self.lead_text.items()},
            lead_numbers={k: v[first:stop] for k, v in self.lead_numbers.items()},
            activities=self.activities.between_leads(first, stop),
            opportunities_created=self.opportunities_created.between_leads(first, stop),
            opportunities_closed=self.opportunities_closed.between_leads(first, stop),
            consent=self.consent.between_leads(first, stop),
            rejections=replace(rejections, lead=rejections.lead - first),
        )


def history_from_export(export: Export, config: FeatureConfig) -> History:
    """Turn a loaded export into a ``History`` (leads in the order of the leads table)."""
    leads = export.leads
    index = pd.Index(leads["lead_id"])
    return History(
        lead_id=leads["lead_id"].to_numpy(dtype=object),
        lead_created=to_microseconds(leads["created_at"]),
        lead_codes={c: _category_codes(leads[c]) for c in LEAD_CODE_COLUMNS},
        lead_text={
            c: _text_column(leads, c)
            for c in (*LEAD_TEXT_COLUMNS, *config.custom_columns.categorical)
        },
        lead_numbers={
            c: _number_column(leads, c)
            for c in (*LEAD_NUMBER_COLUMNS, *config.custom_columns.numeric)
        },
        activities=Events.build(
            positions_in(index, export.activities["lead_id"]),
            to_microseconds(export.activities["occurred_at"]),
            _category_codes(export.activities["activity_type"]),
        ),
        **_opportunity_events(export.opportunities, index),
        consent=Events.build(
            positions_in(index, export.consent["lead_id"]),
            to_microseconds(export.consent["changed_at"]),
            _category_codes(export.consent["status"]),
        ),
        rejections=_rejections_from_frame(export.rejections, index),
    )


def _category_codes(series: pd.Series) -> np.ndarray:
    return np.asarray(series.cat.codes, dtype=np.int64)


def _text_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A text column as objects (None when missing); a custom column of Parquet numbers or
    booleans is written as text by ``features.text``, as the contract's text columns are."""
    if column not in frame:
        return np.full(len(frame), None, dtype=object)
    values, _ = texts_of(frame[column])
    return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)


def _number_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return numbers_from_text(frame[column])


def _opportunity_events(opportunities: pd.DataFrame, index: pd.Index) -> dict[str, Any]:
    lead = positions_in(index, opportunities["lead_id"])
    created = to_microseconds(opportunities["created_at"])
    closed = to_microseconds(opportunities["closed_at"])
    status = _category_codes(opportunities["status"])
    amount = opportunities["amount"].to_numpy(dtype=np.float64)
    return opportunity_blocks(lead, created, closed, status, amount)


def opportunity_blocks(
    lead: np.ndarray,
    created: np.ndarray,
    closed: np.ndarray,
    status: np.ndarray,
    amount: np.ndarray,
) -> dict[str, Any]:
    """Opportunities as two event streams: creations, and closures (won or lost).

    A creation carries the final status, settled at the close: a status without a close
    date is never settled, as features never count it as closed.
    """
    is_closed = (closed != MISSING_TIME) & (status != CODES["opportunity_status"]["open"])
    closed_at = np.maximum(closed, created)
    settled_at = np.where(is_closed, closed_at, NEVER)
    return {
        "opportunities_created": Events.build(lead, created, status, amount, settled_at),
        "opportunities_closed": Events.build(
            lead[is_closed], closed_at[is_closed], status[is_closed], amount[is_closed]
        ),
    }


def _rejections_from_frame(rejections: pd.DataFrame, index: pd.Index) -> Rejections:
    lead = positions_in(index, rejections["lead_id"])
    time = to_microseconds(rejections["rejected_at"])
    ids = rejections["rejection_id"].to_numpy(dtype=object)
    id_rank = pd.factorize(ids, sort=True)[0]
    order = np.lexsort((id_rank, time, lead))
    order = order[lead[order] >= 0]  # rejections of leads absent from the leads table
    return Rejections(
        lead=lead[order].astype(np.int64),
        time=time[order],
        rejection_id=ids[order],
        codes={c: _category_codes(rejections[c])[order] for c in REJECTION_CODE_COLUMNS},
        follow_up=to_microseconds(rejections["follow_up_date"])[order],
        lead_score=rejections["lead_score_at_rejection"].to_numpy(dtype=np.float64)[order],
        program=_text_column(rejections, "recommended_program")[order],
    )
