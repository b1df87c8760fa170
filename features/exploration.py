"""What a rejected-lead history looks like: volumes, reasons, comebacks, engagement, consent.

The computations behind ``notebooks/01_rejected_lead_history.ipynb``. Each function takes a
loaded ``Export`` (or the per-rejection outcome table built from it) and returns a tidy
DataFrame ready to plot; nothing here draws.

A rejection's comeback is the first opportunity for its lead created strictly after the
rejection, the same event the labels count. Comebacks are observed only up to the export's
snapshot: a rejection made two months before the snapshot that has not come back yet may
still come back, so its time is censored, not a "no". Re-conversion curves therefore use
the Kaplan-Meier estimator (cumulative incidence ``1 - S(t)``), never the raw share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.contract import CONSENT_STATUSES, MARKETING_ACTIVITIES, NO_CONTACT_CONSENT
from features.loading import Export

DAY = pd.Timedelta(days=1)
MISSING_LABEL = "(missing)"
CAME_BACK = "came back"
DID_NOT_COME_BACK = "did not come back"
OUTCOME_COLUMNS = (
    "rejection_id",
    "lead_id",
    "rejected_at",
    "reason_code",
    "stage_at_rejection",
    "rep",
    "lead_age_days",
    "days_to_reconversion",
    "days_observed",
    "reconverted",
    "duration_days",
    "outcome_observed",
    "reconverted_within_horizon",
)


def monthly_volumes(export: Export, period: str = "M") -> pd.DataFrame:
    """Leads created, rejections, opportunities created and opportunities won per period.

    Args:
        export: the loaded export.
        period: a pandas period alias (``M`` months, ``Q`` quarters, ``W`` weeks).

    Returns:
        One row per period from the first to the last event (gaps as 0), indexed by the
        period's start, with columns ``leads``, ``rejections``, ``opportunities``, ``won``.
    """
    opportunities = export.opportunities
    won = opportunities.loc[opportunities["status"] == "won", "closed_at"].dropna()
    counts = {
        "leads": _per_period(export.leads["created_at"], period),
        "rejections": _per_period(export.rejections["rejected_at"], period),
        "opportunities": _per_period(opportunities["created_at"], period),
        "won": _per_period(won, period),
    }
    frame = pd.DataFrame(counts)
    periods = pd.period_range(frame.index.min(), frame.index.max(), freq=period)
    frame = frame.reindex(periods, fill_value=0).fillna(0).astype(int)
    frame.index = frame.index.to_timestamp()
    frame.index.name = "period"
    return frame


def _per_period(times: pd.Series, period: str) -> pd.Series:
    naive = pd.to_datetime(times, utc=True).dt.tz_localize(None)
    return naive.dt.to_period(period).value_counts().sort_index()


def rejection_outcomes(export: Export, horizon_days: int = 365) -> pd.DataFrame:
    """One row per rejection with its comeback time, censoring and outcome at the horizon.

    Columns: the rejection's ``rejection_id``, ``lead_id``, ``rejected_at``, ``reason_code``,
    ``stage_at_rejection`` and ``rep``, a pseudonym of the rep (``rep 1``, ``rep 2``, ... in
    the order of the ids; missing as ``(missing)``): a CRM owner id is often an e-mail
    address or a name, which no chart or table may show; ``lead_age_days`` at
    the rejection; ``days_to_reconversion`` (first opportunity created after the rejection,
    NaN when none by the snapshot); ``days_observed`` (rejection to snapshot);
    ``reconverted`` (a comeback was seen) and ``duration_days`` (time to the comeback, or
    to the snapshot when censored) for survival curves; ``outcome_observed`` (the whole
    horizon lies before the snapshot, as in the labels) and ``reconverted_within_horizon``
    (NaN when not observed).
    """
    rejections = _rejection_frame(export)
    opportunities = export.opportunities
    comeback = _next_event_after(rejections, opportunities["lead_id"], opportunities["created_at"])
    days = (comeback - rejections["rejected_at"]) / DAY
    observed = (export.snapshot_at - rejections["rejected_at"]) / DAY
    frame = rejections.assign(
        days_to_reconversion=days.to_numpy(dtype=np.float64),
        days_observed=observed.to_numpy(dtype=np.float64),
    )
    frame["reconverted"] = frame["days_to_reconversion"].notna()
    frame["duration_days"] = frame["days_to_reconversion"].fillna(frame["days_observed"])
    frame["outcome_observed"] = frame["days_observed"] >= horizon_days
    within = (frame["days_to_reconversion"] <= horizon_days).astype(np.float64)
    frame["reconverted_within_horizon"] = within.where(frame["outcome_observed"])
    return frame.loc[:, list(OUTCOME_COLUMNS)]


def _rejection_frame(export: Export) -> pd.DataFrame:
    columns = ["rejection_id", "lead_id", "rejected_at", "reason_code", "stage_at_rejection"]
    frame = export.rejections.loc[:, columns].copy()
    frame["rep"] = rep_pseudonyms(
        export.rejections.get("rep_id", pd.Series(pd.NA, index=frame.index))
    )
    for column in ("lead_id", "rejection_id"):
        frame[column] = frame[column].astype(object)
    created = export.leads.set_index(export.leads["lead_id"].astype(object))["created_at"]
    frame["lead_age_days"] = (frame["rejected_at"] - frame["lead_id"].map(created)) / DAY
    return frame.reset_index(drop=True)


def rep_pseudonyms(rep_ids: pd.Series) -> pd.Series:
    """``rep 1``, ``rep 2``, ... for each rep id, numbered in the order of the distinct ids
    (the same export always gives the same names); missing ids as ``(missing)``."""
    present = rep_ids.dropna().astype(str)
    numbers = {rep_id: n for n, rep_id in enumerate(sorted(present.unique()), start=1)}
    names = present.map(lambda rep_id: f"rep {numbers[rep_id]}")
    return names.reindex(rep_ids.index).astype(object).fillna(MISSING_LABEL)


def _next_event_after(
    rejections: pd.DataFrame,
    event_lead: pd.Series,
    event_time: pd.Series,
    within: pd.Timedelta | None = None,
) -> pd.Series:
    """For each rejection (``lead_id``, ``rejected_at``), the time of the lead's first event
    strictly after it, and at most ``within`` after it when given (NaT if none); in the
    rejections' order."""
    left = rejections[["lead_id", "rejected_at"]].assign(_row=np.arange(len(rejections)))
    right = pd.DataFrame({"lead_id": event_lead.astype(object), "event_at": event_time})
    merged = pd.merge_asof(
        left.sort_values("rejected_at"),
        right.sort_values("event_at"),
        left_on="rejected_at",
        right_on="event_at",
        by="lead_id",
        direction="forward",
        allow_exact_matches=False,
        tolerance=within,
    )
    return merged.set_index("_row")["event_at"].sort_index().reset_index(drop=True)


def rejection_counts(outcomes: pd.DataFrame, by: str, top: int | None = None) -> pd.DataFrame:
    """Rejections per value of a column (reason, stage, rep, ...) and how often they came back.

    Args:
        outcomes: the table from ``rejection_outcomes``.
        by: the column to group by.
        top: keep only the ``top`` largest groups.

    Returns:
        Indexed by the column's values, largest first: ``rejections``, ``share`` of all
        rejections, ``observed`` (outcome known at the horizon), ``reconverted`` among them
        and ``reconversion_rate`` (NaN when none is observed).
    """
    keys = outcomes[by].astype(object).where(outcomes[by].notna(), MISSING_LABEL)
    grouped = outcomes.groupby(keys, observed=True, sort=False)
    table = pd.DataFrame(
        {
            "rejections": grouped.size(),
            "observed": grouped["outcome_observed"].sum().astype(int),
            "reconverted": grouped["reconverted_within_horizon"].sum().astype(int),
        }
    )
    table["share"] = table["rejections"] / len(outcomes)
    table["reconversion_rate"] = table["reconverted"] / table["observed"].replace(0, np.nan)
    table = table.sort_values("rejections", ascending=False, kind="stable")
    table.index.name = by
    return table.head(top) if top is not None else table


def rejection_crosstab(outcomes: pd.DataFrame, rows: str, columns: str) -> pd.DataFrame:
    """Rejections counted by two columns (for example reason by stage), zeros where none."""
    table = pd.crosstab(outcomes[rows].astype(object), outcomes[columns].astype(object))
    order = table.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return table.loc[order]


def reconversion_curves(
    outcomes: pd.DataFrame,
    by: str | None = "reason_code",
    days: Sequence[float] | None = None,
    min_rejections: int = 20,
) -> pd.DataFrame:
    """Cumulative incidence of re-conversion after rejection, by group, censoring handled.

    The Kaplan-Meier estimate of the share of rejections that have come back within ``t``
    days (``1 - S(t)``); rejections not yet back at the snapshot are censored at the time
    they have been observed, never counted as "never".

    Args:
        outcomes: the table from ``rejection_outcomes``.
        by: the column to split by; None for one curve over all rejections (``all``).
        days: the days at which to read the curves (default: every 7 days to two years).
        min_rejections: skip groups with fewer rejections (their curves are noise).

    Returns:
        Long form: ``group``, ``days``, ``incidence``, ``lower`` and ``upper`` (95%
        pointwise confidence band), ``at_risk`` (rejections still observed and not back).
    """
    timeline = np.asarray(days if days is not None else np.arange(0, 731, 7), dtype=np.float64)
    keys = pd.Series("all", index=outcomes.index) if by is None else outcomes[by].astype(object)
    parts = [
        _incidence(part, timeline).assign(group=group)
        for group, part in outcomes.groupby(keys, sort=True)
        if len(part) >= min_rejections
    ]
    columns = ["group", "days", "incidence", "lower", "upper", "at_risk"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).loc[:, columns]


def _incidence(outcomes: pd.DataFrame, timeline: np.ndarray) -> pd.DataFrame:
    from lifelines import KaplanMeierFitter

    durations = outcomes["duration_days"].to_numpy(dtype=np.float64)
    fitter = KaplanMeierFitter().fit(
        durations, outcomes["reconverted"].to_numpy(dtype=bool), timeline=timeline
    )
    survival = fitter.survival_function_.iloc[:, 0].to_numpy()
    band = fitter.confidence_interval_survival_function_
    return pd.DataFrame(
        {
            "days": timeline,
            "incidence": 1.0 - survival,
            "lower": 1.0 - band.iloc[:, 1].to_numpy(),
            "upper": 1.0 - band.iloc[:, 0].to_numpy(),
            "at_risk": len(durations) - np.searchsorted(np.sort(durations), timeline, "left"),
        }
    )


def incidence_table(
    outcomes: pd.DataFrame,
    by: str | None = "reason_code",
    days: Sequence[float] = (90, 180, 365),
    min_rejections: int = 20,
) -> pd.DataFrame:
    """Kaplan-Meier comeback rates at a few horizons beside the naive share, per group.

    The naive share counts every rejection not back yet as a "no", which understates the
    comeback rate wherever recent rejections are censored; the difference shows how much.

    Returns:
        Indexed by group: ``rejections``, then ``km_<d>d`` and ``naive_<d>d`` per day count.
    """
    curves = reconversion_curves(outcomes, by, days, min_rejections)
    table = curves.pivot(index="group", columns="days", values="incidence")
    table.columns = [f"km_{int(d)}d" for d in table.columns]
    keys = pd.Series("all", index=outcomes.index) if by is None else outcomes[by].astype(object)
    grouped = outcomes.groupby(keys)
    for day in days:
        hit = outcomes["days_to_reconversion"] <= day
        table[f"naive_{int(day)}d"] = hit.groupby(keys).mean()
    table.insert(0, "rejections", grouped.size())
    table.index.name = by or "group"
    return table.sort_values("rejections", ascending=False, kind="stable")


def engagement_around_rejection(
    export: Export,
    outcomes: pd.DataFrame,
    activity_types: Sequence[str] = MARKETING_ACTIVITIES,
    before_days: int = 180,
    after_days: int = 360,
    bin_days: int = 30,
    min_rejections: int = 1,
) -> pd.DataFrame:
    """Activities per rejection in time bins around the rejection, comebacks versus the rest.

    Only rejections whose outcome at the horizon is observed take part, split into those
    that came back within the horizon and those that did not. A rejection counts in a bin
    only while it is watched: its lead existed at the bin's start, and the bin ends before
    the snapshot and before the lead's comeback (so the sales activity of a reopened deal
    never inflates "engagement before the comeback").

    Args:
        export: the loaded export.
        outcomes: the table from ``rejection_outcomes`` of the same export.
        activity_types: which activities count (default: marketing engagement).
        before_days: how far before the rejection to look.
        after_days: how far after the rejection to look.
        bin_days: width of each bin.
        min_rejections: leave out bins with fewer watched rejections (noise).

    Returns:
        Long form: ``group`` (``came back`` / ``did not come back``), ``days_from``
        (bin start, days relative to the rejection), ``activities_per_rejection`` and
        ``rejections`` watched in the bin.
    """
    watched = outcomes.loc[outcomes["outcome_observed"]].reset_index(drop=True)
    starts = np.arange(-before_days, after_days, bin_days, dtype=np.float64)
    visible = _watched_bins(watched, starts, bin_days)
    counts = _activity_bin_counts(export, watched, activity_types, starts, bin_days, visible)
    group = np.where(watched["reconverted_within_horizon"] == 1, CAME_BACK, DID_NOT_COME_BACK)
    rows = []
    for name in (CAME_BACK, DID_NOT_COME_BACK):
        members = group == name
        denominator = visible[members].sum(axis=0)
        numerator = counts[members].sum(axis=0)
        for start, den, num in zip(starts, denominator, numerator, strict=True):
            if den >= max(min_rejections, 1):
                rows.append((name, start, num / den, int(den)))
    columns = ["group", "days_from", "activities_per_rejection", "rejections"]
    return pd.DataFrame(rows, columns=columns)


def _watched_bins(watched: pd.DataFrame, starts: np.ndarray, bin_days: int) -> np.ndarray:
    """rejections x bins: whether each rejection is watched for the whole bin."""
    ends = starts + bin_days
    comeback = watched["days_to_reconversion"].fillna(np.inf).to_numpy()
    limit = np.minimum(comeback, watched["days_observed"].to_numpy())
    lead_age = watched["lead_age_days"].to_numpy()
    return (starts[None, :] >= -lead_age[:, None]) & (ends[None, :] <= limit[:, None])


def _activity_bin_counts(
    export: Export,
    watched: pd.DataFrame,
    activity_types: Sequence[str],
    starts: np.ndarray,
    bin_days: int,
    visible: np.ndarray,
) -> np.ndarray:
    """rejections x bins: activities of the chosen types in each watched bin."""
    activities = export.activities
    chosen = activities.loc[activities["activity_type"].isin(list(activity_types))]
    events = pd.DataFrame(
        {"lead_id": chosen["lead_id"].astype(object), "occurred_at": chosen["occurred_at"]}
    )
    pairs = watched[["lead_id", "rejected_at"]].assign(_row=np.arange(len(watched)))
    joined = pairs.merge(events, on="lead_id", how="inner")
    relative = ((joined["occurred_at"] - joined["rejected_at"]) / DAY).to_numpy(dtype=np.float64)
    position = np.floor((relative - starts[0]) / bin_days).astype(np.int64)
    inside = (position >= 0) & (position < len(starts))
    rows, position = joined["_row"].to_numpy()[inside], position[inside]
    counts = np.zeros(visible.shape, dtype=np.float64)
    np.add.at(counts, (rows, position), 1.0)
    return np.where(visible, counts, 0.0)


def consent_changes(export: Export, period: str = "M") -> pd.DataFrame:
    """Consent changes per period and new status (subscribed, unsubscribed, do_not_contact).

    Returns:
        Indexed by the period's start, one column per status (0 where none); empty when
        the export has no consent table.
    """
    consent = export.consent
    if consent.empty:
        return pd.DataFrame(columns=list(CONSENT_STATUSES))
    naive = pd.to_datetime(consent["changed_at"], utc=True).dt.tz_localize(None)
    when = naive.dt.to_period(period)
    table = pd.crosstab(when, consent["status"].astype(object))
    periods = pd.period_range(when.min(), when.max(), freq=period)
    table = table.reindex(index=periods, columns=list(CONSENT_STATUSES), fill_value=0)
    table.index = table.index.to_timestamp()
    table.index.name = "period"
    return table


def opt_outs_after_rejection(
    export: Export, outcomes: pd.DataFrame, within_days: int = 365, by: str = "reason_code"
) -> pd.DataFrame:
    """How often rejected leads opt out of contact soon after the rejection, per group.

    An opt-out is a consent change to ``unsubscribed`` or ``do_not_contact`` strictly
    after the rejection and within ``within_days``. Only rejections watched for the whole
    ``within_days`` before the snapshot count.

    Returns:
        Indexed by group: ``rejections`` watched, ``opted_out`` and ``opt_out_rate``.
    """
    watched = outcomes.loc[outcomes["days_observed"] >= within_days].reset_index(drop=True)
    consent = export.consent
    opt_outs = consent.loc[consent["status"].isin(sorted(NO_CONTACT_CONSENT))]
    opted_out_at = _next_event_after(
        watched, opt_outs["lead_id"], opt_outs["changed_at"], pd.Timedelta(days=within_days)
    )
    opted = opted_out_at.notna().to_numpy()
    grouped = pd.Series(opted, index=watched.index).groupby(watched[by].astype(object))
    table = pd.DataFrame({"rejections": grouped.size(), "opted_out": grouped.sum().astype(int)})
    table["opt_out_rate"] = table["opted_out"] / table["rejections"]
    table.index.name = by
    return table.sort_values("rejections", ascending=False, kind="stable")
