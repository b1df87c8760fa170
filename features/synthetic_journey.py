"""The sales side of the synthetic history: rejections, comebacks and opportunities.

Each lead follows one path: it stays a marketing lead, becomes an opportunity directly, or is
rejected by sales. A rejection may lead to a comeback (a new opportunity) whose chance and
timing depend on the rejection reason, the lead's fit and its latent intent; a stalled
comeback or a re-MQL can be rejected again. Rounds of rejections are simulated for all
leads at once, so the cost is a handful of vectorised passes, not a loop over leads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.contract import REASON_CODES, STAGES
from features.synthetic_deals import LOST, Opportunities, cycle_days, lost_deals, open_deals
from features.synthetic_population import (
    MISSING,
    Columns,
    Population,
    blank,
    next_quarter_start,
    next_year_start,
    pick,
    pick_rows,
    sigmoid,
)

NURTURE, DIRECT, REJECTED = 0, 1, 2
MQL, SAL, SQL, OPPORTUNITY = (STAGES.index(s) for s in ("mql", "sal", "sql", "opportunity"))
#: A reason code's position in REASON_CODES (the rate tables' order).
REASON = {code: i for i, code in enumerate(REASON_CODES)}

#: Share of leads that sales rejects at least once (published MQL rejection: 20-45%).
REJECTED_SHARE = 0.38
MAX_REJECTIONS = 3
N_REPS = 50
STAGE_WEIGHTS = (30, 25, 30, 15)
#: Reason mix by stage (rows: mql, sal, sql, opportunity; columns: REASON_CODES order).
STAGE_REASON_WEIGHTS = np.array([
    [5, 12, 2, 12, 12, 4, 22, 14, 4, 10, 3],
    [10, 18, 4, 12, 10, 5, 14, 17, 2, 4, 4],
    [20, 24, 9, 9, 7, 6, 8, 11, 1, 1, 4],
    [26, 22, 18, 5, 6, 8, 3, 8, 0.5, 0.5, 3],
], dtype=float)  # fmt: skip
#: Chance a rejection with each reason ever comes back (REASON_CODES order).
COMEBACK_TARGET = np.array([0.22, 0.26, 0.17, 0.13, 0.03, 0.03, 0.10, 0.08, 0.0, 0.0, 0.07])
#: Where the barrier was, by reason (columns: prospect, product, process, rep, unknown).
BARRIER_WEIGHTS = np.array([
    [80, 5, 3, 7, 5], [82, 2, 4, 7, 5], [55, 30, 2, 8, 5], [70, 0, 12, 13, 5],
    [70, 18, 2, 5, 5], [10, 78, 2, 5, 5], [35, 5, 45, 10, 5], [55, 0, 15, 22, 8],
    [85, 0, 5, 5, 5], [10, 0, 75, 5, 10], [30, 15, 15, 15, 25],
], dtype=float)  # fmt: skip
#: Log-odds of coming back by barrier side (BARRIER_SIDES order).
BARRIER_EFFECT = np.array([0.0, -0.4, 0.15, 0.6, 0.0])
#: Log-odds of coming back by stage at rejection (STAGES order).
STAGE_EFFECT = np.array([-0.3, -0.1, 0.1, 0.3])
#: Chance the rep sets a follow-up date, by reason (REASON_CODES order).
FOLLOW_UP_SHARE = np.array([0.8, 0.85, 0.2, 0.15, 0.1, 0.1, 0.2, 0.15, 0.0, 0.0, 0.15])
PROGRAMS = ("Quarterly check-in", "Budget & ROI nurture", "Competitive displacement",
            "Executive sponsor outreach", "Use-case education", "Re-engagement sequence",
            "Newsletter only")  # fmt: skip
#: The program the rep recommends, as a position in PROGRAMS, by reason (REASON_CODES order).
PROGRAM_BY_REASON = np.array([1, 0, 2, 3, 4, 6, 4, 5, MISSING, MISSING, 6])
DETAILS: tuple[tuple[str, ...], ...] = (
    ("No budget this year", "Budget frozen until next FY", "Price above their budget",
     "Waiting on budget approval"),
    ("Revisit next quarter", "Project pushed to next fiscal year", "Not a priority right now",
     "Reorg in progress, check back later"),
    ("Signed with a competitor", "Renewed with incumbent vendor",
     "Chose a cheaper alternative", "Locked into a 12-month contract elsewhere"),
    ("Contact has no buying authority", "Need to reach the economic buyer",
     "Champion left the evaluation", "Influencer only"),
    ("No current need", "Happy with current process", "Does not see the problem"),
    ("Missing key integration", "Requirements outside our scope", "Needs on-premise version"),
    ("Early research stage", "Student / education interest only", "Too early for sales"),
    ("No reply after 5 touches", "Went dark after first call", "Could not reach"),
    ("Asked not to be contacted", "Opted out of all communication"),
    ("Invalid phone and email", "Duplicate record", "Fake form submission"),
    ("See notes", "Misc", "Other reason"),
)  # fmt: skip
#: The loss reason written on a deal that ended in a rejection with each reason.
LOSS_BY_REASON = np.array([6, 3, 0, 1, 1, 5, 1, 4, 4, 4, 1])


@dataclass(frozen=True)
class Pending(Columns):
    """Rejections about to happen: who, when, at which stage, and whether a deal was open."""

    lead: np.ndarray
    at: np.ndarray
    stage: np.ndarray
    had_opportunity: np.ndarray


@dataclass(frozen=True)
class Rejections(Columns):
    """Rejection rows (codes index the contract vocabularies; -1 is missing)."""

    lead: np.ndarray
    at: np.ndarray
    stage: np.ndarray
    reason: np.ndarray
    detail: np.ndarray
    barrier: np.ndarray
    potential: np.ndarray
    follow_up: np.ndarray
    score: np.ndarray
    program: np.ndarray
    rep: np.ndarray


@dataclass(frozen=True)
class Comebacks(Columns):
    """Every planned comeback, including those due after the end (their run-up is visible)."""

    lead: np.ndarray
    at: np.ndarray
    rejected_at: np.ndarray
    reason: np.ndarray
    visible: np.ndarray


@dataclass(frozen=True)
class Quiet(Columns):
    """Rejections that never came back, with when the lead's next rejection happened (or inf)."""

    lead: np.ndarray
    rejected_at: np.ndarray
    until: np.ndarray


@dataclass(frozen=True)
class Journey:
    """The sales history of all leads."""

    rejections: Rejections
    opportunities: Opportunities
    comebacks: Comebacks
    quiet: Quiet


def simulate_journey(rng: np.random.Generator, pop: Population, end: float) -> Journey:
    """Simulate every lead's sales history up to ``end`` (float days)."""
    path = _paths(rng, pop)
    direct = np.flatnonzero(path == DIRECT)
    opened = pop.created[direct] + 1.0 + rng.gamma(2.0, 15.0, len(direct))
    opportunities = [open_deals(rng, pop, direct, opened, end, 0.0)]
    rep_skill = rng.normal(0.0, 0.35, N_REPS)
    rep_load = rng.lognormal(0.0, 0.5, N_REPS)
    pending = _first_rejections(rng, pop, np.flatnonzero(path == REJECTED))
    rejections, comebacks, quiet = [], [], []
    for _ in range(MAX_REJECTIONS):
        pending = pending.take(pending.at <= end)
        rejected, p_back = _describe(rng, pop, pending, rep_skill, rep_load)
        opportunities.append(_deal_before(rng, pop, rejected, ~pending.had_opportunity))
        back = rng.random(len(rejected)) < p_back
        due = _comeback_time(rng, rejected)
        came = Comebacks(
            rejected.lead[back], due[back], rejected.at[back], rejected.reason[back],
            rng.random(int(back.sum())) < 0.85,
        )  # fmt: skip
        opened_now = came.at <= end
        new = open_deals(rng, pop, came.lead[opened_now], came.at[opened_now], end, 0.1)
        pending, until = _next_rejections(rng, rejected, back, new)
        rejections.append(rejected)
        comebacks.append(came)
        opportunities.append(new)
        quiet.append(Quiet(rejected.lead[~back], rejected.at[~back], until))
    deals = Opportunities.concat(opportunities)
    if not sum(len(part) for part in rejections):
        rejections.append(_fallback_rejection(rng, pop, deals, end, rep_skill, rep_load))
    return Journey(
        rejections=Rejections.concat(rejections),
        opportunities=deals,
        comebacks=Comebacks.concat(comebacks),
        quiet=Quiet.concat(quiet),
    )


def _paths(rng: np.random.Generator, pop: Population) -> np.ndarray:
    score = pop.fit + 0.5 * pop.intent
    p_direct = np.clip(0.25 + 0.08 * score, 0.03, 0.6)
    u = rng.random(pop.size)
    return np.where(
        u < REJECTED_SHARE, REJECTED, np.where(u < REJECTED_SHARE + p_direct, DIRECT, NURTURE)
    )


def _first_rejections(rng: np.random.Generator, pop: Population, lead: np.ndarray) -> Pending:
    n = len(lead)
    stage = pick(rng, STAGE_WEIGHTS, n)
    delay = np.select(
        [stage == MQL, stage == SAL, stage == SQL],
        [1 + rng.gamma(2, 6, n), 7 + rng.gamma(2, 10, n), 20 + rng.gamma(2.5, 14, n)],
        25 + 0.7 * cycle_days(rng, pop.segment[lead]),
    )
    return Pending(lead, pop.created[lead] + delay, stage, np.zeros(n, dtype=bool))


def _describe(
    rng: np.random.Generator,
    pop: Population,
    pending: Pending,
    rep_skill: np.ndarray,
    rep_load: np.ndarray,
) -> tuple[Rejections, np.ndarray]:
    lead, n = pending.lead, len(pending)
    reason = pick_rows(rng, _reason_weights(pop, lead, pending.stage))
    barrier = pick_rows(rng, BARRIER_WEIGHTS[reason])
    rep = pick(rng, rep_load, n)
    effects = (
        0.5 * pop.fit[lead]
        + 0.8 * pop.intent[lead]
        + rep_skill[rep]
        + BARRIER_EFFECT[barrier]
        + STAGE_EFFECT[pending.stage]
        + rng.normal(0.0, 0.4, n)
    )
    logit = effects + _intercepts(effects, reason)[reason]
    reachable = COMEBACK_TARGET[reason] > 0
    score = 30 + 10 * pop.fit[lead] + 9 * pop.intent[lead] + 7 * pending.stage
    rejected = Rejections(
        lead=lead,
        at=pending.at,
        stage=pending.stage,
        reason=reason,
        detail=_details(rng, reason),
        barrier=blank(rng, barrier, 0.1),
        potential=blank(rng, _potential(rng, logit, reachable), 0.1),
        follow_up=_follow_up(rng, reason, pending.at),
        score=np.where(
            rng.random(n) < 0.06, np.nan, np.round(np.clip(score + rng.normal(0, 12, n), 0, 150), 1)
        ),
        program=_programs(rng, reason),
        rep=blank(rng, rep, 0.05),
    )
    return rejected, np.where(reachable, sigmoid(logit), 0.0)


def _fallback_rejection(
    rng: np.random.Generator,
    pop: Population,
    deals: Opportunities,
    end: float,
    rep_skill: np.ndarray,
    rep_load: np.ndarray,
) -> Rejections:
    # The contract needs at least one rejection; a tiny sample may not have produced one.
    # The earliest lead without a deal is rejected half-way to the end; when every lead has
    # one, the first lead half-way to its first deal, so the rejection never follows a deal.
    first_deal = np.full(pop.size, np.inf)
    np.minimum.at(first_deal, deals.lead, deals.created)
    without = np.flatnonzero(np.isinf(first_deal))
    lead = int(without[0]) if len(without) else 0
    at = np.array([(pop.created[lead] + min(first_deal[lead], end)) / 2])
    pending = Pending(np.array([lead]), at, np.array([MQL]), np.zeros(1, dtype=bool))
    return _describe(rng, pop, pending, rep_skill, rep_load)[0]


def _reason_weights(pop: Population, lead: np.ndarray, stage: np.ndarray) -> np.ndarray:
    weights = STAGE_REASON_WEIGHTS[stage].copy()
    level, segment = pop.level[lead], pop.segment[lead]
    investment = pop.product_fit_true[lead] == 2  # major_investment
    weights[:, REASON["not_decision_maker"]] *= np.array([0.3, 0.5, 0.8, 1.2, 2.2, 2.5, 1.8])[level]
    by_segment = np.array([1.4, 1.0, 0.7])[segment]
    weights[:, REASON["budget"]] *= by_segment * np.where(investment, 1.5, 1)
    weights[:, REASON["competitor_won"]] *= np.array([0.8, 1.2, 1.8])[segment]
    weights[:, REASON["bad_data"]] *= np.where(level >= 5, 3.0, 1.0)
    weights[:, REASON["no_need"]] *= 1.0 + np.maximum(0.0, -pop.fit[lead])
    weights[:, REASON["wrong_solution"]] *= (1.0 + np.maximum(0.0, -pop.fit[lead])) * np.where(
        investment, 2.0, 1.0
    )
    return weights


def _intercepts(effects: np.ndarray, reason: np.ndarray) -> np.ndarray:
    # Solve, per reason, the intercept that makes the mean comeback chance hit its target.
    k = len(REASON_CODES)
    low, high = np.full(k, -12.0), np.full(k, 6.0)
    counts = np.maximum(np.bincount(reason, minlength=k), 1)
    for _ in range(40):
        middle = (low + high) / 2
        rate = np.bincount(reason, sigmoid(middle[reason] + effects), minlength=k) / counts
        too_high = rate > COMEBACK_TARGET
        high, low = np.where(too_high, middle, high), np.where(too_high, low, middle)
    return (low + high) / 2


def _potential(rng: np.random.Generator, logit: np.ndarray, reachable: np.ndarray) -> np.ndarray:
    # The rep's view of future potential: a noisy reading of the true comeback odds.
    view = logit + rng.normal(0.0, 1.0, len(logit))
    cuts = np.quantile(view, [0.2, 0.55, 0.85]) if len(view) else np.zeros(3)
    code = 3 - np.searchsorted(cuts, view)  # REP_POTENTIALS: high, medium, low, none
    return np.where(reachable, code, 3)


def _follow_up(rng: np.random.Generator, reason: np.ndarray, at: np.ndarray) -> np.ndarray:
    n = len(at)
    months = np.where(reason == REASON["timing"], rng.uniform(1, 6, n), rng.uniform(2, 9, n))
    ahead = at + 30.4 * months
    at_new_year = (reason == REASON["budget"]) & (rng.random(n) < 0.5)
    ahead = np.where(at_new_year, next_year_start(at + 14), ahead)
    has = rng.random(n) < FOLLOW_UP_SHARE[reason]
    return np.where(has, np.floor(ahead), np.nan)


def _programs(rng: np.random.Generator, reason: np.ndarray) -> np.ndarray:
    n = len(reason)
    program = PROGRAM_BY_REASON[reason]
    other = rng.integers(0, len(PROGRAMS), n)
    program = np.where((program >= 0) & (rng.random(n) < 0.15), other, program)
    return np.where(rng.random(n) < 0.2, MISSING, program)


def _details(rng: np.random.Generator, reason: np.ndarray) -> np.ndarray:
    widest = max(len(options) for options in DETAILS)
    table = np.full((len(DETAILS), widest), None, dtype=object)
    for code, options in enumerate(DETAILS):
        table[code, : len(options)] = options
    counts = np.array([len(options) for options in DETAILS])
    choice = np.floor(rng.random(len(reason)) * counts[reason]).astype(int)
    detail = table[reason, choice]
    detail[rng.random(len(reason)) < 0.15] = None
    return detail


def _comeback_time(rng: np.random.Generator, rejected: Rejections) -> np.ndarray:
    reason, at, n = rejected.reason, rejected.at, len(rejected)
    due = at + rng.gamma(2.0, 110.0, n)  # no_need, wrong_solution, other: slow and rare
    due = np.where(reason == REASON["needs_nurturing"], at + rng.gamma(2.5, 65.0, n), due)
    due = np.where(reason == REASON["unresponsive"], at + rng.gamma(2.0, 85.0, n), due)
    due = np.where(reason == REASON["not_decision_maker"], at + rng.gamma(3.0, 45.0, n), due)
    due = np.where(reason == REASON["competitor_won"], at + rng.normal(345.0, 25.0, n), due)
    january = (reason == REASON["budget"]) & (rng.random(n) < 0.7)
    budget_opens = np.where(january, next_year_start(at + 14), next_quarter_start(at + 45))
    budget_opens += rng.gamma(2.0, 8.0, n)
    near_follow_up = rejected.follow_up + rng.normal(0.0, 14.0, n)
    use_follow_up = np.isfinite(rejected.follow_up) & (rng.random(n) < 0.6)
    timed = np.where(use_follow_up, near_follow_up, budget_opens)
    due = np.where(np.isin(reason, (REASON["budget"], REASON["timing"])), timed, due)
    return np.maximum(due, at + 14.0)


def _deal_before(
    rng: np.random.Generator, pop: Population, rejected: Rejections, needed: np.ndarray
) -> Opportunities:
    # A rejection at stage 'opportunity' closes a deal that was opened earlier and lost.
    select = needed & (rejected.stage == OPPORTUNITY)
    loss = LOSS_BY_REASON[rejected.reason[select]]
    return lost_deals(rng, pop, rejected.lead[select], rejected.at[select], loss)


def _next_rejections(
    rng: np.random.Generator,
    rejected: Rejections,
    back: np.ndarray,
    new: Opportunities,
) -> tuple[Pending, np.ndarray]:
    # A stalled comeback is rejected again at stage 'opportunity'; a quiet lead may re-MQL.
    stalled = (new.status == LOST) & (rng.random(len(new)) < 0.35)
    again = Pending(
        new.lead[stalled],
        new.closed[stalled] + rng.uniform(0.0, 3.0, int(stalled.sum())),
        np.full(int(stalled.sum()), OPPORTUNITY),
        np.ones(int(stalled.sum()), dtype=bool),
    )
    quiet = ~back
    n_quiet = int(quiet.sum())
    contactable = COMEBACK_TARGET[rejected.reason[quiet]] > 0
    re_mql = contactable & (rng.random(n_quiet) < 0.12)
    at = rejected.at[quiet] + rng.uniform(120.0, 540.0, n_quiet)
    remql = Pending(
        rejected.lead[quiet][re_mql],
        at[re_mql],
        pick(rng, (45, 30, 25), int(re_mql.sum())),
        np.zeros(int(re_mql.sum()), dtype=bool),
    )
    return Pending.concat([again, remql]), np.where(re_mql, at, np.inf)
