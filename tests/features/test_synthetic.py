"""Tests for the synthetic CRM export: contract validity, determinism, atomic files, realism."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import features.synthetic as synthetic
from features.contract import LEADS, NO_CONTACT_CONSENT, NO_CONTACT_REASONS, TABLES_BY_NAME, Kind
from features.loading import build_export, load_export
from features.output import OutputWriteError
from features.synthetic import (
    CUSTOM_LEAD_COLUMNS,
    DEFAULT_END,
    generate_export,
    generate_tables,
    make_ids,
    write_export,
)

Tables = dict[str, pd.DataFrame]
END = pd.Timestamp(DEFAULT_END)
YEAR = pd.Timedelta(days=365)
FORMATS = ("parquet", "csv")


@pytest.fixture(scope="module")
def tables() -> Tables:
    """A few thousand leads: enough for rates to settle, small enough to stay fast."""
    return generate_tables(5000, seed=2024)


@pytest.fixture(scope="module")
def outcomes(tables: Tables) -> pd.DataFrame:
    """Each rejection with the delay (days) to the lead's next opportunity, NaN if none."""
    rejections, opportunities = tables["rejections"], tables["opportunities"]
    pairs = rejections[["rejection_id", "lead_id", "rejected_at"]].merge(
        opportunities[["lead_id", "created_at"]], on="lead_id"
    )
    later = pairs[pairs["created_at"] > pairs["rejected_at"]]
    comeback = later.groupby("rejection_id")["created_at"].min()
    frame = rejections.set_index("rejection_id")
    frame["comeback_at"] = comeback.reindex(frame.index)
    frame["delay"] = (frame["comeback_at"] - frame["rejected_at"]).dt.total_seconds() / 86_400
    frame["observed"] = frame["rejected_at"] <= END - YEAR
    frame["back_365"] = frame["delay"] <= 365
    return frame


def _timestamp_columns(name: str) -> list[str]:
    return [c.name for c in TABLES_BY_NAME[name].columns if c.kind is Kind.TIMESTAMP]


# Contract and shape -------------------------------------------------------------------


def test_tables_pass_the_contract_loader(tables: Tables) -> None:
    export = build_export(tables)

    assert export.warnings == []
    assert export.rejected_rows == []
    for name, frame in tables.items():
        assert len(export.tables[name]) == len(frame) > 0


def test_columns_are_the_contract_plus_custom_lead_columns(tables: Tables) -> None:
    for name, frame in tables.items():
        expected = list(TABLES_BY_NAME[name].column_names)
        if name == "leads":
            expected += list(CUSTOM_LEAD_COLUMNS)
        assert list(frame.columns) == expected
    leads = tables["leads"]
    assert leads["crm_custom_tech_stack"].nunique() >= 4
    assert pd.api.types.is_numeric_dtype(leads["crm_custom_web_sessions_12m"])


def test_timestamps_are_utc_and_follow_up_is_a_utc_midnight(tables: Tables) -> None:
    for name, frame in tables.items():
        for column in _timestamp_columns(name):
            assert str(frame[column].dtype) == "datetime64[us, UTC]", (name, column)
    follow_up = tables["rejections"]["follow_up_date"].dropna()
    assert str(follow_up.dtype) == "datetime64[us, UTC]"
    assert (follow_up == follow_up.dt.floor("D")).all()


def test_primary_and_foreign_keys_hold(tables: Tables) -> None:
    lead_ids = set(tables["leads"]["lead_id"])
    for name, frame in tables.items():
        key = TABLES_BY_NAME[name].primary_key
        if key is not None:
            assert frame[key].is_unique, name
        if name != "leads":
            assert set(frame["lead_id"]) <= lead_ids, name
    assert tables["leads"]["lead_id"].iloc[0] == "L0000001"


def test_personal_fields_are_obviously_fake(tables: Tables) -> None:
    leads = tables["leads"]
    assert leads["email"].str.endswith("@example.invalid").all()
    assert set(leads["first_name"]) <= {"Test", "Sample", "Demo", "Fake", "Placeholder"}
    assert leads["last_name"].str.fullmatch(r"Lead\d{7,}").all()


def test_messy_firmographics_need_cleaning(tables: Tables) -> None:
    leads = tables["leads"]
    assert leads["industry"].nunique() >= 40
    missing_level = leads["job_level"].isna().mean()
    assert 0.1 < missing_level < 0.4
    titled = leads["job_level"].isna() & leads["job_title"].notna()
    assert titled.sum() > 0.05 * len(leads)
    assert leads["country"].dropna().str.fullmatch(r"[A-Z]{2}").all()
    assert leads["account_id"].nunique() < 0.95 * len(leads)  # colleagues share accounts


# Determinism and files ------------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_other_seeds_differ() -> None:
    first, again, other = (generate_tables(800, s) for s in (5, 5, 6))

    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["leads"]["created_at"].equals(other["leads"]["created_at"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_seed_gives_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    one = generate_export(tmp_path / "one", 600, 3, fmt)  # type: ignore[arg-type]
    two = generate_export(tmp_path / "two", 600, 3, fmt)  # type: ignore[arg-type]

    for name in one:
        assert one[name].read_bytes() == two[name].read_bytes(), name


@pytest.mark.parametrize("fmt", FORMATS)
def test_written_export_round_trips_through_the_loader(tmp_path: Path, fmt: str) -> None:
    tables = generate_tables(1500, 9)
    paths = write_export(tables, tmp_path / "export", fmt)  # type: ignore[arg-type]

    loaded = load_export(tmp_path / "export")

    assert {p.name for p in paths.values()} == {f"{name}.{fmt}" for name in tables}
    assert loaded.warnings == []
    assert loaded.rejected_rows == []
    expected = build_export(tables)
    for name in tables:
        columns = list(TABLES_BY_NAME[name].column_names)
        pd.testing.assert_frame_equal(
            loaded.tables[name][columns], expected.tables[name][columns], check_dtype=False
        )


def test_csv_uses_iso_timestamps_with_offset(tmp_path: Path) -> None:
    write_export(generate_tables(300, 1), tmp_path / "csv", "csv")

    header, first = (tmp_path / "csv" / "rejections.csv").read_text("utf-8").splitlines()[:2]

    assert header.split(",")[2] == '"rejected_at"'
    assert pd.Series([first]).str.contains(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"').all()


def test_write_leaves_only_the_table_files(tmp_path: Path) -> None:
    generate_export(tmp_path / "export", 300, 1)

    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == sorted(
        f"{name}.parquet" for name in TABLES_BY_NAME
    )


def test_failed_write_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    real_write = synthetic._write_table

    def fail_on_third(name: str, frame: pd.DataFrame, path: Path, fmt: synthetic.Format) -> None:
        if len(written) == 2:
            raise OSError("disk full")
        written.append(name)
        real_write(name, frame, path, fmt)

    monkeypatch.setattr(synthetic, "_write_table", fail_on_third)

    with pytest.raises(OSError, match="disk full"):
        write_export(generate_tables(300, 1), tmp_path / "export", "parquet")
    assert list(tmp_path.iterdir()) == []


def test_rewriting_in_another_format_replaces_the_old_files(tmp_path: Path) -> None:
    generate_export(tmp_path / "export", 300, 1, "csv")
    generate_export(tmp_path / "export", 300, 2, "parquet")

    names = sorted(p.name for p in (tmp_path / "export").iterdir())

    assert names == sorted(f"{name}.parquet" for name in TABLES_BY_NAME)
    assert len(load_export(tmp_path / "export").leads) == 300
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_rewriting_an_existing_export_writes_nothing_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an export in a directory whose parent may be read-only (a mounted volume)
    out = tmp_path / "export"
    generate_export(out, 300, 1)
    parent_seen: list[list[str]] = []
    real_write = synthetic._write_table

    def watched(name: str, frame: pd.DataFrame, path: Path, fmt: synthetic.Format) -> None:
        parent_seen.append(sorted(p.name for p in tmp_path.iterdir()))
        assert path.parent == out
        real_write(name, frame, path, fmt)

    monkeypatch.setattr(synthetic, "_write_table", watched)
    # When it is written again
    write_export(generate_tables(300, 2), out, "csv")
    # Then every file was staged inside it, none beside it
    assert parent_seen == [["export"]] * len(TABLES_BY_NAME)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.csv" for t in TABLES_BY_NAME)


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_names_the_file_at_its_final_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    out = tmp_path / "export"
    if existing:
        generate_export(out, 300, 1)
    before = {p.name: p.read_bytes() for p in out.iterdir()} if existing else {}
    real_write = synthetic._write_table

    def full_disk_on_rejections(
        name: str, frame: pd.DataFrame, path: Path, fmt: synthetic.Format
    ) -> None:
        if name == "rejections":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(name, frame, path, fmt)

    monkeypatch.setattr(synthetic, "_write_table", full_disk_on_rejections)

    with pytest.raises(OutputWriteError) as caught:
        write_export(generate_tables(300, 2), out, "parquet")
    assert caught.value.path == out / "rejections.parquet"
    assert (
        str(caught.value)
        == f"could not write {out / 'rejections.parquet'}: No space left on device"
    )
    assert [p.name for p in tmp_path.iterdir()] == (["export"] if existing else [])
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_leads"):
        generate_tables(0, 1)
    with pytest.raises(ValueError, match="years"):
        generate_tables(10, 1, years=0)
    with pytest.raises(ValueError, match="fmt"):
        write_export({}, tmp_path / "x", "xlsx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contract tables"):
        write_export({"../leads": pd.DataFrame()}, tmp_path / "x", "csv")


@pytest.mark.parametrize("n_leads", [1, 3, 40])
def test_tiny_exports_still_satisfy_the_contract(n_leads: int) -> None:
    tables = generate_tables(n_leads, 0, years=0.5)

    export = build_export(tables)

    assert len(export.rejections) >= 1
    assert len(export.leads) == n_leads


@pytest.mark.parametrize("n_leads", [1, 2])
def test_one_and_two_lead_exports_load_cleanly_for_every_seed(n_leads: int) -> None:
    # Seeds 14 (one lead) and 73 (two) once blanked every account and crashed the generator.
    for seed in [*range(30), 14, 73]:
        tables = generate_tables(n_leads, seed)

        export = build_export(tables)

        assert (export.warnings, export.rejected_rows) == ([], []), seed
        assert len(export.rejections) >= 1, seed


def test_a_tiny_export_rejects_a_lead_after_its_deal_only_when_the_deal_was_lost() -> None:
    # One lead with a deal: a rejection after it is the opportunity stage of a lost deal,
    # never the mql rejection a tiny export is given (it once followed an open or won deal)
    after_a_deal = 0
    for seed in range(60):
        tables = generate_tables(1, seed)
        deals = tables["opportunities"]
        for rejection in tables["rejections"].itertuples():
            earlier = deals[deals["created_at"] < rejection.rejected_at]
            if earlier.empty:
                continue
            after_a_deal += 1
            assert rejection.stage_at_rejection == "opportunity", seed
            assert (earlier["status"] == "lost").all(), seed
            assert (earlier["closed_at"] <= rejection.rejected_at).all(), seed
    assert after_a_deal > 0


def test_no_deal_closes_after_the_last_event() -> None:
    # Seed 2 once closed a deal after every event, so each load warned and read it as open
    tables = generate_tables(2000, 2)

    export = build_export(tables)

    assert export.warnings == []
    assert tables["opportunities"]["closed_at"].max() <= export.snapshot_at


def test_ids_are_zero_padded_and_widen_when_needed() -> None:
    assert list(make_ids("A", 3)) == ["A0000001", "A0000002", "A0000003"]
    assert make_ids("R", 12)[-1] == "R0000012"
    assert len(make_ids("L", 0)) == 0


# Time -----------------------------------------------------------------------------------


def test_nothing_happens_after_the_end_or_before_the_span() -> None:
    end = datetime(2024, 3, 31, 12, 30, tzinfo=UTC)
    tables = generate_tables(1500, 4, end=end, years=2.5)
    stop, start = pd.Timestamp(end), pd.Timestamp(end) - pd.Timedelta(days=2.5 * 365.25)

    for name, frame in tables.items():
        for column in _timestamp_columns(name):
            values = frame[column].dropna()
            assert values.max() <= stop, (name, column)
            assert values.min() >= start, (name, column)
    # follow_up_date is a plan, not an event: it may lie after the end, never before rejection
    rejections = tables["rejections"].dropna(subset=["follow_up_date"])
    assert (rejections["follow_up_date"] >= rejections["rejected_at"].dt.floor("D")).all()


def test_events_respect_the_lead_lifecycle(tables: Tables) -> None:
    created = tables["leads"].set_index("lead_id")["created_at"]
    for name, column in (("activities", "occurred_at"), ("rejections", "rejected_at")):
        frame = tables[name]
        assert (frame[column].to_numpy() >= created.loc[frame["lead_id"]].to_numpy()).all()
    opportunities = tables["opportunities"]
    closed = opportunities.dropna(subset=["closed_at"])
    assert (closed["closed_at"] > closed["created_at"]).all()
    open_deals = opportunities[opportunities["status"] == "open"]
    assert open_deals["closed_at"].isna().all()
    assert (open_deals["created_at"] > END - pd.Timedelta(days=430)).all()
    lost = opportunities["status"] == "lost"
    assert opportunities.loc[lost, "loss_reason"].notna().all()
    assert opportunities.loc[~lost, "loss_reason"].isna().all()


def test_activity_volume_is_realistic(tables: Tables) -> None:
    per_lead = len(tables["activities"]) / len(tables["leads"])
    assert 15 <= per_lead <= 40
    types = tables["activities"]["activity_type"].value_counts(normalize=True)
    assert types.index[0] == "email_open"
    assert (types > 0).sum() >= 22


# Realism ------------------------------------------------------------------------------


def test_headline_rates_match_published_b2b_ranges(tables: Tables, outcomes: pd.DataFrame) -> None:
    rejected_share = tables["rejections"]["lead_id"].nunique() / len(tables["leads"])
    closed = tables["opportunities"].query("status != 'open'")
    win_rate = (closed["status"] == "won").mean()
    comeback_rate = outcomes.loc[outcomes["observed"], "back_365"].mean()

    assert 0.20 <= rejected_share <= 0.45
    assert 0.20 <= win_rate <= 0.30
    assert 0.08 <= comeback_rate <= 0.20


def test_data_is_not_only_failures(tables: Tables) -> None:
    leads = tables["leads"]["lead_id"]
    touched = set(tables["rejections"]["lead_id"]) | set(tables["opportunities"]["lead_id"])
    never_rejected = ~tables["opportunities"]["lead_id"].isin(tables["rejections"]["lead_id"])

    assert (~leads.isin(touched)).mean() > 0.2  # stayed marketing leads
    assert (tables["opportunities"].loc[never_rejected, "status"] == "won").sum() > 50
    assert tables["rejections"]["lead_id"].value_counts().max() >= 2  # rejected again


def test_rejection_reason_drives_the_comeback_rate(outcomes: pd.DataFrame) -> None:
    observed = outcomes[outcomes["observed"]]
    rate = observed.groupby("reason_code", observed=True)["back_365"].mean()

    assert min(rate["timing"], rate["budget"]) > 2 * rate["no_need"]
    assert rate["wrong_solution"] < rate["needs_nurturing"]
    never = outcomes["reason_code"].isin(NO_CONTACT_REASONS)
    assert outcomes.loc[never, "comeback_at"].isna().all()


def test_competitor_wins_come_back_around_the_renewal(outcomes: pd.DataFrame) -> None:
    delays = outcomes.loc[outcomes["reason_code"] == "competitor_won", "delay"].dropna()

    assert len(delays) >= 10
    assert delays.between(9 * 30.4, 15 * 30.4).mean() >= 0.7


def test_timing_comebacks_land_near_the_follow_up_date(outcomes: pd.DataFrame) -> None:
    timed = outcomes[(outcomes["reason_code"] == "timing") & outcomes["delay"].notna()]
    timed = timed.dropna(subset=["follow_up_date"])
    gap = (timed["comeback_at"] - timed["follow_up_date"]).abs().dt.days

    assert gap.median() < 45


def test_comebacks_are_preceded_by_buying_research(tables: Tables, outcomes: pd.DataFrame) -> None:
    signal = tables["activities"].query("activity_type in ('pricing_page_visit', 'demo_request')")
    back = outcomes[outcomes["delay"].notna() & outcomes["observed"]]
    quiet = outcomes[outcomes["comeback_at"].isna() & outcomes["observed"]]
    pseudo = quiet["rejected_at"] + pd.Timedelta(days=float(back["delay"].median()))

    returners = _events_in_window(signal, back["lead_id"], back["comeback_at"], 60)
    others = _events_in_window(signal, quiet["lead_id"], pseudo, 60)

    assert returners.mean() > 3 * others.mean()
    assert 0.02 < (others > 0).mean() < (returners > 0).mean()  # real but imperfect


def test_not_decision_maker_comebacks_meet_a_new_contact_first(
    tables: Tables, outcomes: pd.DataFrame
) -> None:
    meetings = tables["activities"].query("activity_type == 'meeting_decision_maker'")
    back = outcomes[(outcomes["reason_code"] == "not_decision_maker") & outcomes["delay"].notna()]

    met = _events_in_window(meetings, back["lead_id"], back["comeback_at"], 60)

    assert (met > 0).mean() > 0.5


def test_do_not_contact_comes_with_consent_and_silence(tables: Tables) -> None:
    rejections, consent = tables["rejections"], tables["consent"]
    asked = rejections[rejections["reason_code"] == "do_not_contact"]
    dnc = consent[consent["status"] == "do_not_contact"]
    matched = asked.merge(
        dnc, left_on=["lead_id", "rejected_at"], right_on=["lead_id", "changed_at"]
    )

    assert len(asked) > 0
    assert len(matched) == len(asked)
    assert set(consent["status"]) == {"subscribed", "unsubscribed", "do_not_contact"}


def test_no_email_reaches_a_lead_that_opted_out(tables: Tables) -> None:
    emails = tables["activities"].query("activity_type in ('email_open', 'email_click')")
    consent = tables["consent"].sort_values("changed_at")

    status = pd.merge_asof(
        emails.sort_values("occurred_at"),
        consent,
        left_on="occurred_at",
        right_on="changed_at",
        by="lead_id",
        allow_exact_matches=False,
    )["status"]

    assert not status.isin(NO_CONTACT_CONSENT).any()
    resubscribed = consent.groupby("lead_id")["status"].agg(lambda s: "".join(s.str[0]))
    assert resubscribed.str.contains("us").any()  # some leads opt back in


def test_do_not_contact_is_final_in_the_history() -> None:
    # Given a history large enough to hold leads that unsubscribe after asking for no contact
    tables = generate_tables(20_000, 0)
    consent, rejections = tables["consent"], tables["rejections"]
    asked = consent[consent["status"] == "do_not_contact"].groupby("lead_id")["changed_at"].min()
    # Then no lead subscribes again after it, and sales rejects no lead after it
    later = consent.assign(asked=consent["lead_id"].map(asked)).query("changed_at > asked")
    assert not (later["status"] == "subscribed").any()
    rejected = rejections.assign(asked=rejections["lead_id"].map(asked))
    assert not (rejected["rejected_at"] > rejected["asked"]).any()
    assert len(asked) > 50


def test_opportunity_stage_rejections_close_a_lost_deal(tables: Tables) -> None:
    rejections = tables["rejections"].query("stage_at_rejection == 'opportunity'")
    lost = tables["opportunities"].query("status == 'lost'")
    pairs = rejections.merge(lost, on="lead_id")
    gap = (pairs["rejected_at"] - pairs["closed_at"]).dt.total_seconds() / 86_400
    near = pairs[gap.between(-0.01, 4) & (pairs["created_at"] < pairs["rejected_at"])]

    assert set(near["rejection_id"]) == set(rejections["rejection_id"])


def test_rep_fields_carry_signal(outcomes: pd.DataFrame) -> None:
    observed = outcomes[outcomes["observed"]]
    by_potential = observed.groupby("rep_potential", observed=True)["back_365"].mean()

    assert by_potential["high"] > by_potential["low"] > by_potential["none"]
    assert outcomes["rep_id"].nunique() == 50
    assert (
        outcomes["follow_up_date"]
        .notna()
        .groupby(outcomes["reason_code"], observed=True)
        .mean()["timing"]
        > 0.7
    )


def _events_in_window(
    events: pd.DataFrame, lead_ids: pd.Series, moments: pd.Series, days: int
) -> pd.Series:
    """How many of ``events`` each (lead, moment) pair has in the ``days`` before the moment."""
    anchors = pd.DataFrame(
        {
            "row": np.arange(len(lead_ids)),
            "lead_id": lead_ids.to_numpy(),
            "moment": moments.array,
        }
    )
    pairs = anchors.merge(events[["lead_id", "occurred_at"]], on="lead_id")
    inside = (pairs["occurred_at"] <= pairs["moment"]) & (
        pairs["occurred_at"] > pairs["moment"] - pd.Timedelta(days=days)
    )
    counts = pairs[inside].groupby("row").size()
    return counts.reindex(anchors["row"], fill_value=0)


def test_leads_table_keeps_custom_columns_through_the_loader(tables: Tables) -> None:
    leads = build_export(tables).leads

    assert set(CUSTOM_LEAD_COLUMNS) <= set(leads.columns)
    assert set(LEADS.column_names) <= set(leads.columns)


def test_tables_indexed_by_a_contract_vocabulary_have_one_entry_per_value() -> None:
    # The simulator's rate tables are indexed by the contract's vocabularies' positions: a
    # value added to or moved in the contract must fail here, not misalign silently
    from features import synthetic_journey as journey
    from features import synthetic_population as population
    from features.contract import (
        BARRIER_SIDES,
        JOB_LEVELS,
        LEAD_SOURCES,
        PRODUCT_FITS,
        REASON_CODES,
        STAGES,
    )
    from features.synthetic_deals import LOSS_REASONS

    reasons = len(REASON_CODES)
    by_reason = ("COMEBACK_TARGET", "FOLLOW_UP_SHARE", "PROGRAM_BY_REASON", "LOSS_BY_REASON")
    assert {name: len(getattr(journey, name)) for name in by_reason} == dict.fromkeys(
        by_reason, reasons
    )
    assert journey.STAGE_REASON_WEIGHTS.shape == (len(STAGES), reasons)
    assert len(journey.STAGE_WEIGHTS) == len(journey.STAGE_EFFECT) == len(STAGES)
    assert journey.BARRIER_WEIGHTS.shape[0] == reasons
    assert journey.BARRIER_WEIGHTS.shape[1] == len(journey.BARRIER_EFFECT)
    assert len(journey.BARRIER_EFFECT) == len(BARRIER_SIDES)
    assert len(journey.DETAILS) == reasons
    assert max(journey.PROGRAM_BY_REASON) < len(journey.PROGRAMS)
    assert max(journey.LOSS_BY_REASON) < len(LOSS_REASONS)
    assert len(population.SOURCE_WEIGHTS) == len(population.SOURCE_FIT) == len(LEAD_SOURCES)
    assert len(population.LEVEL_WEIGHTS) == len(population.LEVEL_FIT) == len(JOB_LEVELS)
    assert len(population.PRODUCT_FIT_FIT) == len(PRODUCT_FITS)
