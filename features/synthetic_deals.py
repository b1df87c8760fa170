"""Deals in the synthetic history: sales cycles, amounts, wins and losses.

Company size drives both the cycle (SMB 1-3 months, mid-market 3-9, enterprise 6-12) and
the amount (lognormal around a segment median); fit and intent raise the win chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synthetic_population import MISSING, Columns, Population, pick, sigmoid

OPEN, WON, LOST = 0, 1, 2  # contract OPPORTUNITY_STATUSES order
LOSS_REASONS = ("Lost to competitor", "No decision / status quo", "Price too high",
                "Timing - project delayed", "Went dark", "Missing feature",
                "Budget cut")  # fmt: skip
LOSS_WEIGHTS = (28, 24, 14, 12, 10, 7, 5)
#: Median deal amount (USD) by segment: SMB, mid-market, enterprise.
AMOUNT_MEDIAN = np.array([9_000.0, 40_000.0, 160_000.0])
#: Median sales cycle (days) by segment.
CYCLE_MEDIAN = np.array([55.0, 110.0, 250.0])
#: Win log-odds before fit and intent; tuned so about a quarter of closed deals are won.
WIN_INTERCEPT = -1.15


@dataclass(frozen=True)
class Opportunities(Columns):
    """Opportunity rows; ``closed`` is NaN and ``status`` OPEN while a deal is running."""

    lead: np.ndarray
    created: np.ndarray
    closed: np.ndarray
    status: np.ndarray
    amount: np.ndarray
    loss: np.ndarray


def cycle_days(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    """Sales-cycle length in days, lognormal around the segment's median."""
    sigma = np.where(segment == 2, 0.3, 0.35)
    return np.clip(
        CYCLE_MEDIAN[segment] * np.exp(sigma * rng.standard_normal(len(segment))), 21, 420
    )


def open_deals(
    rng: np.random.Generator,
    pop: Population,
    lead: np.ndarray,
    created: np.ndarray,
    end: float,
    shift: float,
) -> Opportunities:
    """Deals opened at ``created`` (those after ``end`` are dropped), run to close or to end.

    ``shift`` moves the win log-odds (comebacks win slightly more often).
    """
    keep = created <= end
    lead, created, n = lead[keep], created[keep], int(keep.sum())
    segment = pop.segment[lead]
    cycle = cycle_days(rng, segment)
    p_win = sigmoid(WIN_INTERCEPT + 0.5 * pop.fit[lead] + 0.4 * pop.intent[lead] + shift)
    won = rng.random(n) < p_win
    closed = created + np.where(won, cycle, cycle * rng.uniform(0.4, 1.1, n))
    status = np.where(closed > end, OPEN, np.where(won, WON, LOST))
    amount = rng.lognormal(np.log(AMOUNT_MEDIAN[segment]) + 0.15 * pop.fit[lead], 0.6)
    return Opportunities(
        lead=lead,
        created=created,
        closed=np.where(status == OPEN, np.nan, closed),
        status=status,
        amount=np.where(rng.random(n) < 0.05, np.nan, np.round(amount, -2)),
        loss=np.where(status == LOST, pick(rng, LOSS_WEIGHTS, n), MISSING),
    )


def lost_deals(
    rng: np.random.Generator, pop: Population, lead: np.ndarray, at: np.ndarray, loss: np.ndarray
) -> Opportunities:
    """Deals opened some time after lead creation and lost just before ``at``."""
    n = len(lead)
    created_lead = pop.created[lead]
    created = created_lead + (at - created_lead) * rng.uniform(0.1, 0.4, n)
    closed = np.maximum(at - rng.uniform(0.0, 2.0, n), created + 0.5)
    amount = rng.lognormal(np.log(AMOUNT_MEDIAN[pop.segment[lead]]), 0.6)
    return Opportunities(
        lead=lead,
        created=created,
        closed=np.minimum(closed, at),
        status=np.full(n, LOST),
        amount=np.round(amount, -2),
        loss=loss,
    )
