"""Nurture routing: from a probability and the lead's features to a program and next step.

Routing is vectorised over numpy arrays so that the API (one row) and the batch job (a
million rows) run the same decisions. Suppression is decided first and overrides
everything: a lead that may not be contacted is never routed to any contact program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.contract import CONSENT_STATUSES, REASON_CODES, STAGES
from features.engine import FeatureTable
from features.history import DAY_US
from features.identity_cache import per_object
from features.profile_features import days_to_year_start
from serving.contact import ContactNow
from serving.policy import (
    SUPPRESSED_PROGRAM,
    ReasonRoute,
    RoutingPolicy,
    since_rejection_count,
)

NO_DATE = np.iinfo(np.int64).min
#: From how many labels ``label_codes`` looks them up with pandas rather than a dict.
PANDAS_LOOKUP_FROM = 64


def _with_none(vocabulary: tuple[str, ...]) -> np.ndarray:
    """The vocabulary as labels, with None last so that code -1 reads None."""
    return np.array([*vocabulary, None], dtype=object)


REASON_LABELS = _with_none(REASON_CODES)
CONSENT_LABELS = _with_none(CONSENT_STATUSES)
STAGE_LABELS = _with_none(STAGES)


@dataclass(frozen=True)
class RoutingInputs:
    """What routing reads, one entry per lead (decoded from the feature columns).

    The category columns are given as labels; their integer codes (positions in the
    contract vocabularies, -1 when missing) are derived once when not given, and routing
    works on the codes. ``recent_intent`` is the policy's recent-intent feature; only its
    part after the rejection counts as re-engagement, which ``intent_since_rejection`` (the
    same activities counted since the rejection) bounds. ``latest_consent_index`` and
    ``refused_by_rejection`` come from the lead's whole history
    (``serving.contact.ContactNow``), ``beyond_trained_age`` from the model
    (``ReconversionModel.beyond_trained_age``); None reads as "nothing more".
    """

    probability: np.ndarray
    reason_code: np.ndarray
    consent_status: np.ndarray
    stage: np.ndarray
    follow_up_days: np.ndarray
    days_since_rejection: np.ndarray
    recent_intent: np.ndarray
    as_of: np.ndarray
    intent_since_rejection: np.ndarray | None = None
    reason_index: np.ndarray | None = None
    consent_index: np.ndarray | None = None
    stage_index: np.ndarray | None = None
    latest_consent_index: np.ndarray | None = None
    refused_by_rejection: np.ndarray | None = None
    beyond_trained_age: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Fill in the codes of the category labels that were given without them."""
        for name, labels, vocabulary in (
            ("reason_index", self.reason_code, REASON_CODES),
            ("consent_index", self.consent_status, CONSENT_STATUSES),
            ("stage_index", self.stage, STAGES),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, label_codes(labels, vocabulary))

    @staticmethod
    def from_features(
        features: FeatureTable,
        probability: np.ndarray,
        as_of: np.ndarray,
        policy: RoutingPolicy,
        contact: ContactNow | None = None,
        beyond_trained_age: np.ndarray | None = None,
    ) -> RoutingInputs:
        """Decode the routing inputs from a feature table built by the engine.

        ``contact`` holds each lead's latest consent in the data, after ``as_of`` included,
        and whether a ``do_not_contact`` rejection of the lead still stands
        (``serving.contact``); when either forbids contact, the lead is suppressed whatever
        its consent and reason at ``as_of``. ``beyond_trained_age`` marks the rows whose
        probability is an extrapolation (a policy may send them to low touch).
        """
        reason = _codes(features, "reason_code")
        consent = _codes(features, "consent_status")
        stage = _codes(features, "stage_at_rejection")
        return RoutingInputs(
            probability=np.asarray(probability, dtype=np.float64),
            reason_code=REASON_LABELS[reason],
            consent_status=CONSENT_LABELS[consent],
            stage=STAGE_LABELS[stage],
            follow_up_days=features.columns["follow_up_days"],
            days_since_rejection=features.columns["days_since_rejection"],
            recent_intent=features.columns[policy.rebound.recent_intent_feature],
            as_of=np.asarray(as_of, dtype=np.int64),
            intent_since_rejection=features.columns[
                since_rejection_count(policy.rebound.recent_intent_feature)
            ],
            reason_index=reason,
            consent_index=consent,
            stage_index=stage,
            latest_consent_index=None if contact is None else contact.latest_consent,
            refused_by_rejection=None if contact is None else contact.refused_by_rejection,
            beyond_trained_age=beyond_trained_age,
        )

    def take(self, keep: np.ndarray) -> RoutingInputs:
        """The rows selected by a boolean mask (an input left out stays left out)."""
        rows: dict[str, Any] = {
            name: None if values is None else values[keep] for name, values in vars(self).items()
        }
        return RoutingInputs(**rows)

    def codes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reason, consent and stage codes (-1 when missing)."""
        assert self.reason_index is not None
        assert self.consent_index is not None
        assert self.stage_index is not None
        return self.reason_index, self.consent_index, self.stage_index


@dataclass(frozen=True)
class Routes:
    """Routing decisions, one entry per lead.

    Attributes:
        tier: the probability tier's name.
        priority: work priority, 1 most urgent (0 for suppressed leads).
        program: the nurture program, ``rebound_to_sales``, or ``suppressed``.
        suppressed: contact is forbidden (consent, the reason, or another rejection's).
        suppression_reason: why (``consent:<status>``, ``reason:<code>`` or
            ``other_rejection:do_not_contact``), else None.
        re_entry_stage: the funnel stage the lead resumes at (never back to the start).
        next_action_at: when to act next, int64 microseconds (``NO_DATE`` when suppressed).
        policy: the policy's ``name@version``.
    """

    tier: np.ndarray
    priority: np.ndarray
    program: np.ndarray
    suppressed: np.ndarray
    suppression_reason: np.ndarray
    re_entry_stage: np.ndarray
    next_action_at: np.ndarray
    policy: str

    def row(self, index: int) -> dict[str, Any]:
        """One lead's decision as plain Python values."""
        when = int(self.next_action_at[index])
        return {
            "tier": str(self.tier[index]),
            "priority": int(self.priority[index]),
            "program": str(self.program[index]),
            "suppressed": bool(self.suppressed[index]),
            "suppression_reason": self.suppression_reason[index],
            "re_entry_stage": self.re_entry_stage[index],
            "next_action_at": None if when == NO_DATE else when,
            "policy": self.policy,
        }


def route(inputs: RoutingInputs, policy: RoutingPolicy) -> Routes:
    """Decide tier, program, suppression, re-entry stage and next action for every lead."""
    reason, consent, stage = inputs.codes()
    table = policy_tables(policy)
    suppressed, why = _suppression(reason, consent, table, inputs)
    signals = _signals(inputs, policy)
    rebound = ~suppressed & (signals.engaged | signals.due)
    unvouched = ~suppressed & ~rebound & _unvouched(inputs, policy, signals)
    program, days, dated = _reason_programs(inputs, reason, policy, table)
    # A lead its probability cannot vouch for keeps a dated contact of its reason (the
    # rep's follow-up, the rival's renewal, the next fiscal year: moments that do not come
    # from the model) and goes to low touch otherwise.
    low_touch = ~suppressed & ~rebound & (inputs.probability < policy.low_touch.max_probability)
    low_touch |= unvouched & ~dated
    # It also takes the lowest tier and its priority: that probability is no reason to
    # list it with the hot leads or to work it sooner.
    lowest = len(table.tier_names) - 1
    tier_index = np.where(unvouched, lowest, _tier_index(inputs.probability, table))
    program = np.where(low_touch, table.low_touch, program)
    days = np.where(low_touch, float(policy.low_touch.cadence_days), days)
    program = np.where(rebound, table.rebound, program)
    days = np.where(rebound, _rebound_days(inputs, signals), days)
    program = np.where(suppressed, table.suppressed, program)
    return Routes(
        tier=table.tier_names[tier_index],
        priority=np.where(suppressed, 0, np.where(rebound, 1, table.priorities[tier_index])),
        program=table.names[program],
        suppressed=suppressed,
        suppression_reason=why,
        re_entry_stage=STAGE_LABELS[np.where(suppressed, -1, stage)],
        next_action_at=_next_action_at(inputs.as_of, days, suppressed),
        policy=policy.label,
    )


class PolicyTables:
    """A policy's decisions as lookup arrays, built once per policy.

    Programs are integer indices into ``names``; tiers are looked up by ``searchsorted``
    over ascending thresholds; suppression by code (code -1, missing, reads the final
    False entry).
    """

    def __init__(self, policy: RoutingPolicy) -> None:
        names = [rule.program for rule in policy.reasons.values()]
        names += [policy.low_touch.program, policy.rebound.program, SUPPRESSED_PROGRAM]
        self.names = np.array(names, dtype=object)
        self.low_touch, self.rebound, self.suppressed = range(len(names) - 3, len(names))
        self.by_reason = {reason: i for i, reason in enumerate(policy.reasons)}
        self.ascending = np.array([t.min_probability for t in reversed(policy.tiers)])
        self.tier_names = np.array([t.name for t in policy.tiers], dtype=object)
        self.priorities = np.array([t.priority for t in policy.tiers])
        self.consent_rule = _flags(CONSENT_STATUSES, policy.suppression.consent)
        self.reason_rule = _flags(REASON_CODES, policy.suppression.reasons)


@per_object
def policy_tables(policy: RoutingPolicy) -> PolicyTables:
    """The lookup tables of ``policy`` (built once; a reloaded policy gets its own)."""
    return PolicyTables(policy)


def _tier_index(probability: np.ndarray, table: PolicyTables) -> np.ndarray:
    tiers = len(table.tier_names)
    position = np.searchsorted(table.ascending, probability, side="right") - 1
    return tiers - 1 - np.clip(position, 0, tiers - 1)


#: Suppression by a standing ``do_not_contact`` rejection of the lead other than the scored one.
OTHER_REJECTION_CAUSE = "other_rejection:do_not_contact"

#: Why a lead is suppressed, by cause index: each consent status, each reason, another
#: rejection's ``do_not_contact``, then none.
SUPPRESSION_CAUSES = np.array(
    [
        *(f"consent:{c}" for c in CONSENT_STATUSES),
        *(f"reason:{r}" for r in REASON_CODES),
        OTHER_REJECTION_CAUSE,
        None,
    ],
    dtype=object,
)
OTHER_REJECTION = len(SUPPRESSION_CAUSES) - 2
NO_CAUSE = len(SUPPRESSION_CAUSES) - 1


def _suppression(
    reason: np.ndarray, consent: np.ndarray, table: PolicyTables, inputs: RoutingInputs
) -> tuple[np.ndarray, np.ndarray]:
    """Who may not be contacted, and why.

    Consent is the status at ``as_of``, or the latest one when that forbids contact. The
    first cause found is named: consent, then the scored rejection's reason, then a
    standing ``do_not_contact`` rejection of the lead.
    """
    latest = inputs.latest_consent_index
    if latest is not None:
        consent = np.where(table.consent_rule[latest], latest, consent)
    by_consent = table.consent_rule[consent]
    by_reason = table.reason_rule[reason]
    by_other = _refused_by_rejection(inputs)
    cause = np.where(by_other, OTHER_REJECTION, NO_CAUSE)
    cause = np.where(by_reason, len(CONSENT_STATUSES) + reason, cause)
    cause = np.where(by_consent, consent, cause)
    return by_consent | by_reason | by_other, SUPPRESSION_CAUSES[cause]


def flags_or_none(flags: np.ndarray | None, rows: int) -> np.ndarray:
    """An optional per-lead flag of ``RoutingInputs`` as booleans: ``rows`` False values
    when it was not given (routing was not told, so nothing is flagged)."""
    if flags is None:
        return np.zeros(rows, dtype=bool)
    return np.asarray(flags, dtype=bool)


def _refused_by_rejection(inputs: RoutingInputs) -> np.ndarray:
    """The standing ``do_not_contact`` rejections (none when routing was not told)."""
    return flags_or_none(inputs.refused_by_rejection, len(inputs.probability))


def _flags(vocabulary: tuple[str, ...], chosen: tuple[str, ...]) -> np.ndarray:
    """A lookup of vocabulary codes to booleans; code -1 (missing) reads the final False."""
    return np.array([value in chosen for value in vocabulary] + [False])


@dataclass(frozen=True)
class _Signals:
    """What speaks for each lead besides its probability, and the rebound's two ways back.

    Attributes:
        intent: recent intent at least ``rebound.min_recent_intent``.
        follow_up_due: the rep's follow-up date is due within the rebound's window, or
            passed but not stale (a missing date is never due).
        engaged: good odds (``rebound.min_probability``) with recent intent.
        due: a due follow-up with good odds (``rebound.follow_up_due_min_probability``).
    """

    intent: np.ndarray
    follow_up_due: np.ndarray
    engaged: np.ndarray
    due: np.ndarray


def _signals(inputs: RoutingInputs, policy: RoutingPolicy) -> _Signals:
    """Each lead's signals under the policy's rebound rule."""
    rule = policy.rebound
    intent = np.asarray(_re_engagement(inputs) >= rule.min_recent_intent, dtype=bool)
    follow_up = inputs.follow_up_days
    follow_up_due = (follow_up <= rule.follow_up_due_within_days) & (
        follow_up >= -rule.follow_up_overdue_max_days
    )
    probability = inputs.probability
    return _Signals(
        intent=intent,
        follow_up_due=follow_up_due,
        engaged=(probability >= rule.min_probability) & intent,
        due=follow_up_due & (probability >= rule.follow_up_due_min_probability),
    )


def _re_engagement(inputs: RoutingInputs) -> np.ndarray:
    """The recent intent that came after the rejection (missing counts as none).

    The recent-intent feature counts activities over a window ending at ``as_of``
    (``intent_30d``: the last 30 days), as ``intent_since_rejection`` counts the same
    activities since the rejection (``serving.policy.since_rejection_count``); one window
    holds the other, so the smaller count is the activities in both. Scored at its
    rejection, a lead has none: the visits that came before are what sales has just turned
    down, not a return.
    """
    recent = np.where(np.isnan(inputs.recent_intent), 0.0, inputs.recent_intent)
    if inputs.intent_since_rejection is None:
        return recent
    since = np.where(np.isnan(inputs.intent_since_rejection), 0.0, inputs.intent_since_rejection)
    return np.minimum(recent, since)


def _rebound_days(inputs: RoutingInputs, signals: _Signals) -> np.ndarray:
    """Days until sales acts on a rebound: now for a lead that came back, the follow-up
    date for one sent back by a follow-up still ahead (now once it is due or passed)."""
    ahead = np.where(np.isnan(inputs.follow_up_days), 0.0, np.maximum(inputs.follow_up_days, 0.0))
    return np.where(signals.engaged, 0.0, ahead)


def _unvouched(inputs: RoutingInputs, policy: RoutingPolicy, signals: _Signals) -> np.ndarray:
    """The leads a ``low_touch.beyond_trained_age`` policy sends to low touch: rejected
    longer ago than any the model was trained on (their probability is an extrapolation),
    with neither recent intent nor a due follow-up to speak for them."""
    beyond = flags_or_none(inputs.beyond_trained_age, len(inputs.probability))
    if not policy.low_touch.beyond_trained_age:
        return np.zeros_like(beyond)
    return beyond & ~signals.intent & ~signals.follow_up_due


def _reason_programs(
    inputs: RoutingInputs, reason: np.ndarray, policy: RoutingPolicy, table: PolicyTables
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each lead's reason program, days until its next contact, and whether that contact
    is dated (a follow-up, fiscal-year or renewal moment rather than the cadence)."""
    # A reason without a program is a suppressed one (a policy routes every other reason),
    # so its rows keep the suppressed program; suppression marks them afterwards.
    program = np.full(len(reason), table.suppressed, dtype=np.int64)
    days = np.full(len(reason), np.nan)
    cadence = np.full(len(reason), np.nan)
    for code in np.unique(reason):
        name = REASON_CODES[code] if code >= 0 else ""
        rule = policy.reasons.get(name)
        if rule is None:
            continue
        chosen = reason == code
        program[chosen] = table.by_reason[name]
        days[chosen] = _dated_days(inputs, chosen, rule, policy.fiscal_month_day)
        cadence[chosen] = float(rule.cadence_days)
    dated = ~np.isnan(days)
    return program, np.where(dated, days, cadence), dated


def _dated_days(
    inputs: RoutingInputs, chosen: np.ndarray, rule: ReasonRoute, fiscal_start: tuple[int, int]
) -> np.ndarray:
    """Days until the dated contact of ``rule`` (NaN where it has none: its cadence then)."""
    follow_up = inputs.follow_up_days[chosen]
    future_follow_up = np.where(_not_passed(follow_up, inputs.as_of[chosen]), follow_up, np.nan)
    if rule.next_action == "follow_up":
        return future_follow_up
    if rule.next_action == "fiscal_year":
        before_year = days_to_year_start(inputs.as_of[chosen], *fiscal_start) - rule.lead_days
        return np.fmin(np.where(before_year > 0, before_year, np.nan), future_follow_up)
    if rule.next_action == "renewal":
        # The rival's contract renews every renewal_days after the rejection: contact
        # lead_days before the next renewal still ahead, or now when that is sooner; the
        # rep's follow-up date, when earlier, wins (the rep may know the renewal).
        until = rule.renewal_days - inputs.days_since_rejection[chosen]
        next_renewal = np.where(until > 0, until, np.mod(until, rule.renewal_days))
        return np.fmin(np.maximum(next_renewal - rule.lead_days, 0.0), future_follow_up)
    return np.full(int(chosen.sum()), np.nan)


def _not_passed(follow_up_days: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """Whether each follow-up date is ``as_of``'s day or later: a date is a whole day, so
    one that is today has not passed, whatever the hour. ``follow_up_days`` is (date's
    midnight - as_of) / day; comparing it to (as_of's midnight - as_of) / day, computed
    alike, compares the two midnights exactly. A missing date (NaN) is False."""
    today_started = ((as_of // DAY_US) * DAY_US - as_of) / DAY_US
    return follow_up_days >= today_started


def _next_action_at(as_of: np.ndarray, days: np.ndarray, suppressed: np.ndarray) -> np.ndarray:
    moment = as_of + np.round(np.where(np.isnan(days), 0.0, days) * DAY_US).astype(np.int64)
    day_start = (moment // DAY_US) * DAY_US
    return np.where(suppressed | np.isnan(days), NO_DATE, day_start)


def _codes(features: FeatureTable, name: str) -> np.ndarray:
    """A category feature's integer codes, -1 where missing."""
    codes = features.columns[name]
    return np.where(np.isnan(codes), -1, codes).astype(np.int64)


def label_codes(labels: np.ndarray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Integer codes of labels in a vocabulary (-1 for None or unknown labels)."""
    labels = np.asarray(labels, dtype=object)
    if len(labels) > PANDAS_LOOKUP_FROM:
        return np.asarray(pd.Categorical(labels, categories=list(vocabulary)).codes, np.int64)
    positions = {value: i for i, value in enumerate(vocabulary)}
    return np.array([positions.get(value, -1) for value in labels], dtype=np.int64)
