"""Nurture routing: from a probability and the lead's features to a program and next step.

Routing is vectorised over numpy arrays so that the API (one row) and the batch job (a
million rows) run the same decisions. Suppression is decided first and overrides
everything: a lead that may not be contacted is never routed to any contact program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.engine import FeatureTable
from features.history import DAY_US
from serving.policy import RoutingPolicy

SUPPRESSED_PROGRAM = "suppressed"
NO_DATE = np.iinfo(np.int64).min


@dataclass(frozen=True)
class RoutingInputs:
    """What routing reads, one entry per lead (decoded from the feature columns)."""

    probability: np.ndarray
    reason_code: np.ndarray
    consent_status: np.ndarray
    stage: np.ndarray
    follow_up_days: np.ndarray
    days_since_rejection: np.ndarray
    days_to_next_year: np.ndarray
    recent_intent: np.ndarray
    as_of: np.ndarray

    @staticmethod
    def from_features(
        features: FeatureTable, probability: np.ndarray, as_of: np.ndarray, policy: RoutingPolicy
    ) -> RoutingInputs:
        """Decode the routing inputs from a feature table built by the engine."""
        return RoutingInputs(
            probability=np.asarray(probability, dtype=np.float64),
            reason_code=_labels(features, "reason_code"),
            consent_status=_labels(features, "consent_status"),
            stage=_labels(features, "stage_at_rejection"),
            follow_up_days=features.columns["follow_up_days"],
            days_since_rejection=features.columns["days_since_rejection"],
            days_to_next_year=features.columns["days_to_next_year"],
            recent_intent=features.columns[policy.rebound.recent_intent_feature],
            as_of=np.asarray(as_of, dtype=np.int64),
        )


@dataclass(frozen=True)
class Routes:
    """Routing decisions, one entry per lead.

    Attributes:
        tier: the probability tier's name.
        priority: work priority, 1 most urgent (0 for suppressed leads).
        program: the nurture program, ``rebound_to_sales``, or ``suppressed``.
        suppressed: contact is forbidden (consent or reason).
        suppression_reason: why (``consent:<status>`` or ``reason:<code>``), else None.
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
    tier_index = _tier_index(inputs.probability, policy)
    tiers = np.array([t.name for t in policy.tiers], dtype=object)
    priorities = np.array([t.priority for t in policy.tiers])
    suppressed, why = _suppression(inputs, policy)
    rebound = ~suppressed & _rebound(inputs, policy)
    low_touch = ~suppressed & ~rebound & (inputs.probability < policy.low_touch.max_probability)
    program, days = _reason_programs(inputs, policy)
    program = np.where(low_touch, policy.low_touch.program, program)
    days = np.where(low_touch, float(policy.low_touch.cadence_days), days)
    program = np.where(rebound, policy.rebound.program, program)
    days = np.where(rebound, 0.0, days)
    program = np.where(suppressed, SUPPRESSED_PROGRAM, program)
    return Routes(
        tier=tiers[tier_index],
        priority=np.where(suppressed, 0, np.where(rebound, 1, priorities[tier_index])),
        program=program.astype(object),
        suppressed=suppressed,
        suppression_reason=why,
        re_entry_stage=np.where(suppressed, np.array(None, dtype=object), inputs.stage),
        next_action_at=_next_action_at(inputs.as_of, days, suppressed),
        policy=policy.label,
    )


def _tier_index(probability: np.ndarray, policy: RoutingPolicy) -> np.ndarray:
    ascending = np.array([t.min_probability for t in reversed(policy.tiers)])
    position = np.searchsorted(ascending, probability, side="right") - 1
    return len(policy.tiers) - 1 - np.clip(position, 0, len(policy.tiers) - 1)


def _suppression(inputs: RoutingInputs, policy: RoutingPolicy) -> tuple[np.ndarray, np.ndarray]:
    by_consent = np.isin(inputs.consent_status, policy.suppression.consent)
    by_reason = np.isin(inputs.reason_code, policy.suppression.reasons)
    why = np.full(len(by_consent), None, dtype=object)
    why[by_reason] = ["reason:" + str(r) for r in inputs.reason_code[by_reason]]
    why[by_consent] = ["consent:" + str(c) for c in inputs.consent_status[by_consent]]
    return by_consent | by_reason, why


def _rebound(inputs: RoutingInputs, policy: RoutingPolicy) -> np.ndarray:
    rule = policy.rebound
    engaged = (inputs.probability >= rule.min_probability) & (
        np.nan_to_num(inputs.recent_intent) >= rule.min_recent_intent
    )
    follow_up_due = np.nan_to_num(inputs.follow_up_days, nan=np.inf) <= (
        rule.follow_up_due_within_days
    )
    due = follow_up_due & (inputs.probability >= rule.follow_up_due_min_probability)
    return engaged | due


def _reason_programs(inputs: RoutingInputs, policy: RoutingPolicy) -> tuple[np.ndarray, np.ndarray]:
    program = np.full(len(inputs.probability), SUPPRESSED_PROGRAM, dtype=object)
    days = np.full(len(inputs.probability), np.nan)
    for reason, rule in policy.reasons.items():
        chosen = inputs.reason_code == reason
        if not chosen.any():
            continue
        program[chosen] = rule.program
        days[chosen] = _days_until_action(inputs, chosen, rule)
    return program, days


def _days_until_action(inputs: RoutingInputs, chosen: np.ndarray, rule: Any) -> np.ndarray:
    cadence = float(rule.cadence_days)
    follow_up = inputs.follow_up_days[chosen]
    future_follow_up = np.where(follow_up > 0, follow_up, np.nan)
    if rule.next_action == "follow_up":
        days = future_follow_up
    elif rule.next_action == "fiscal_year":
        before_year = inputs.days_to_next_year[chosen] - rule.lead_days
        days = np.fmin(np.where(before_year > 0, before_year, np.nan), future_follow_up)
    elif rule.next_action == "renewal":
        renewal = rule.renewal_days - rule.lead_days - inputs.days_since_rejection[chosen]
        days = np.where(renewal > 0, renewal, np.nan)
    else:
        days = np.full(int(chosen.sum()), np.nan)
    return np.where(np.isnan(days), cadence, days)


def _next_action_at(as_of: np.ndarray, days: np.ndarray, suppressed: np.ndarray) -> np.ndarray:
    moment = as_of + np.round(np.nan_to_num(days) * DAY_US).astype(np.int64)
    day_start = (moment // DAY_US) * DAY_US
    return np.where(suppressed | np.isnan(days), NO_DATE, day_start)


def _labels(features: FeatureTable, name: str) -> np.ndarray:
    spec = next(s for s in features.specs if s.name == name)
    codes = features.columns[name]
    vocabulary = np.array([*spec.vocabulary, None], dtype=object)
    return vocabulary[np.where(np.isnan(codes), -1, codes).astype(np.int64)]
