"""The export's end: mistyped dates after it are refused, stale outcome tables named."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig
from features.dataset import build_training_set
from features.export_end import (
    DAY,
    DAY_US,
    MICROSECOND,
    PACE_PERIOD,
    QUIET_EXPECTED_EVENTS,
    QUIET_SPELL,
    STRAY_SHARE,
    EventDays,
    stray_cut,
)
from features.loading import build_export, load_export
from features.problems import ContractError
from features.summary import format_summary, summarise_export
from features.synthetic import generate_tables, write_export

END = datetime(2025, 6, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """A 2,000-lead export ending 2025-06-30."""
    return generate_tables(2000, seed=4, end=END)


def _with_rows_dated(
    tables: dict[str, pd.DataFrame], table: str, when: str, count: int = 1
) -> dict[str, pd.DataFrame]:
    """``tables`` with copies of ``table``'s last ``count`` rows, new keys, dated ``when``."""
    frame = tables[table]
    rows = frame.iloc[-count:].copy()
    key = frame.columns[0]
    rows[key] = [f"{table}-late-{i}" for i in range(count)]
    rows[EVENT_COLUMNS[table]] = pd.Timestamp(when)
    return {**tables, table: pd.concat([frame, rows], ignore_index=True)}


EVENT_COLUMNS = {"activities": "occurred_at", "opportunities": "created_at"}
OUTCOME_COLUMNS = (("rejections", "rejected_at"), ("opportunities", "created_at"))


def test_a_row_dated_a_year_after_the_rest_is_refused_naming_it(
    tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    # Given a CSV export with one activity whose year was typed one too high (still in the past)
    typo = _with_rows_dated(tables, "activities", "2026-06-20T10:00:00Z")
    write_export(typo, tmp_path / "export", "csv")

    # Then loading it names the file, the column, the row and why, not the snapshot it set
    with pytest.raises(ContractError) as caught:
        load_export(tmp_path / "export")
    (problem,) = caught.value.problems
    assert problem.file.endswith("activities.csv")
    assert (problem.column, problem.row) == ("occurred_at", len(typo["activities"]))
    assert "with no event of any table, after the export's last regular event (2025-06-29)" in (
        problem.message
    )
    assert "--snapshot-at" in problem.message


def test_with_the_real_end_given_the_examples_are_those_of_the_export_without_it(
    tables: dict[str, pd.DataFrame],
) -> None:
    clean = build_export(tables)
    typo = _with_rows_dated(tables, "activities", "2026-06-20T10:00:00Z")

    chosen = build_export(typo, snapshot_at=clean.snapshot_at)

    config = FeatureConfig()
    expected, got = (build_training_set(e, config) for e in (clean, chosen))
    pd.testing.assert_frame_equal(got.keys, expected.keys)
    assert expected.labels is not None
    assert got.labels is not None
    np.testing.assert_array_equal(got.labels.target, expected.labels.target)
    np.testing.assert_array_equal(got.labels.censored, expected.labels.censored)


def test_late_rows_of_two_tables_are_each_named_with_their_count(
    tables: dict[str, pd.DataFrame],
) -> None:
    late = _with_rows_dated(tables, "activities", "2025-08-15T00:00:00Z", count=4)
    late = _with_rows_dated(late, "opportunities", "2025-09-01T00:00:00Z")

    with pytest.raises(ContractError) as caught:
        build_export(late)

    by_file = {problem.file: problem for problem in caught.value.problems}
    assert set(by_file) == {"activities", "opportunities"}
    assert by_file["activities"].count == 4
    assert "a gap of 46 days with no event of any table" in (by_file["activities"].message)
    assert "(5 rows of the export dated after that gap)" in by_file["opportunities"].message


def test_a_lenient_load_sets_the_late_rows_aside_and_ends_before_them(
    tables: dict[str, pd.DataFrame],
) -> None:
    typo = _with_rows_dated(tables, "activities", "2026-06-20T10:00:00Z")

    export = build_export(typo, lenient=True)

    assert [(row.table, row.key) for row in export.rejected_rows] == [
        ("activities", "activities-late-0")
    ]
    assert export.snapshot_at == build_export(tables).snapshot_at


def test_a_row_a_few_days_after_the_rest_is_the_exports_end(
    tables: dict[str, pd.DataFrame],
) -> None:
    # A quiet spell shorter than a month is a quiet spell, not a mistyped date
    late = _with_rows_dated(tables, "activities", "2025-07-20T00:00:00Z")

    export = build_export(late)

    assert export.snapshot_at == pd.Timestamp("2025-07-20T00:00:00Z")


def test_a_small_exports_sparse_last_events_are_taken_as_they_are() -> None:
    # One lead's engagement comes in runs: a year and a half without an event is normal
    tables = generate_tables(1, seed=18)
    times = pd.to_datetime(tables["activities"]["occurred_at"], utc=True).sort_values()
    assert times.iloc[-1] - times.iloc[-2] > pd.Timedelta(days=365)

    export = build_export(tables)

    assert export.snapshot_at == times.iloc[-1]


def test_outcome_tables_exported_weeks_before_the_others_are_named(
    tables: dict[str, pd.DataFrame],
) -> None:
    # Given rejections and opportunities exported 60 days before the marketing tables
    cut = pd.Timestamp(END) - pd.Timedelta(days=60)
    stale = dict(tables)
    for name, column in OUTCOME_COLUMNS:
        frame = tables[name]
        stale[name] = frame[pd.to_datetime(frame[column], utc=True) <= cut]

    export = build_export(stale)

    named = [w for w in export.warnings if "was it exported before the other tables?" in w]
    assert [w.split(":")[0] for w in named] == ["rejections", "opportunities"]
    for warning, (name, column) in zip(named, OUTCOME_COLUMNS, strict=True):
        assert f"--snapshot-at {export.tables[name][column].max().isoformat()}" in warning
    # And the end they suggest silences them: censoring then covers what they cannot show
    chosen = build_export(stale, snapshot_at=export.rejections["rejected_at"].max())
    assert not [w for w in chosen.warnings if "exported before" in w]


def test_a_generated_exports_tables_end_together() -> None:
    for leads, seed in ((60, 1), (200, 5), (1000, 2)):
        export = build_export(generate_tables(leads, seed=seed))
        assert not [w for w in export.warnings if "exported before" in w], (leads, seed)


def test_won_deals_without_a_close_date_are_named(tables: dict[str, pd.DataFrame]) -> None:
    opportunities = tables["opportunities"].copy()
    settled = opportunities.index[opportunities["status"].isin(["won", "lost"])][:3]
    opportunities.loc[settled, "closed_at"] = None

    export = build_export({**tables, "opportunities": opportunities})

    assert any(
        w.startswith("opportunities: 3 won or lost rows have no closed_at") for w in export.warnings
    )


def test_the_summary_names_each_tables_latest_event(tables: dict[str, pd.DataFrame]) -> None:
    summary = summarise_export(build_export(tables))

    latest = summary["time_span"]["latest_by_table"]
    assert list(latest) == ["leads", "activities", "rejections", "opportunities", "consent"]
    assert max(latest.values()) == summary["time_span"]["snapshot"]
    assert f"latest event by table: leads {latest['leads']}" in format_summary(summary)


@pytest.mark.parametrize(
    "dates",
    [("2026-06-20T10:00:00Z", "2026-08-19T10:00:00Z"), ("2026-08-30T00:00Z", "2026-10-30T00:00Z")],
)
def test_every_row_after_the_first_quiet_spell_is_refused_however_far_apart(
    tables: dict[str, pd.DataFrame], dates: tuple[str, str]
) -> None:
    # Given two mistyped rows more than a month apart, both long after the export's end
    first = _with_rows_dated(tables, "activities", dates[0])
    both = _with_rows_dated(first, "opportunities", dates[1])

    with pytest.raises(ContractError) as caught:
        build_export(both)

    # Then both are named, each in its table, and a lenient load ends before both
    by_file = {problem.file: problem for problem in caught.value.problems}
    assert set(by_file) == {"activities", "opportunities"}
    assert "(2 rows of the export dated after that gap)" in by_file["activities"].message
    assert build_export(both, lenient=True).snapshot_at == build_export(tables).snapshot_at


def _reference_stray_cut(times: np.ndarray) -> tuple[int, int, int] | None:
    """The quiet-spell rule computed from every event time, sorted: the reference the
    day summary must match."""
    every = np.sort(times)
    tail = max(1, int(len(every) * STRAY_SHARE))
    if len(every) <= tail:
        return None
    latest = every[-(tail + 1) :]
    gaps = np.diff(latest)
    for position in np.flatnonzero(gaps > QUIET_SPELL // MICROSECOND):
        cut = int(latest[position])
        in_pace = (every // DAY_US > cut // DAY_US - PACE_PERIOD // DAY) & (every <= cut)
        expected = int(in_pace.sum()) / (PACE_PERIOD // DAY) * int(gaps[position]) / DAY_US
        if expected > QUIET_EXPECTED_EVENTS:
            return cut, int(latest[position + 1]), int((every > cut).sum())
    return None


def _events(seed: int) -> np.ndarray:
    """Two years of events at a random pace, and a few strays after a random gap."""
    random = np.random.default_rng(seed)
    start = int(pd.Timestamp("2023-07-01", tz="UTC").value // 1000)
    regular = start + random.integers(0, 730 * DAY_US, size=int(random.integers(50, 20_000)))
    gap_days = int(random.choice([5, 29, 30, 31, 45, 300]))
    strays = regular.max() + gap_days * DAY_US + random.integers(0, 90 * DAY_US, size=5)
    kept = strays[: int(random.integers(0, 6))]
    return np.concatenate([regular, kept])


@pytest.mark.parametrize("seed", range(60))
def test_the_day_summary_finds_the_strays_every_event_finds_merged_from_any_parts(
    seed: int,
) -> None:
    # Given events, some after a quiet spell, cut into random parts (a batch job's chunks)
    times = _events(seed)
    parts = np.array_split(np.random.default_rng(seed).permutation(times), 1 + seed % 7)

    # When the rule reads the merged summaries of the parts
    found = stray_cut(EventDays.merged(EventDays.of(part) for part in parts))

    # Then it finds what the rule over every sorted event finds, and so does one summary
    expected = _reference_stray_cut(times)
    assert (None if found is None else astuple(found)) == expected
    assert stray_cut(EventDays.of(times)) == found


def test_a_day_summary_survives_its_plain_lists() -> None:
    summary = EventDays.of(_events(3))

    restored = EventDays.from_lists(summary.to_lists())

    for name in ("days", "counts", "firsts", "lasts"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(summary, name))
