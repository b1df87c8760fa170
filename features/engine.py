"""The feature engine: one implementation for training, batch scoring and the API.

Every feature is computed from rows at or before each example's ``as_of`` by position
look-ups over sorted numpy columns (see ``features.positions``). Each block declares its
features as it computes them, so the feature catalogue is generated from this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from typing import Literal

import numpy as np

from features.config import FeatureConfig
from features.contract import (
    ACTIVITY_TYPES,
    CONSENT_STATUSES,
    JOB_LEVELS,
    MARKETING_ACTIVITIES,
    REASON_CODES,
    SALES_ACTIVITIES,
)
from features.examples import Examples
from features.history import (
    CODES,
    DAY_US,
    LEAD_CODE_COLUMNS,
    REJECTION_CODE_COLUMNS,
    History,
)
from features.normalise import derive_job_levels, normalise_text
from features.positions import (
    event_positions,
    last_of_each_kind,
    lead_starts,
    positions,
    prefix_counts,
    range_sums,
)

FeatureKind = Literal["numeric", "category", "text"]

INTENT_ACTIVITIES = (
    "pricing_page_visit",
    "demo_request",
    "form_submit",
    "chat_conversation",
    "content_download",
    "webinar_attended",
)
ACTIVITY_GROUPS: dict[str, tuple[str, ...]] = {
    "marketing": MARKETING_ACTIVITIES,
    "sales": SALES_ACTIVITIES,
    "intent": INTENT_ACTIVITIES,
}
PRE_REJECTION_DAYS = 30
TREND_RECENT_DAYS = 30
TREND_EARLIER_DAYS = 90


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature means and where it comes from (one row of the catalogue)."""

    name: str
    kind: FeatureKind
    meaning: str
    window: str
    source: str
    vocabulary: tuple[str, ...] = ()


@dataclass
class FeatureTable:
    """Raw feature columns for a set of examples, in catalogue order.

    ``numeric`` and ``category`` columns are float64 (categories as contract codes, NaN
    when missing); ``text`` columns hold normalised strings to be encoded with a
    vocabulary learned in training (``features.encoding``).
    """

    specs: list[FeatureSpec] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Feature names in order."""
        return [spec.name for spec in self.specs]

    def add(
        self,
        name: str,
        values: np.ndarray,
        *,
        meaning: str,
        source: str,
        window: str = "at as_of",
        kind: FeatureKind = "numeric",
        vocabulary: tuple[str, ...] = (),
    ) -> None:
        """Record one feature column and its catalogue entry."""
        if kind == "text":
            column = np.asarray(values, dtype=object)
        else:
            column = np.asarray(values, dtype=np.float64)
        self.specs.append(_spec(name, kind, meaning, window, source, vocabulary))
        self.columns[name] = column

    def add_block(self, specs: tuple[FeatureSpec, ...], block: np.ndarray) -> None:
        """Record several numeric features at once: column ``j`` of ``block`` is ``specs[j]``."""
        block = np.asarray(block, dtype=np.float64)
        self.specs.extend(specs)
        for position, spec in enumerate(specs):
            self.columns[spec.name] = block[:, position]

    def add_category(
        self, name: str, codes: np.ndarray, vocabulary: tuple[str, ...], **kw: str
    ) -> None:
        """Record a contract-vocabulary category given its integer codes (-1 missing)."""
        values = np.where(codes >= 0, codes, np.nan).astype(np.float64)
        self.add(
            name,
            values,
            kind="category",
            vocabulary=vocabulary,
            meaning=kw["meaning"],
            source=kw["source"],
            window=kw.get("window", "at as_of"),
        )


@cache
def _spec(
    name: str,
    kind: FeatureKind,
    meaning: str,
    window: str,
    source: str,
    vocabulary: tuple[str, ...] = (),
) -> FeatureSpec:
    """One shared ``FeatureSpec`` per distinct definition (specs do not depend on data)."""
    return FeatureSpec(name, kind, meaning, window, source, vocabulary)


@dataclass
class _Context:
    """Per-example look-ups shared by the feature blocks."""

    history: History
    examples: Examples
    config: FeatureConfig
    all_time_activity_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @cached_property
    def lead(self) -> np.ndarray:
        return self.history.rejections.lead[self.examples.rejection_row]

    @cached_property
    def rejected_at(self) -> np.ndarray:
        return self.history.rejections.time[self.examples.rejection_row]

    @property
    def as_of(self) -> np.ndarray:
        return self.examples.as_of

    def days_before_as_of(self, times: np.ndarray) -> np.ndarray:
        return (self.as_of - times) / DAY_US


def compute_features(history: History, examples: Examples, config: FeatureConfig) -> FeatureTable:
    """Compute every feature of every example from rows at or before its ``as_of``."""
    context = _Context(history, examples, config)
    table = FeatureTable()
    for block in FEATURE_BLOCKS:
        block(context, table)
    return table


def _lead_block(ctx: _Context, table: FeatureTable) -> None:
    h, lead = ctx.history, ctx.lead
    for column, vocabulary in LEAD_CODE_COLUMNS.items():
        if column == "job_level":
            continue
        table.add_category(
            column,
            h.lead_codes[column][lead],
            vocabulary,
            meaning=f"lead {column}",
            source="leads",
            window="static",
        )
    levels, derived = derive_job_levels(h.lead_codes["job_level"], h.lead_text["job_title"])
    table.add_category(
        "job_level",
        levels[lead],
        JOB_LEVELS,
        source="leads",
        window="static",
        meaning="job level; derived from the job title when missing or unknown",
    )
    table.add(
        "job_level_from_title",
        derived[lead].astype(float),
        source="leads",
        window="static",
        meaning="1 when the job level was derived from the title",
    )
    for column in ("industry", "country"):
        table.add(
            column,
            normalise_text(h.lead_text[column])[lead],
            kind="text",
            source="leads",
            window="static",
            meaning=f"lead {column} (normalised free text)",
        )
    for column, values in h.lead_numbers.items():
        table.add(column, values[lead], source="leads", window="static", meaning=f"lead {column}")
    for column in ctx.config.custom_columns.categorical:
        table.add(
            column,
            normalise_text(h.lead_text[column])[lead],
            kind="text",
            source="leads",
            window="static",
            meaning=f"custom lead column {column}",
        )
    table.add(
        "lead_age_days",
        ctx.days_before_as_of(h.lead_created[lead]),
        source="leads",
        meaning="days from lead creation to as_of",
    )


def _rejection_block(ctx: _Context, table: FeatureTable) -> None:
    rejections, rows = ctx.history.rejections, ctx.examples.rejection_row
    for column, vocabulary in REJECTION_CODE_COLUMNS.items():
        table.add_category(
            column,
            rejections.codes[column][rows],
            vocabulary,
            source="rejections",
            meaning=f"{column} of this rejection",
            window="at rejection",
        )
    table.add(
        "recommended_program",
        normalise_text(rejections.program[rows]),
        kind="text",
        source="rejections",
        window="at rejection",
        meaning="nurture program the rep picked",
    )
    table.add(
        "lead_score_at_rejection",
        rejections.lead_score[rows],
        source="rejections",
        window="at rejection",
        meaning="the marketing platform's score at rejection",
    )
    table.add(
        "days_since_rejection",
        ctx.days_before_as_of(ctx.rejected_at),
        source="rejections",
        meaning="days from the rejection to as_of",
    )
    _follow_up_features(ctx, table, rejections.follow_up[rows])
    _calendar_features(ctx, table)


def _follow_up_features(ctx: _Context, table: FeatureTable, follow_up: np.ndarray) -> None:
    known = follow_up != np.iinfo(np.int64).min
    until = np.where(known, (follow_up - ctx.as_of) / DAY_US, np.nan)
    table.add(
        "follow_up_days",
        until,
        source="rejections",
        meaning="days from as_of until the rep's follow-up date (negative once passed)",
    )
    table.add(
        "follow_up_overdue",
        np.where(known, (until <= 0).astype(float), np.nan),
        source="rejections",
        meaning="1 when the follow-up date has come",
    )


def _calendar_features(ctx: _Context, table: FeatureTable) -> None:
    moments = ctx.as_of.astype("datetime64[us]")
    months = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    next_year = (moments.astype("datetime64[Y]") + 1).astype("datetime64[us]").astype(np.int64)
    table.add("as_of_month", months, source="as_of", meaning="calendar month of as_of")
    table.add(
        "days_to_next_year",
        (next_year - ctx.as_of) / DAY_US,
        source="as_of",
        meaning="days from as_of to the next calendar (fiscal) year",
    )


def _earlier_rejection_block(ctx: _Context, table: FeatureTable) -> None:
    rejections, lead = ctx.history.rejections, ctx.lead
    (before,) = positions(rejections.lead, rejections.time, lead, [ctx.rejected_at], "left")
    start = lead_starts(rejections.lead, ctx.history.n_leads)[lead]
    earlier = before - start
    table.add(
        "earlier_rejections",
        earlier,
        source="rejections",
        window="before this rejection",
        meaning="how many times the lead was rejected before this rejection",
    )
    previous = np.maximum(before - 1, 0)
    has_previous = earlier > 0
    reason = rejections.codes["reason_code"]
    table.add_category(
        "previous_reason_code",
        np.where(has_previous, reason[previous], -1),
        REASON_CODES,
        source="rejections",
        window="before this rejection",
        meaning="reason of the lead's previous rejection",
    )
    table.add(
        "days_since_previous_rejection",
        np.where(has_previous, (ctx.rejected_at - rejections.time[previous]) / DAY_US, np.nan),
        source="rejections",
        window="before this rejection",
        meaning="days between the previous rejection and this one",
    )
    counts = prefix_counts(np.maximum(reason, 0), len(REASON_CODES))
    table.add_block(_earlier_reason_specs(), counts[before] - counts[start])


@lru_cache(maxsize=1)
def _earlier_reason_specs() -> tuple[FeatureSpec, ...]:
    return tuple(
        _spec(
            f"earlier_rejections_{name}",
            "numeric",
            f"earlier rejections of the lead with reason {name}",
            "before this rejection",
            "rejections",
        )
        for name in REASON_CODES
    )


def _opportunity_block(ctx: _Context, table: FeatureTable) -> None:
    h, lead, as_of = ctx.history, ctx.lead, ctx.as_of
    created, closed = h.opportunities_created, h.opportunities_closed
    created_start = lead_starts(created.lead, h.n_leads)[lead]
    (created_upto,) = event_positions(created, lead, [as_of])
    closed_start = lead_starts(closed.lead, h.n_leads)[lead]
    (closed_upto,) = event_positions(closed, lead, [as_of])
    n_created = created_upto - created_start
    n_closed = closed_upto - closed_start
    table.add(
        "opportunities_before",
        n_created,
        source="opportunities",
        meaning="opportunities created for the lead by as_of",
    )
    table.add(
        "opportunities_open",
        n_created - n_closed,
        source="opportunities",
        meaning="of those, still open at as_of",
    )
    won_code = CODES["opportunity_status"]["won"]
    for status in ("won", "lost"):
        is_status = (closed.kind == won_code) == (status == "won")
        status_counts = np.concatenate([[0], np.cumsum(is_status)])
        amounts = np.where(is_status, closed.value, 0.0)
        table.add(
            f"opportunities_{status}",
            status_counts[closed_upto] - status_counts[closed_start],
            source="opportunities",
            meaning=f"opportunities closed {status} by as_of",
        )
        table.add(
            f"amount_{status}",
            range_sums(amounts, closed_start, closed_upto),
            source="opportunities",
            meaning=f"total amount (USD) of opportunities closed {status}",
        )
    table.add(
        "days_since_last_opportunity",
        _days_since_last(ctx, created.time, created_start, created_upto),
        source="opportunities",
        meaning="days since the lead's latest opportunity was created",
    )
    table.add(
        "days_since_last_close",
        _days_since_last(ctx, closed.time, closed_start, closed_upto),
        source="opportunities",
        meaning="days since the lead's latest opportunity closed",
    )


def _days_since_last(
    ctx: _Context, times: np.ndarray, start: np.ndarray, upto: np.ndarray
) -> np.ndarray:
    has_any = upto > start
    if not len(times):
        return np.full(len(start), np.nan)
    last = times[np.maximum(upto - 1, 0)]
    return np.where(has_any, ctx.days_before_as_of(last), np.nan)


def _consent_block(ctx: _Context, table: FeatureTable) -> None:
    h, lead = ctx.history, ctx.lead
    consent = h.consent
    start = lead_starts(consent.lead, h.n_leads)[lead]
    (upto,) = event_positions(consent, lead, [ctx.as_of])
    has_any = upto > start
    subscribed = CODES["consent_status"]["subscribed"]
    latest = consent.kind[np.maximum(upto - 1, 0)] if len(consent) else np.zeros(len(lead), int)
    status = np.where(has_any, latest, subscribed)
    table.add_category(
        "consent_status",
        status,
        CONSENT_STATUSES,
        source="consent",
        meaning="the lead's consent at as_of (subscribed when never changed)",
    )
    opted_out = np.concatenate([[0], np.cumsum(consent.kind != subscribed)])
    table.add(
        "consent_opt_outs",
        opted_out[upto] - opted_out[start],
        source="consent",
        meaning="times the lead unsubscribed or asked not to be contacted by as_of",
    )


def _engagement_block(ctx: _Context, table: FeatureTable) -> None:
    activities, lead, as_of = ctx.history.activities, ctx.lead, ctx.as_of
    windows = ctx.config.windows_days
    pre_start = ctx.rejected_at - PRE_REJECTION_DAYS * DAY_US
    bounds = [as_of, ctx.rejected_at, pre_start, *(as_of - w * DAY_US for w in windows)]
    upto, at_rejection, before_pre, *window_starts = event_positions(activities, lead, bounds)
    # A rejection can be scored only at or after it happened; clamp so windows never
    # reach past as_of even for malformed inputs.
    at_rejection = np.minimum(at_rejection, upto)
    counts = prefix_counts(activities.kind, len(ACTIVITY_TYPES))
    start = lead_starts(activities.lead, ctx.history.n_leads)[lead]
    now = counts[upto]
    per_window = {w: now - counts[s] for w, s in zip(windows, window_starts, strict=True)}
    since_rejection = now - counts[at_rejection]
    pre_rejection = counts[at_rejection] - counts[np.minimum(before_pre, at_rejection)]
    all_time = now - counts[start]
    _per_type_features(ctx, table, per_window, since_rejection)
    _recency_features(ctx, table, start, upto)
    _group_features(table, per_window, since_rejection, pre_rejection, all_time)
    ctx.all_time_activity_counts = all_time


def _per_type_features(
    ctx: _Context,
    table: FeatureTable,
    per_window: dict[int, np.ndarray],
    since_rejection: np.ndarray,
) -> None:
    for window, counts in per_window.items():
        table.add_block(_per_type_specs(f"{window}d", f"{window} days before as_of"), counts)
    table.add_block(_per_type_specs("since_rejection", "since the rejection"), since_rejection)


@cache
def _per_type_specs(suffix: str, window: str) -> tuple[FeatureSpec, ...]:
    return tuple(
        _spec(f"{kind}_{suffix}", "numeric", f"{kind} events", window, "activities")
        for kind in ACTIVITY_TYPES
    )


def _recency_features(
    ctx: _Context, table: FeatureTable, start: np.ndarray, upto: np.ndarray
) -> None:
    activities = ctx.history.activities
    table.add(
        "days_since_last_activity",
        _days_since_last(ctx, activities.time, start, upto),
        source="activities",
        meaning="days since the lead's latest activity of any type",
    )
    last = last_of_each_kind(activities.kind, len(ACTIVITY_TYPES), upto)
    seen = last >= start[:, None]
    times = activities.time[np.maximum(last, 0)] if len(activities) else np.zeros(last.shape)
    days = np.where(seen, (ctx.as_of[:, None] - times) / DAY_US, np.nan)
    table.add_block(_recency_specs(), days)


@lru_cache(maxsize=1)
def _recency_specs() -> tuple[FeatureSpec, ...]:
    return tuple(
        _spec(
            f"days_since_{kind}",
            "numeric",
            f"days since the lead's latest {kind}",
            "at as_of",
            "activities",
        )
        for kind in ACTIVITY_TYPES
    )


def _group_features(
    table: FeatureTable,
    per_window: dict[int, np.ndarray],
    since_rejection: np.ndarray,
    pre_rejection: np.ndarray,
    all_time: np.ndarray,
) -> None:
    membership = _group_membership()
    for window, counts in per_window.items():
        specs = _group_specs(f"{window}d", f"{window} days before as_of", "activities")
        table.add_block(specs, counts @ membership)
    table.add_block(
        _group_specs("since_rejection", "since the rejection", "activities after the rejection"),
        since_rejection @ membership,
    )
    table.add_block(
        _group_specs(
            f"pre_rejection_{PRE_REJECTION_DAYS}d",
            f"{PRE_REJECTION_DAYS} days before the rejection",
            "activities in the month before the rejection",
        ),
        pre_rejection @ membership,
    )
    table.add_block(
        _group_specs("total", "all history to as_of", "activities ever"), all_time @ membership
    )
    if TREND_RECENT_DAYS in per_window and TREND_EARLIER_DAYS in per_window:
        recent = per_window[TREND_RECENT_DAYS] @ membership
        earlier = per_window[TREND_EARLIER_DAYS] @ membership - recent
        trend = recent / TREND_RECENT_DAYS - earlier / (TREND_EARLIER_DAYS - TREND_RECENT_DAYS)
        table.add_block(_trend_specs(), trend)


@lru_cache(maxsize=1)
def _group_membership() -> np.ndarray:
    """Activity type x group indicator matrix (float, so counts @ matrix sums per group)."""
    membership = np.zeros((len(ACTIVITY_TYPES), len(ACTIVITY_GROUPS)))
    for column, kinds in enumerate(ACTIVITY_GROUPS.values()):
        membership[[ACTIVITY_TYPES.index(k) for k in kinds], column] = 1.0
    return membership


@cache
def _group_specs(suffix: str, window: str, meaning: str) -> tuple[FeatureSpec, ...]:
    return tuple(
        _spec(f"{group}_{suffix}", "numeric", f"{group} {meaning}", window, "activities")
        for group in ACTIVITY_GROUPS
    )


@lru_cache(maxsize=1)
def _trend_specs() -> tuple[FeatureSpec, ...]:
    return tuple(
        _spec(
            f"{group}_trend",
            "numeric",
            f"daily rate of {group} activities, last 30 days minus the 60 before",
            "30 vs 31-90 days before as_of",
            "activities",
        )
        for group in ACTIVITY_GROUPS
    )


def _points_block(ctx: _Context, table: FeatureTable) -> None:
    points, h, lead = ctx.config.points, ctx.history, ctx.lead
    all_time = ctx.all_time_activity_counts
    weights = np.array([points.behaviour.get(kind, 0.0) for kind in ACTIVITY_TYPES])
    behaviour = all_time @ weights
    industry = normalise_text(h.lead_text["industry"])
    target = _member_of(industry, points.target_verticals)[lead]
    expertise = _member_of(industry, points.expertise_verticals)[lead] & target
    vertical = np.where(
        expertise,
        points.vertical_with_expertise,
        np.where(target, points.vertical_without_expertise, 0.0),
    )
    fit_by_code = np.array(
        [points.product_fit.get(v, 0.0) for v in LEAD_CODE_COLUMNS["product_fit"]]
    )
    fit_code = h.lead_codes["product_fit"][lead]
    product = np.where(fit_code >= 0, fit_by_code[np.maximum(fit_code, 0)], 0.0)
    total = behaviour + vertical + product
    required = [ACTIVITY_TYPES.index(k) for k in points.qualification_requires]
    qualified = (total >= points.qualification_min_points) & (all_time[:, required] > 0).all(axis=1)
    if points.qualification_requires_target_vertical:
        qualified &= target
    for name, values, meaning in (
        ("target_vertical", target, "1 when the industry is a target vertical"),
        ("vertical_expertise", expertise, "1 when it is a target vertical with domain expertise"),
        ("fit_points", vertical + product, "classic fit points: vertical and product fit"),
        ("behaviour_points", behaviour, "classic behaviour points from sales activities"),
        ("points_score", total, "classic points score: fit plus behaviour"),
        ("points_qualified", qualified, "1 when the classic qualification rule passes"),
    ):
        table.add(name, values.astype(float), source="leads+activities", meaning=meaning)


def _member_of(values: np.ndarray, allowed: tuple[str, ...]) -> np.ndarray:
    """Element-wise membership of strings (None never a member), by set look-up."""
    members = frozenset(allowed)
    return np.fromiter((v in members for v in values), dtype=bool, count=len(values))


FEATURE_BLOCKS = (
    _lead_block,
    _rejection_block,
    _earlier_rejection_block,
    _opportunity_block,
    _consent_block,
    _engagement_block,
    _points_block,
)
