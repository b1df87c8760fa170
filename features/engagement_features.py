"""Engagement features (activity counts, recency, trends) and the classic points score."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from features.config import PointsConfig
from features.contract import ACTIVITY_TYPES, MARKETING_ACTIVITIES, SALES_ACTIVITIES
from features.feature_table import ExampleContext, FeatureSpec, FeatureTable, feature_spec
from features.history import DAY_US, LEAD_CODE_COLUMNS
from features.identity_cache import per_object
from features.positions import event_positions, last_of_each_kind, lead_starts, prefix_counts
from features.profile_features import days_since_last

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


def engagement_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """Activity counts per type and group over windows before ``as_of``, recency and trend."""
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
    ctx: ExampleContext,
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
        feature_spec(f"{kind}_{suffix}", "numeric", f"{kind} events", window, "activities")
        for kind in ACTIVITY_TYPES
    )


def _recency_features(
    ctx: ExampleContext, table: FeatureTable, start: np.ndarray, upto: np.ndarray
) -> None:
    activities = ctx.history.activities
    table.add(
        "days_since_last_activity",
        days_since_last(ctx, activities.time, start, upto),
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
        feature_spec(
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
        feature_spec(f"{group}_{suffix}", "numeric", f"{group} {meaning}", window, "activities")
        for group in ACTIVITY_GROUPS
    )


@lru_cache(maxsize=1)
def _trend_specs() -> tuple[FeatureSpec, ...]:
    return tuple(
        feature_spec(
            f"{group}_trend",
            "numeric",
            f"daily rate of {group} activities, last 30 days minus the 60 before",
            "30 vs 31-90 days before as_of",
            "activities",
        )
        for group in ACTIVITY_GROUPS
    )


@dataclass(frozen=True)
class _PointsTables:
    """A points configuration as arrays: behaviour weights, fit points, required types."""

    weights: np.ndarray
    fit_by_code: np.ndarray
    required: list[int]


@per_object
def _points_tables(points: PointsConfig) -> _PointsTables:
    return _PointsTables(
        weights=np.array([points.behaviour.get(kind, 0.0) for kind in ACTIVITY_TYPES]),
        fit_by_code=np.array(
            [points.product_fit.get(v, 0.0) for v in LEAD_CODE_COLUMNS["product_fit"]]
        ),
        required=[ACTIVITY_TYPES.index(k) for k in points.qualification_requires],
    )


def points_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """The classic points score (fit plus behaviour points) and its qualification rule."""
    points, h, lead = ctx.config.points, ctx.history, ctx.lead
    tables = _points_tables(points)
    all_time = ctx.all_time_activity_counts
    behaviour = all_time @ tables.weights
    industry = ctx.lead_text("industry")
    target = _member_of(industry, points.target_verticals)[lead]
    expertise = _member_of(industry, points.expertise_verticals)[lead] & target
    vertical = np.where(
        expertise,
        points.vertical_with_expertise,
        np.where(target, points.vertical_without_expertise, 0.0),
    )
    fit_code = h.lead_codes["product_fit"][lead]
    product = np.where(fit_code >= 0, tables.fit_by_code[np.maximum(fit_code, 0)], 0.0)
    total = behaviour + vertical + product
    qualified = (total >= points.qualification_min_points) & (all_time[:, tables.required] > 0).all(
        axis=1
    )
    if points.qualification_requires_target_vertical:
        qualified &= target
    block = np.column_stack([target, expertise, vertical + product, behaviour, total, qualified])
    table.add_block(_points_specs(), block)


@lru_cache(maxsize=1)
def _points_specs() -> tuple[FeatureSpec, ...]:
    return tuple(
        feature_spec(name, "numeric", meaning, "at as_of", "leads+activities")
        for name, meaning in (
            ("target_vertical", "1 when the industry is a target vertical"),
            ("vertical_expertise", "1 when it is a target vertical with domain expertise"),
            ("fit_points", "classic fit points: vertical and product fit"),
            ("behaviour_points", "classic behaviour points from sales activities"),
            ("points_score", "classic points score: fit plus behaviour"),
            ("points_qualified", "1 when the classic qualification rule passes"),
        )
    )


def _member_of(values: np.ndarray, allowed: tuple[str, ...]) -> np.ndarray:
    """Element-wise membership of strings (None never a member), by set look-up."""
    members = frozenset(allowed)
    return np.fromiter((v in members for v in values), dtype=bool, count=len(values))
