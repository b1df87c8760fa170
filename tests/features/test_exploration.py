"""The rejected-lead history in numbers: volumes, outcomes, Kaplan-Meier curves, engagement.

The tiny hand-written export (tests/features/conftest.py) has known answers: L1 is rejected
on 2024-04-01 for budget (R1) and comes back 122 days later (O1), rejected again on
2025-05-01 (R3, the snapshot: censored at once); L2 is rejected for timing (R2) and
unsubscribes 30 days later.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import exploration
from features.loading import Export, load_export
from features.summary import summarise_export


@pytest.fixture
def tiny(tiny_export_dir: Path) -> Export:
    """The tiny export, loaded."""
    return load_export(tiny_export_dir)


@pytest.fixture
def tiny_outcomes(tiny: Export) -> pd.DataFrame:
    """Its per-rejection outcome table."""
    return exploration.rejection_outcomes(tiny).set_index("rejection_id")


def test_monthly_volumes_count_every_row_once_with_gaps_as_zero(tiny: Export) -> None:
    volumes = exploration.monthly_volumes(tiny)

    assert volumes.sum().to_dict() == {"leads": 2, "rejections": 3, "opportunities": 1, "won": 0}
    assert volumes.index[0] == pd.Timestamp("2024-01-01")
    assert volumes.index[-1] == pd.Timestamp("2025-05-01")
    assert len(volumes) == 17
    assert volumes.loc["2024-04-01", "rejections"] == 2


def test_outcomes_time_the_first_opportunity_after_each_rejection(
    tiny_outcomes: pd.DataFrame,
) -> None:
    r1, r2, r3 = (tiny_outcomes.loc[r] for r in ("R1", "R2", "R3"))

    assert (r1["days_to_reconversion"], r1["reconverted"], r1["duration_days"]) == (122, True, 122)
    assert r1["reconverted_within_horizon"] == 1.0
    assert np.isnan(r2["days_to_reconversion"])
    assert (r2["duration_days"], r2["reconverted_within_horizon"]) == (395, 0.0)
    assert (r3["duration_days"], r3["outcome_observed"]) == (0, False)
    assert np.isnan(r3["reconverted_within_horizon"])
    assert r2["rep"] == exploration.MISSING_LABEL
    assert r1["lead_age_days"] == 91


def test_outcome_counts_agree_with_the_validate_summary(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)
    summary = summarise_export(small_export)

    assert int(outcomes["outcome_observed"].sum()) == summary["observed_rejections"]
    assert outcomes["reconverted_within_horizon"].mean() == pytest.approx(
        summary["reconversion_rate_observed"], abs=1e-12
    )


def test_rejection_counts_share_and_rate_ignore_censored_rejections(
    tiny_outcomes: pd.DataFrame,
) -> None:
    table = exploration.rejection_counts(tiny_outcomes.reset_index(), "reason_code")

    assert list(table.index) == ["timing", "budget"]
    assert table.loc["timing"].to_dict() == pytest.approx(
        {"rejections": 2, "observed": 1, "reconverted": 0, "share": 2 / 3, "reconversion_rate": 0}
    )
    assert table.loc["budget", "reconversion_rate"] == 1.0


def test_rejection_counts_keep_the_largest_groups(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)

    table = exploration.rejection_counts(outcomes, "rep", top=5)

    assert len(table) == 5
    assert table["rejections"].is_monotonic_decreasing
    assert table["rejections"].iloc[0] == outcomes["rep"].value_counts().iloc[0]


def test_crosstab_counts_every_rejection(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)

    table = exploration.rejection_crosstab(outcomes, "reason_code", "stage_at_rejection")

    assert table.to_numpy().sum() == len(outcomes)
    assert set(table.columns) <= {"mql", "sal", "sql", "opportunity"}


def test_kaplan_meier_does_not_count_censored_rejections_as_never(
    tiny_outcomes: pd.DataFrame,
) -> None:
    # R3 is censored at day 0, so of the two rejections watched past day 122, one came back.
    curves = exploration.reconversion_curves(
        tiny_outcomes.reset_index(), by=None, days=[0, 121, 122, 365], min_rejections=1
    )

    assert curves["incidence"].tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5])
    assert curves["at_risk"].tolist() == [3, 2, 2, 1]
    naive = tiny_outcomes["reconverted"].mean()
    assert naive == pytest.approx(1 / 3)


def test_kaplan_meier_equals_the_naive_share_when_nothing_is_censored(
    tiny_export_dir: Path,
) -> None:
    # The export's end a year after its data (load_export refuses such a snapshot): every
    # horizon is then seen
    export = replace(load_export(tiny_export_dir), snapshot_at=pd.Timestamp("2026-06-01", tz="UTC"))
    outcomes = exploration.rejection_outcomes(export)

    table = exploration.incidence_table(outcomes, by=None, days=(90, 365), min_rejections=1)

    assert table.loc["all", "km_365d"] == pytest.approx(table.loc["all", "naive_365d"])
    assert table.loc["all", "km_365d"] == pytest.approx(1 / 3)


def test_curves_rise_inside_their_band_and_skip_small_groups(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)

    curves = exploration.reconversion_curves(outcomes, "reason_code", min_rejections=50)

    assert set(curves["group"]) == {
        r for r, n in outcomes["reason_code"].value_counts().items() if n >= 50
    }
    for _, curve in curves.groupby("group"):
        assert np.all(np.diff(curve["incidence"]) >= 0)
        assert np.all(np.diff(curve["at_risk"]) <= 0)
    assert np.all(curves["lower"] <= curves["incidence"] + 1e-12)
    assert np.all(curves["incidence"] <= curves["upper"] + 1e-12)


def test_censoring_makes_the_naive_share_understate_comebacks(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)

    table = exploration.incidence_table(outcomes, by=None, days=(365,))

    assert table.loc["all", "rejections"] == len(outcomes)
    assert table.loc["all", "km_365d"] > table.loc["all", "naive_365d"]


def test_engagement_is_counted_per_watched_rejection_and_bin(
    tiny: Export, tiny_outcomes: pd.DataFrame
) -> None:
    frame = exploration.engagement_around_rejection(
        tiny, tiny_outcomes.reset_index(), before_days=90, after_days=180, bin_days=30
    )

    came_back = frame[frame["group"] == exploration.CAME_BACK].set_index("days_from")
    # R1: lead 91 days old, two visits 60 and 31 days before, one 75 days after, back at 122.
    assert came_back["activities_per_rejection"].to_dict() == {
        -90: 0,
        -60: 2,
        -30: 0,
        0: 0,
        30: 0,
        60: 1,
        90: 0,
    }
    assert set(came_back["rejections"]) == {1}
    rest = frame[frame["group"] == exploration.DID_NOT_COME_BACK].set_index("days_from")
    # R2: lead 60 days old, no marketing activity (its only event is an unknown type).
    assert list(rest.index) == [-60, -30, 0, 30, 60, 90, 120, 150]
    assert rest["activities_per_rejection"].sum() == 0


def test_engagement_counts_match_the_activity_table(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)

    frame = exploration.engagement_around_rejection(
        small_export,
        outcomes,
        activity_types=("pricing_page_visit",),
        before_days=30,
        after_days=30,
        bin_days=30,
    )

    # every rejection watched in the month before it: those whose lead is at least 30 days old
    watched = outcomes[outcomes["outcome_observed"] & (outcomes["lead_age_days"] >= 30)]
    before = frame[frame["days_from"] == -30]
    assert before["rejections"].sum() == len(watched)
    visits = small_export.activities[
        small_export.activities["activity_type"] == "pricing_page_visit"
    ]
    joined = watched.merge(visits.assign(lead_id=visits["lead_id"].astype(object)), on="lead_id")
    delta = (joined["occurred_at"] - joined["rejected_at"]) / pd.Timedelta(days=1)
    expected = int(((delta >= -30) & (delta < 0)).sum())
    assert (before["activities_per_rejection"] * before["rejections"]).sum() == pytest.approx(
        expected
    )


def test_consent_changes_per_month_and_status(tiny: Export, small_export: Export) -> None:
    tiny_changes = exploration.consent_changes(tiny)
    changes = exploration.consent_changes(small_export)

    assert tiny_changes.loc["2024-05-01"].to_dict() == {
        "subscribed": 0,
        "unsubscribed": 1,
        "do_not_contact": 0,
    }
    assert changes.to_numpy().sum() == len(small_export.consent)
    assert list(changes.columns) == ["subscribed", "unsubscribed", "do_not_contact"]


def test_opt_outs_after_rejection_within_the_window(
    tiny: Export, tiny_outcomes: pd.DataFrame
) -> None:
    table = exploration.opt_outs_after_rejection(tiny, tiny_outcomes.reset_index(), 365)
    short = exploration.opt_outs_after_rejection(tiny, tiny_outcomes.reset_index(), 29)

    assert table.loc["timing"].to_dict() == {"rejections": 1, "opted_out": 1, "opt_out_rate": 1.0}
    assert table.loc["budget", "opted_out"] == 0
    assert short.loc["timing", "opted_out"] == 0


def test_engagement_leaves_out_thinly_watched_bins(small_export: Export) -> None:
    outcomes = exploration.rejection_outcomes(small_export)

    every = exploration.engagement_around_rejection(small_export, outcomes)
    thick = exploration.engagement_around_rejection(small_export, outcomes, min_rejections=50)

    assert thick["rejections"].min() >= 50
    assert len(thick) == int((every["rejections"] >= 50).sum())


def test_reps_are_shown_by_pseudonym_never_by_their_id() -> None:
    # Given rep ids as CRM owner fields often hold them: an e-mail address, a name
    ids = pd.Series(["jane.doe@acme-corp.com", "REP-7", None, "Jane Doe", "REP-7"])

    names = exploration.rep_pseudonyms(ids)

    # Then each distinct id has one stable pseudonym and no id is shown
    assert list(names) == ["rep 3", "rep 2", exploration.MISSING_LABEL, "rep 1", "rep 2"]
    assert not set(names) & set(ids.dropna())
