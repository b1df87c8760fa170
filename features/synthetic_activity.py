"""What the synthetic leads do: engagement events and communication preferences.

Events come in layers, each drawn for all leads at once: a first touch from the lead
source, an MQL burst, background email/web noise that decays after a rejection, sales
touches while a deal or a sales stage is open, a re-engagement run-up in the weeks before
every comeback, and decoy bursts for some leads that never come back. Consent rows
(opt-ins, unsubscribes, do-not-contact) then silence email and sales events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.contract import ACTIVITY_TYPES, CONSENT_STATUSES, LEAD_SOURCES, REASON_CODES
from features.synthetic_deals import WON
from features.synthetic_journey import OPPORTUNITY, SAL, SQL, Journey
from features.synthetic_population import (
    COUNTRIES,
    OPT_IN_COUNTRIES,
    SECONDS_PER_DAY,
    Columns,
    Population,
    office_hours,
    pick,
)

SUBSCRIBED, UNSUBSCRIBED, DO_NOT_CONTACT = (
    CONSENT_STATUSES.index(s) for s in ("subscribed", "unsubscribed", "do_not_contact")
)
#: Mean background events per lead per day before intent and per-lead variation.
BACKGROUND_RATE = 0.022
Mix = dict[str, float]
BACKGROUND: Mix = {
    "email_open": 55, "web_visit": 22, "email_click": 10, "content_download": 4,
    "webinar_registered": 3, "webinar_attended": 1.5, "pricing_page_visit": 3,
    "event_attended": 0.5, "chat_conversation": 1, "form_submit": 1, "other": 0.5,
}  # fmt: skip
MQL_BURST: Mix = {
    "email_open": 25, "email_click": 15, "web_visit": 22, "content_download": 12,
    "webinar_registered": 6, "webinar_attended": 5, "form_submit": 5, "pricing_page_visit": 4,
    "event_attended": 2, "chat_conversation": 2, "demo_request": 2,
}  # fmt: skip
RUN_UP: Mix = {
    "pricing_page_visit": 22, "web_visit": 22, "content_download": 13, "email_click": 13,
    "demo_request": 8, "webinar_attended": 6, "form_submit": 5, "chat_conversation": 5,
    "email_open": 6,
}  # fmt: skip
DECOY: Mix = {
    "pricing_page_visit": 15, "web_visit": 28, "content_download": 14, "email_click": 12,
    "demo_request": 3, "webinar_attended": 6, "form_submit": 4, "chat_conversation": 3,
    "email_open": 15,
}  # fmt: skip
SALES_EARLY: Mix = {
    "sales_call": 45, "sales_email_reply": 35, "meeting_influencer": 10,
    "meeting_recommender": 10,
}  # fmt: skip
SALES_QUALIFIED: Mix = {
    "sales_call": 30, "sales_email_reply": 25, "meeting_influencer": 10,
    "meeting_recommender": 10, "meeting_decision_maker": 8, "online_demo": 12,
    "spec_provided": 5,
}  # fmt: skip
DEAL: Mix = {
    "sales_call": 22, "sales_email_reply": 20, "meeting_decision_maker": 10,
    "meeting_recommender": 7, "meeting_influencer": 7, "online_demo": 10, "onsite_demo": 4,
    "spec_provided": 6, "references_requested": 3, "references_contacted": 2,
    "funding_confirmed": 2, "budget_approved": 2,
}  # fmt: skip
DEAL_WON: Mix = {**DEAL, "budget_approved": 8, "funding_confirmed": 6,
                 "references_requested": 6, "references_contacted": 5}  # fmt: skip
FIRST_TOUCH = ("form_submit", "content_download", "webinar_attended", "event_attended",
               "web_visit", "web_visit", "web_visit", "email_click", "form_submit",
               "form_submit", "sales_email_reply", "web_visit")  # fmt: skip  # LEAD_SOURCES order
EMAIL_TYPES = ("email_open", "email_click")
SALES_TYPES = tuple(t for t in ACTIVITY_TYPES if t.startswith(("sales_", "meeting_")))


@dataclass(frozen=True)
class Events(Columns):
    """Activity rows: lead position, time (float days) and ACTIVITY_TYPES code."""

    lead: np.ndarray
    at: np.ndarray
    kind: np.ndarray


@dataclass(frozen=True)
class Consent(Columns):
    """Consent rows: lead position, time (float days) and CONSENT_STATUSES code."""

    lead: np.ndarray
    at: np.ndarray
    status: np.ndarray


@dataclass(frozen=True)
class Silence:
    """Per lead: when email stops (and resumes), and when all contact stops."""

    email_from: np.ndarray
    email_until: np.ndarray
    contact_from: np.ndarray


def generate_consent(
    rng: np.random.Generator, pop: Population, journey: Journey, end: float
) -> tuple[Consent, Silence]:
    """Consent changes over time and the silence they impose on each lead."""
    n = pop.size
    rej = journey.rejections
    first_rejection = _first_per_lead(n, rej.lead, rej.at)
    opt_in = _opt_ins(rng, pop)
    asked = rej.reason == REASON_CODES.index("do_not_contact")
    dnc = [Consent(rej.lead[asked], rej.at[asked], np.full(int(asked.sum()), DO_NOT_CONTACT))]
    no_deal = np.bincount(journey.opportunities.lead, minlength=n) == 0
    random_dnc = np.flatnonzero(no_deal & (rng.random(n) < 0.004))
    # A lead asks not to be contacted after its last rejection, so no rep works it later.
    last_rejection = np.full(n, -np.inf)
    np.maximum.at(last_rejection, rej.lead, rej.at)
    dnc.append(_late_do_not_contact(rng, np.maximum(pop.created, last_rejection), random_dnc, end))
    contact_from = _first_per_lead(n, dnc[0].lead, dnc[0].at)
    contact_from = np.minimum(contact_from, _first_per_lead(n, dnc[1].lead, dnc[1].at))
    unsub, resub = _unsubscribes(rng, pop, first_rejection, end)
    # Subscribing again lifts an unsubscribe, never a do-not-contact: none after one.
    resub = resub.take(resub.at < contact_from[resub.lead])
    rows = Consent.concat([opt_in, *dnc, unsub, resub])
    rows = rows.take(np.argsort(rows.at, kind="stable"))
    email_from = _first_per_lead(n, unsub.lead, unsub.at)
    email_until = np.full(n, np.inf)
    email_until[resub.lead] = resub.at
    return rows, Silence(email_from, email_until, contact_from)


def generate_activities(
    rng: np.random.Generator, pop: Population, journey: Journey, silence: Silence, end: float
) -> Events:
    """All engagement events up to ``end``, sorted by time."""
    first_rejection = _first_per_lead(pop.size, journey.rejections.lead, journey.rejections.at)
    layers = Events.concat(
        [
            _mql_engagement(rng, pop, journey, first_rejection, end),
            *_background(rng, pop, first_rejection, end),
            _sales_touches(rng, pop, journey),
            _deal_touches(rng, journey, end),
            _run_ups(rng, pop, journey),
            _decoys(rng, journey, end),
        ]
    )
    shaped = office_hours(rng, layers.at)
    events = Events.concat([_first_touch(pop), Events(layers.lead, shaped, layers.kind)])
    events = Events(events.lead, np.maximum(events.at, pop.created[events.lead]), events.kind)
    events = events.take((events.at <= end) & ~_silenced(events, silence))
    return events.take(_time_order(events.at))


def _time_order(at: np.ndarray) -> np.ndarray:
    # Order by whole second, ties by position. The key is unique and carries the position,
    # so sorting the keys (several times faster than argsort on tens of millions of rows)
    # gives the same order on every machine, whatever the sort algorithm.
    n = len(at)
    seconds = np.floor(at * float(SECONDS_PER_DAY)).astype(np.int64)
    return np.sort(seconds * n + np.arange(n)) % max(n, 1)


def _first_per_lead(n: int, lead: np.ndarray, at: np.ndarray) -> np.ndarray:
    first = np.full(n, np.inf)
    np.minimum.at(first, lead, at)
    return first


def _opt_ins(rng: np.random.Generator, pop: Population) -> Consent:
    opt_in_codes = np.array([c in OPT_IN_COUNTRIES for c in COUNTRIES])
    strict = (pop.country >= 0) & opt_in_codes[np.maximum(pop.country, 0)]
    chosen = np.flatnonzero(rng.random(pop.size) < np.where(strict, 0.8, 0.25))
    return Consent(chosen, pop.created[chosen], np.full(len(chosen), SUBSCRIBED))


def _late_do_not_contact(
    rng: np.random.Generator, earliest: np.ndarray, lead: np.ndarray, end: float
) -> Consent:
    """Do-not-contact rows for ``lead``, each uniform between its ``earliest`` and ``end``."""
    at = earliest[lead] + rng.random(len(lead)) * (end - earliest[lead])
    return Consent(lead, at, np.full(len(lead), DO_NOT_CONTACT))


def _unsubscribes(
    rng: np.random.Generator, pop: Population, first_rejection: np.ndarray, end: float
) -> tuple[Consent, Consent]:
    # Unsubscribes cluster in the weeks after a rejection; a few leads re-subscribe later.
    n = pop.size
    rejected = np.isfinite(first_rejection)
    chosen = rng.random(n) < np.where(rejected, 0.12, 0.05)
    after_rejection = first_rejection + rng.gamma(1.5, 40.0, n)
    anytime = pop.created + rng.random(n) * (end - pop.created)
    at = np.where(rejected, after_rejection, anytime)
    lead = np.flatnonzero(chosen & (at <= end))
    unsub = Consent(lead, at[lead], np.full(len(lead), UNSUBSCRIBED))
    back_at = unsub.at + rng.uniform(60.0, 400.0, len(lead))
    resubscribed = (rng.random(len(lead)) < 0.15) & (back_at <= end)
    resub = Consent(
        lead[resubscribed], back_at[resubscribed], np.full(int(resubscribed.sum()), SUBSCRIBED)
    )
    return unsub, resub


def _silenced(events: Events, silence: Silence) -> np.ndarray:
    codes = [ACTIVITY_TYPES.index(t) for t in EMAIL_TYPES]
    is_email = np.isin(events.kind, codes)
    is_sales = np.isin(events.kind, [ACTIVITY_TYPES.index(t) for t in SALES_TYPES])
    lead, at = events.lead, events.at
    unsubscribed = (at >= silence.email_from[lead]) & (at < silence.email_until[lead])
    no_contact = at >= silence.contact_from[lead]
    return (is_email & (unsubscribed | no_contact)) | (is_sales & no_contact)


def _kinds(rng: np.random.Generator, mix: Mix, size: int) -> np.ndarray:
    codes = np.array([ACTIVITY_TYPES.index(name) for name in mix], dtype=np.int8)
    return codes[pick(rng, list(mix.values()), size)]


def _spread(
    rng: np.random.Generator,
    lead: np.ndarray,
    start: np.ndarray,
    stop: np.ndarray,
    counts: np.ndarray,
    mix: Mix,
) -> Events:
    """``counts`` events per row, uniform in [start, stop], types drawn from ``mix``."""
    counts = np.where(stop > start, counts, 0)
    row = np.repeat(np.arange(len(lead)), counts)
    at = start[row] + rng.random(len(row)) * (stop - start)[row]
    return Events(lead[row].astype(np.int32), at, _kinds(rng, mix, len(row)))


def _decaying(
    rng: np.random.Generator,
    lead: np.ndarray,
    start: np.ndarray,
    stop: np.ndarray,
    rate: np.ndarray,
    tau: float,
) -> Events:
    """Background events at ``rate * exp(-(t - start) / tau)`` per day on [start, stop]."""
    span = np.maximum(stop - start, 0.0)
    reach = -np.expm1(-span / tau)
    row = np.repeat(np.arange(len(lead)), rng.poisson(rate * tau * reach))
    offset = -tau * np.log1p(-rng.random(len(row)) * reach[row])
    return Events(
        lead[row].astype(np.int32), start[row] + offset, _kinds(rng, BACKGROUND, len(row))
    )


def _first_touch(pop: Population) -> Events:
    codes = np.array([ACTIVITY_TYPES.index(t) for t in FIRST_TOUCH], dtype=np.int8)
    assert len(FIRST_TOUCH) == len(LEAD_SOURCES)
    return Events(np.arange(pop.size, dtype=np.int32), pop.created.copy(), codes[pop.source])


def _mql_engagement(
    rng: np.random.Generator,
    pop: Population,
    journey: Journey,
    first_rejection: np.ndarray,
    end: float,
) -> Events:
    # The burst that made the lead an MQL, before its first sales milestone; re-MQLs too.
    n = pop.size
    opp = journey.opportunities
    milestone = np.minimum(first_rejection, _first_per_lead(n, opp.lead, opp.created))
    milestone = np.where(np.isfinite(milestone), milestone, pop.created + 45.0)
    counts = rng.poisson(np.exp(1.5 + 0.35 * pop.intent + 0.15 * pop.fit))
    lead = np.arange(n)
    first = _spread(rng, lead, pop.created, np.minimum(milestone, end), counts, MQL_BURST)
    rej = journey.rejections
    re_mql = (rej.at > first_rejection[rej.lead]) & (rej.stage != OPPORTUNITY)
    at = rej.at[re_mql]
    counts = rng.poisson(np.exp(1.4 + 0.3 * pop.intent[rej.lead[re_mql]]))
    again = _spread(rng, rej.lead[re_mql], at - 30.0, at, counts, MQL_BURST)
    return Events.concat([first, again])


def _background(
    rng: np.random.Generator, pop: Population, first_rejection: np.ndarray, end: float
) -> list[Events]:
    # Steady email/web noise; after a rejection it flares briefly, then decays to a floor.
    n = pop.size
    lead = np.arange(n)
    rate = BACKGROUND_RATE * np.exp(0.35 * pop.intent + rng.normal(0.0, 0.45, n) - 0.1)
    until = np.minimum(first_rejection, end)
    steady = _spread(
        rng, lead, pop.created, until, rng.poisson(rate * (until - pop.created)), BACKGROUND
    )
    fresh = _decaying(rng, lead, pop.created, until, rate, 60.0)
    rejected = np.flatnonzero(first_rejection < end)
    after, stop = first_rejection[rejected], np.full(len(rejected), end)
    floor = rng.poisson(0.45 * rate[rejected] * (end - after))
    tail = _spread(rng, rejected, after, stop, floor, BACKGROUND)
    flare = _decaying(rng, rejected, after, stop, 1.5 * rate[rejected], 75.0)
    return [steady, fresh, tail, flare]


def _sales_touches(rng: np.random.Generator, pop: Population, journey: Journey) -> Events:
    # Calls and meetings while a lead sat at SAL or SQL before sales rejected it.
    rej = journey.rejections
    parts = []
    for stage, mean, mix in ((SAL, 2.0, SALES_EARLY), (SQL, 4.0, SALES_QUALIFIED)):
        at, lead = rej.at[rej.stage == stage], rej.lead[rej.stage == stage]
        start = np.maximum(pop.created[lead], at - rng.uniform(7.0, 45.0, len(at)))
        parts.append(_spread(rng, lead, start, at, rng.poisson(mean, len(at)), mix))
    return Events.concat(parts)


def _deal_touches(rng: np.random.Generator, journey: Journey, end: float) -> Events:
    # Sales work on every deal from creation to close; won deals gather approvals.
    opp = journey.opportunities
    stop = np.where(np.isnan(opp.closed), end, opp.closed)
    counts = rng.poisson(3.0 + (stop - opp.created) / 15.0)
    won = opp.status == WON
    parts = [
        _spread(rng, opp.lead[won], opp.created[won], stop[won], counts[won], DEAL_WON),
        _spread(rng, opp.lead[~won], opp.created[~won], stop[~won], counts[~won], DEAL),
    ]
    return Events.concat(parts)


def _run_ups(rng: np.random.Generator, pop: Population, journey: Journey) -> Events:
    # Before a comeback the lead researches again: pricing, content, demo requests.
    came = journey.comebacks
    k = len(came)
    start = np.maximum(came.at - rng.uniform(14.0, 70.0, k), came.rejected_at + 1.0)
    busy = 2 + rng.poisson(6.0 * np.exp(0.25 * pop.intent[came.lead]))
    counts = np.where(came.visible, busy, rng.poisson(1.0, k))
    run_up = _spread(rng, came.lead, start, came.at, counts, RUN_UP)
    new_contact = (came.reason == REASON_CODES.index("not_decision_maker")) & (rng.random(k) < 0.8)
    met = np.maximum(came.at - rng.uniform(7.0, 42.0, k), came.rejected_at + 0.5)[new_contact]
    meeting = Events(
        came.lead[new_contact].astype(np.int32),
        met,
        np.full(len(met), ACTIVITY_TYPES.index("meeting_decision_maker"), dtype=np.int8),
    )
    return Events.concat([run_up, meeting])


def _decoys(rng: np.random.Generator, journey: Journey, end: float) -> Events:
    # Some leads that never come back still binge on pricing pages: the signal is not clean.
    quiet = journey.quiet
    k = len(quiet)
    peak = quiet.rejected_at + rng.uniform(20.0, 600.0, k)
    chosen = (rng.random(k) < 0.25) & (peak < np.minimum(quiet.until, end + 60.0))
    start = np.maximum(peak - rng.uniform(10.0, 50.0, k), quiet.rejected_at + 1.0)
    counts = np.where(chosen, 1 + rng.poisson(4.0, k), 0)
    return _spread(rng, quiet.lead, start, peak, counts, DECOY)
