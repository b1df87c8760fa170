"""Features of the lead, the rejection, the lead's history and its consent at ``as_of``."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from features.contract import CONSENT_STATUSES, JOB_LEVELS, REASON_CODES
from features.feature_table import ExampleContext, FeatureSpec, FeatureTable, feature_spec
from features.history import CODES, DAY_US, LEAD_CODE_COLUMNS, REJECTION_CODE_COLUMNS
from features.normalise import derive_job_levels, normalise_text
from features.positions import event_positions, lead_starts, positions, prefix_counts, range_sums


def lead_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """Lead attributes: source, job level (from the title when missing), fit, firmographics."""
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
        _add_lead_text(ctx, table, column, f"lead {column} (normalised free text)")
    for column, values in h.lead_numbers.items():
        table.add(column, values[lead], source="leads", window="static", meaning=f"lead {column}")
    for column in ctx.config.custom_columns.categorical:
        _add_lead_text(ctx, table, column, f"custom lead column {column}")
    table.add(
        "lead_age_days",
        ctx.days_before_as_of(h.lead_created[lead]),
        source="leads",
        meaning="days from lead creation to as_of",
    )


def _add_lead_text(ctx: ExampleContext, table: FeatureTable, column: str, meaning: str) -> None:
    table.add(
        column,
        ctx.lead_text(column)[ctx.lead],
        kind="text",
        source="leads",
        window="static",
        meaning=meaning,
    )


def rejection_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """This rejection: reason, stage, barrier, potential, program, score, follow-up, calendar."""
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


def _follow_up_features(ctx: ExampleContext, table: FeatureTable, follow_up: np.ndarray) -> None:
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


def _calendar_features(ctx: ExampleContext, table: FeatureTable) -> None:
    moments = ctx.as_of.astype("datetime64[us]")
    months = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    table.add("as_of_month", months, source="as_of", meaning="calendar month of as_of")
    table.add(
        "days_to_next_year",
        days_to_year_start(ctx.as_of, 1, 1),
        source="as_of",
        meaning="days from as_of to the next calendar year (1 January)",
    )


def days_to_year_start(as_of: np.ndarray, month: int, day: int) -> np.ndarray:
    """Days from each ``as_of`` (int64 microseconds, UTC) to the next start of a year that
    starts at midnight UTC of ``month``-``day``, strictly after ``as_of``: the calendar year
    for the feature ``days_to_next_year`` (1 January), a routing policy's fiscal year."""
    moments = as_of.astype("datetime64[us]")
    years = moments.astype("datetime64[Y]")
    this_year = _month_day_of(years, month, day)
    start = np.where(this_year > moments, this_year, _month_day_of(years + 1, month, day))
    return (start.astype(np.int64) - as_of) / DAY_US


def _month_day_of(years: np.ndarray, month: int, day: int) -> np.ndarray:
    """Midnight UTC of ``month``-``day`` in each year, as ``datetime64[us]``."""
    first_of_month = years.astype("datetime64[M]") + (month - 1)
    return (first_of_month.astype("datetime64[D]") + (day - 1)).astype("datetime64[us]")


def earlier_rejection_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """The lead's rejections strictly before this one: count, per reason, the previous one."""
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
        feature_spec(
            f"earlier_rejections_{name}",
            "numeric",
            f"earlier rejections of the lead with reason {name}",
            "before this rejection",
            "rejections",
        )
        for name in REASON_CODES
    )


def opportunity_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """Opportunities created by ``as_of``; won and lost only once closed by ``as_of``."""
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
        days_since_last(ctx, created.time, created_start, created_upto),
        source="opportunities",
        meaning="days since the lead's latest opportunity was created",
    )
    table.add(
        "days_since_last_close",
        days_since_last(ctx, closed.time, closed_start, closed_upto),
        source="opportunities",
        meaning="days since the lead's latest opportunity closed",
    )


def days_since_last(
    ctx: ExampleContext, times: np.ndarray, start: np.ndarray, upto: np.ndarray
) -> np.ndarray:
    """Days from each example's ``as_of`` back to the event just before ``upto`` (NaN if none)."""
    has_any = upto > start
    if not len(times):
        return np.full(len(start), np.nan)
    last = times[np.maximum(upto - 1, 0)]
    return np.where(has_any, ctx.days_before_as_of(last), np.nan)


def consent_block(ctx: ExampleContext, table: FeatureTable) -> None:
    """Consent at ``as_of``: the latest change at or before it (subscribed when none)."""
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
