"""What a lead's whole history says about contacting it now, rows after ``as_of`` included.

Features are point in time; the decision to contact is not only: contact happens now, so a
refusal recorded after ``as_of`` must still hold a lead back. Two signals are read here, per
scored row, from every row of the lead's history:

- its latest consent status (``History.latest_consent``);
- whether a rejection of the lead with reason ``do_not_contact`` still stands. A rep who
  records that reason records the person's request not to be contacted, made at
  ``rejected_at``. It holds for every other rejection of the lead too, until the person opts
  back in: a consent row ``subscribed`` dated strictly after it. The request counts when it
  stands at ``as_of`` (an opt-in after ``as_of`` does not lift it, as a later opt-in does
  not lift an opt-out in force at ``as_of``) or when it stands in the data as a whole (a
  request recorded after ``as_of``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.config import FeatureConfig
from features.history import CODES, History
from features.positions import positions
from features.records import ScoreRequest
from features.request_history import history_from_requests
from features.timestamps import MISSING_TIME

DO_NOT_CONTACT_REASON = CODES["reason_code"]["do_not_contact"]
SUBSCRIBED = CODES["consent_status"]["subscribed"]
END_OF_TIME = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ContactNow:
    """Each scored row's contact signals from the lead's whole history.

    Attributes:
        latest_consent: the latest consent code of the lead (-1 when it never changed).
        refused_by_rejection: a ``do_not_contact`` rejection of the lead still stands.
    """

    latest_consent: np.ndarray
    refused_by_rejection: np.ndarray

    @staticmethod
    def read(history: History, lead: np.ndarray, as_of: np.ndarray) -> ContactNow:
        """The signals of each scored row, given its lead index and its ``as_of``."""
        return ContactNow(
            latest_consent=history.latest_consent(lead),
            refused_by_rejection=refused_by_rejection(history, lead, as_of),
        )

    @staticmethod
    def known_at(history: History, lead: np.ndarray, as_of: np.ndarray) -> ContactNow:
        """The signals as they stood at each row's ``as_of``, rows after it unread: what a
        replay of past scoring may use (capacity planning) without reading the future.
        Consent at ``as_of`` is the features' own, so no later consent is given."""
        return ContactNow(
            latest_consent=np.full(len(lead), -1, dtype=np.int64),
            refused_by_rejection=refused_by_rejection(history, lead, as_of, until_now=False),
        )


def contact_in_one_call(
    requests: Sequence[ScoreRequest], history: History, as_of: np.ndarray, config: FeatureConfig
) -> ContactNow:
    """Each request's contact signals, from every row the call holds about its lead.

    Request ``i`` is lead ``i`` of ``history`` (``features.request_history``), so a lead
    sent as several items of one batch call, one per rejection, would be judged by each
    item's rows alone: an item carrying the person's ``do_not_contact`` (a consent row, or
    its own rejection's reason) would not hold back the others. Contact is not a feature,
    so the items of a lead are read here as one lead holding the consent rows and the
    rejections of all of them (linear in the rows: one merged lead per lead id), while each
    item's features stay its own (its probability does not depend on the other items).
    """
    lead_ids = [request.lead.lead_id for request in requests]
    if len(set(lead_ids)) == len(lead_ids):  # the usual call: nothing to share
        return ContactNow.read(history, np.arange(len(requests)), as_of)
    groups: dict[str, list[ScoreRequest]] = {}
    for request, lead_id in zip(requests, lead_ids, strict=True):
        groups.setdefault(lead_id, []).append(request)
    merged = [_one_lead(items) for items in groups.values()]
    position = {lead_id: index for index, lead_id in enumerate(groups)}
    group_of = np.fromiter((position[i] for i in lead_ids), np.int64, len(lead_ids))
    shared, _ = history_from_requests(merged, config)
    return ContactNow.read(shared, group_of, as_of)


def _one_lead(items: list[ScoreRequest]) -> ScoreRequest:
    """The first item with the consent rows and rejections of every item of its lead.

    Every copy of a rejection is kept, even two copies of one ``rejection_id`` that differ
    (items built from exports of different moments): a ``do_not_contact`` in any of them
    holds, whatever the order of the items. Repeated rows change no contact signal.
    """
    first = items[0]
    if len(items) == 1:
        return first
    rejections = [
        *first.earlier_rejections,
        *(row for item in items[1:] for row in (item.rejection, *item.earlier_rejections)),
    ]
    consent = [row for item in items for row in item.consent]
    return first.model_copy(update={"consent": consent, "earlier_rejections": rejections})


def refused_by_rejection(
    history: History, lead: np.ndarray, as_of: np.ndarray, until_now: bool = True
) -> np.ndarray:
    """Whether a ``do_not_contact`` rejection of each lead stands at ``as_of`` or now.

    A request stands when no ``subscribed`` consent row of the lead is dated strictly after
    it (at equal times the refusal wins). "At ``as_of``" reads the rows up to ``as_of``;
    "now" reads every row (left out when ``until_now`` is false).
    """
    lead = np.asarray(lead, dtype=np.int64)
    rejections, consent = history.rejections, history.consent
    asked = rejections.codes["reason_code"] == DO_NOT_CONTACT_REASON
    if not asked.any():  # the usual case: nobody asked, nothing more to look up
        return np.zeros(len(lead), dtype=bool)
    moments = [np.asarray(as_of, dtype=np.int64)]
    if until_now:
        moments.append(np.full(len(lead), END_OF_TIME))
    opted_in = consent.kind == SUBSCRIBED
    requests = _latest_times(rejections.lead[asked], rejections.time[asked], lead, moments)
    opt_ins = _latest_times(consent.lead[opted_in], consent.time[opted_in], lead, moments)
    standing = np.zeros(len(lead), dtype=bool)
    for request, opt_in in zip(requests, opt_ins, strict=True):
        standing |= (request != MISSING_TIME) & (opt_in <= request)
    return standing


def _latest_times(
    event_lead: np.ndarray,
    event_time: np.ndarray,
    lead: np.ndarray,
    moments: Sequence[np.ndarray],
) -> list[np.ndarray]:
    """Per moment: each lead's latest event time at or before it (``MISSING_TIME``: none).

    Events are sorted by (lead, time).
    """
    if len(event_lead) == 0:
        return [np.full(len(lead), MISSING_TIME, dtype=np.int64) for _ in moments]
    first = np.searchsorted(event_lead, lead, side="left")
    return [
        np.where(stop > first, event_time[np.maximum(stop - 1, 0)], MISSING_TIME)
        for stop in positions(event_lead, event_time, lead, moments)
    ]
