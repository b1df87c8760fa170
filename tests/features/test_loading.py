"""The contract loader: types, UTC, vocabularies, and every problem named precisely."""

from __future__ import annotations

import gzip
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.coercion import BLANK_ID
from features.config import FeatureConfig
from features.contract import PERSONAL_COLUMNS, PERSONAL_ID_RULE, REJECTED_BEFORE_CREATED
from features.dataset import build_scoring_set
from features.loading import (
    SNAPSHOT_AFTER_DATA_ALLOWED,
    SPACED_LEAD_ID,
    build_export,
    load_export,
)
from features.problems import ContractError, Problem
from features.table_files import NOT_UTF8_TEXT, read_table_file
from features.timestamps import CLOCK_SKEW_ALLOWED, SPAN
from tests.clock import years_ahead
from tests.features.conftest import TINY_TABLES, write_tiny_export
from tests.parquet_damage import damage_a_page, with_bytes_not_utf8


def problems_of(directory: Path) -> list[Problem]:
    with pytest.raises(ContractError) as caught:
        load_export(directory)
    return caught.value.problems


def with_table(tmp_path: Path, name: str, text: str) -> Path:
    return write_tiny_export(tmp_path / "export", {**TINY_TABLES, name: text})


def test_loads_types_and_converts_offsets_to_utc(tiny_export_dir: Path) -> None:
    export = load_export(tiny_export_dir)

    leads = export.leads
    assert str(leads["created_at"].dtype) == "datetime64[us, UTC]"
    assert leads.loc[1, "created_at"] == pd.Timestamp("2024-01-31T22:00:00Z")
    assert leads.loc[1, "lead_source"] == "web_form"
    assert leads["employee_count"].tolist()[0] == 120.0
    assert export.snapshot_at == pd.Timestamp("2025-05-01T00:00:00Z")


def test_a_planned_close_date_after_the_data_does_not_move_the_snapshot(tmp_path: Path) -> None:
    # Given an open opportunity whose close date (a CRM's expected close) is years ahead
    opportunities = TINY_TABLES["opportunities"] + "O2,L2,2024-06-01T00:00:00Z,2027-01-01,open,\n"
    export = load_export(with_table(tmp_path, "opportunities", opportunities))

    # Then the snapshot is still the latest event, and the late close is named
    assert export.snapshot_at == pd.Timestamp("2025-05-01T00:00:00Z")
    assert any(
        "opportunities: 1 rows close after the snapshot" in warning for warning in export.warnings
    )


def test_unknown_activity_type_becomes_other_with_a_warning(tiny_export_dir: Path) -> None:
    export = load_export(tiny_export_dir)

    assert export.activities.loc[3, "activity_type"] == "other"
    assert any("1 activities with an unknown activity_type" in w for w in export.warnings)


def test_optional_tables_may_be_absent(tiny_export_dir: Path) -> None:
    (tiny_export_dir / "opportunities.csv").unlink()
    (tiny_export_dir / "consent.csv").unlink()

    export = load_export(tiny_export_dir)

    assert export.opportunities.empty
    assert export.consent.empty
    assert list(export.consent.columns) == ["lead_id", "changed_at", "status"]


def test_extra_columns_are_kept_on_leads_only_and_personal_columns_flagged(
    tiny_export_dir: Path,
) -> None:
    export = load_export(tiny_export_dir)

    assert "crm_custom_score" in export.leads
    assert set(export.leads.attrs["personal_columns"]) == PERSONAL_COLUMNS
    assert export.leads.loc[0, "email"] == "ann@example.com"


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    directory = write_tiny_export(tmp_path / "export")
    frame = pd.read_csv(directory / "rejections.csv").drop(columns=["reason_code"])
    frame.to_csv(directory / "rejections.csv", index=False)

    (problem,) = [p for p in problems_of(directory) if p.column == "reason_code"]

    assert problem.message == "required column is missing"
    assert problem.file.endswith("rejections.csv")


def test_duplicate_lead_id_is_named_with_row(tmp_path: Path) -> None:
    duplicate = TINY_TABLES["leads"] + "L1,2024-03-01T00:00:00Z,webinar,,,,,,,,\n"
    directory = with_table(tmp_path, "leads", duplicate)

    (problem,) = problems_of(directory)

    assert (problem.column, problem.message, problem.row, problem.found) == (
        "lead_id",
        "duplicate primary key",
        1,
        "text of letters and digits (2 characters)",
    )
    assert problem.count == 2


def test_unparseable_rejected_at_is_named_with_row_and_what_it_holds(tmp_path: Path) -> None:
    text = TINY_TABLES["rejections"].replace("2025-05-01T00:00:00Z", "first of May")
    directory = with_table(tmp_path, "rejections", text)

    (problem,) = problems_of(directory)

    assert (problem.column, problem.row) == ("rejected_at", 3)
    assert problem.found == "text of letters and spaces (12 characters)"
    assert "ISO 8601" in problem.message


def test_unknown_reason_code_is_named(tmp_path: Path) -> None:
    text = TINY_TABLES["rejections"].replace(",timing,,,", ",bad_vibes,,,", 1)
    directory = with_table(tmp_path, "rejections", text)

    (problem,) = problems_of(directory)

    assert (problem.column, problem.row) == ("reason_code", 2)
    assert problem.found == "text of letters and other characters (9 characters)"
    assert "allowed values" in problem.message


def test_values_the_api_would_refuse_for_length_are_named(tmp_path: Path) -> None:
    long_note = "n" * 2001
    long_id = "A" * 201
    rejections = TINY_TABLES["rejections"].replace(
        "R2,L2,2024-04-01T00:00:00Z,mql,timing,,,",
        f"R2,L2,2024-04-01T00:00:00Z,mql,timing,,,,{long_note}",
    )
    rejections = rejections.replace("recommended_program\n", "recommended_program,reason_detail\n")
    activities = TINY_TABLES["activities"].replace("A2,L1,", f"{long_id},L1,")
    directory = with_table(tmp_path, "rejections", rejections)
    (directory / "activities.csv").write_text(activities, encoding="utf-8")

    problems = {(p.column, p.row): (p.message, p.found) for p in problems_of(directory)}

    assert problems == {
        ("reason_detail", 2): ("longer than 2,000 characters", "text of letters (2001 characters)"),
        ("activity_id", 2): ("longer than 200 characters", "text of letters (201 characters)"),
    }


@pytest.mark.parametrize(
    "blank",
    [
        *("", " ", "\t", "\u200b", " \u3000\ufeff ", "\u3164", "\u2800\u034f"),
        *("\U000e0020", "\x00", "\x7f\x9f"),
    ],
    ids=repr,
)
def test_a_blank_identifier_in_parquet_is_named(tmp_path: Path, blank: str) -> None:
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str)
    leads.loc[1, "lead_id"] = blank
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")

    messages = {(Path(p.file).name, p.column, p.row): p.message for p in problems_of(directory)}

    assert messages[("leads.parquet", "lead_id", 2)] == BLANK_ID


def test_a_rejection_dated_before_its_lead_was_created_is_a_problem_of_its_row(
    tmp_path: Path,
) -> None:
    # Given L2 created on 2024-01-31 22:00 UTC, rejected by R2 a second before, and L1
    # rejected by R1 at the very moment it was created
    rejections = (
        TINY_TABLES["rejections"]
        .replace("R2,L2,2024-04-01T00:00:00Z", "R2,L2,2024-01-31T21:59:59Z")
        .replace("R1,L1,2024-04-01T00:00:00Z", "R1,L1,2024-01-01T00:00:00Z")
    )
    directory = with_table(tmp_path, "rejections", rejections)

    problems = problems_of(directory)
    lenient = load_export(directory, lenient=True)

    # Then R2 alone is named, and set aside in a lenient load
    assert [(p.column, p.row, p.message) for p in problems] == [
        ("rejected_at", 2, REJECTED_BEFORE_CREATED)
    ]
    assert sorted(lenient.rejections["rejection_id"]) == ["R1", "R3"]
    assert [(r.table, r.row) for r in lenient.rejected_rows] == [("rejections", 2)]


def test_rejections_of_one_lead_at_one_moment_are_noted_and_the_greatest_id_is_open(
    tmp_path: Path,
) -> None:
    # Given L1 rejected twice at the same moment (R3 and R1), and an invalid third at it
    rejections = (
        TINY_TABLES["rejections"].replace(
            "R3,L1,2025-05-01T00:00:00Z", "R3,L1,2024-04-01T00:00:00Z"
        )
        + "R4,L1,2024-04-01T00:00:00Z,sql,gone_fishing,,,\n"
    )
    directory = with_table(tmp_path, "rejections", rejections)

    export = load_export(directory, lenient=True)
    scored = build_scoring_set(export, FeatureConfig(), pd.Timestamp("2024-05-01", tz="UTC"))

    # Then the two valid ones are noted, and R3, the greater id, is the open one
    (note,) = [w for w in export.warnings if "share their lead" in w]
    assert note.endswith(
        "rejections.csv: 2 rejections share their lead and their rejected_at with another "
        "(first at row 1); of such rejections the one with the greatest rejection_id (in "
        "code-point order) counts as the later: it alone can be open and scored, the others "
        "count as its earlier rejections"
    )
    assert "R3" in set(scored.keys["rejection_id"])
    assert "R1" not in set(scored.keys["rejection_id"])


def test_an_opportunity_closed_before_it_was_created_is_noted(tmp_path: Path) -> None:
    opportunities = TINY_TABLES["opportunities"].replace(
        "2024-08-01T00:00:00Z,2024-10-01T00:00:00Z", "2024-08-01T00:00:00Z,2024-07-01T00:00:00Z"
    )

    export = load_export(with_table(tmp_path, "opportunities", opportunities))

    (note,) = [w for w in export.warnings if "close before" in w]
    assert note.endswith(
        "opportunities.csv: 1 opportunities close before they were created (closed_at before "
        "created_at; first at row 1); each is read as closed at its creation"
    )


def test_a_parquet_page_that_fails_its_checksum_is_named_not_read(tmp_path: Path) -> None:
    # Given a leads file written with page checksums, one byte of a page changed since
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str)
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")
    damage_a_page(directory / "leads.parquet")

    (problem,) = problems_of(directory)

    # Then the file is refused by name, rather than read as other values
    assert Path(problem.file).name == "leads.parquet"
    assert "CRC checksum verification failed" in problem.message


def test_a_blank_lead_id_is_not_counted_as_a_spaced_one(tmp_path: Path) -> None:
    leads = TINY_TABLES["leads"].replace("\nL2,", '\n"L2 ",').replace("\nL1,", '\n" ",')

    export = load_export(with_table(tmp_path, "leads", leads), lenient=True)

    (note,) = [w for w in export.warnings if "a space at the start or end" in w]
    assert "1 lead_id value has a space" in note


@pytest.mark.parametrize("column", ["lead_id", "lead_source", "industry"])
def test_parquet_text_that_is_not_utf8_is_named_by_column_and_row(
    tmp_path: Path, column: str
) -> None:
    # Given a leads file whose text holds, in its second row, bytes that are not UTF-8
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str, keep_default_na=False)
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")
    with_bytes_not_utf8(directory / "leads.parquet", column, [1])

    (problem,) = problems_of(directory)

    # Then the file is refused, naming the column, the first such row and how many
    assert (Path(problem.file).name, problem.column, problem.row) == ("leads.parquet", column, 2)
    assert (problem.message, problem.count) == (NOT_UTF8_TEXT, 1)


def test_a_blank_optional_identifier_is_missing_as_an_empty_one(tmp_path: Path) -> None:
    # Given a lead whose account_id holds only a zero-width space, another's only spaces
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str)
    leads.loc[0, "account_id"] = "\u200b"
    leads.loc[1, "account_id"] = "   "
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")

    export = load_export(directory)

    assert export.leads["account_id"].isna().all()


def test_an_identifier_holding_an_email_address_is_set_aside_without_its_value(
    tmp_path: Path,
) -> None:
    # Given a CRM that keys a lead, and the account, by an e-mail address
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str)
    leads.loc[1, "lead_id"] = "ann.lee@example.com"
    leads.loc[0, "account_id"] = "billing\ufe6bacme.example"  # a look-alike at sign
    leads.to_csv(directory / "leads.csv", index=False)

    problems = problems_of(directory)

    # Then both rows are named, column and rule, and the address is nowhere
    refused = {(Path(p.file).name, p.column, p.row): p.message for p in problems}
    rule = PERSONAL_ID_RULE
    assert refused[("leads.csv", "lead_id", 2)] == rule
    assert refused[("leads.csv", "account_id", 1)] == rule
    assert not any("example" in f"{p.message} {p.found}" for p in problems)


def test_parquet_timestamps_outside_the_span_are_named(tmp_path: Path) -> None:
    directory = write_tiny_export(tmp_path / "export")
    consent = pd.DataFrame(
        {
            "lead_id": ["L2", "L2"],
            "changed_at": np.array(["1500-01-01", "2024-05-01"], dtype="datetime64[us]"),
            "status": ["subscribed", "unsubscribed"],
        }
    )
    (directory / "consent.csv").unlink()
    consent.to_parquet(directory / "consent.parquet")

    (problem,) = problems_of(directory)

    assert (problem.column, problem.row) == ("changed_at", 1)
    assert problem.message == f"not an ISO 8601 timestamp {SPAN}"


def test_rejection_of_unknown_lead_is_named(tmp_path: Path) -> None:
    text = TINY_TABLES["rejections"] + "R9,L404,2024-04-01T00:00:00Z,sql,budget,,,\n"
    directory = with_table(tmp_path, "rejections", text)

    (problem,) = problems_of(directory)

    assert (problem.file.endswith("rejections.csv"), problem.column, problem.row) == (
        True,
        "lead_id",
        4,
    )
    assert problem.found == "text of letters and digits (4 characters)"
    assert "not in leads" in problem.message


@pytest.mark.parametrize("name", ["leads.parquet", "leads.csv"])
def test_file_that_is_not_csv_or_parquet_is_named(tmp_path: Path, name: str) -> None:
    directory = write_tiny_export(tmp_path / "export")
    (directory / "leads.csv").unlink()
    (directory / name).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00garbage")

    (problem,) = problems_of(directory)

    assert problem.file.endswith(name)
    assert "not a readable" in problem.message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        TINY_TABLES["rejections"]
        .replace("2025-05-01T00:00:00Z", "never")
        .replace(",budget,", ",nope,")
    )
    directory = with_table(tmp_path, "rejections", text)

    columns = {p.column for p in problems_of(directory)}

    assert columns == {"rejected_at", "reason_code"}


def test_empty_required_table_and_missing_table_are_problems(tmp_path: Path) -> None:
    directory = with_table(
        tmp_path, "activities", "activity_id,lead_id,occurred_at,activity_type\n"
    )
    (directory / "rejections.csv").unlink()

    messages = {p.message for p in problems_of(directory)}

    assert "required table 'rejections' is missing" in messages


def test_lenient_load_sets_bad_rows_aside_with_reason(tmp_path: Path) -> None:
    text = TINY_TABLES["rejections"].replace("2025-05-01T00:00:00Z", "garbled")
    directory = with_table(tmp_path, "rejections", text)

    export = load_export(directory, lenient=True)

    assert export.rejections["rejection_id"].tolist() == ["R1", "R2"]
    (rejected,) = export.rejected_rows
    assert (rejected.table, rejected.row, rejected.key) == ("rejections", 3, "R3")
    assert rejected.reason.startswith("rejected_at: not an ISO 8601")


def test_a_lenient_load_sets_future_rows_aside_and_keeps_the_snapshot_and_censoring(
    tmp_path: Path,
) -> None:
    # Given an activity a year ahead and a consent change just inside the allowed clock skew
    ahead = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=365)
    within_skew = pd.Timestamp.now(tz="UTC") + CLOCK_SKEW_ALLOWED / 2
    activities = TINY_TABLES["activities"] + f"A9,L2,{ahead.isoformat()},web_visit\n"
    consent = TINY_TABLES["consent"] + f"L1,{within_skew.isoformat()},subscribed\n"
    directory = write_tiny_export(
        tmp_path / "export", {**TINY_TABLES, "activities": activities, "consent": consent}
    )

    export = load_export(directory, lenient=True)

    # Then the future row is set aside with its reason, the one within the skew is kept
    (rejected,) = export.rejected_rows
    assert (rejected.table, rejected.row, rejected.key) == ("activities", 7, "A9")
    assert rejected.reason.startswith("occurred_at: dated in the future")
    assert len(export.consent) == 2
    assert export.snapshot_at == within_skew.floor("us")


def test_a_clock_given_decides_what_is_dated_in_the_future(tmp_path: Path) -> None:
    # Given the tiny export, read as if the clock were where a batch job first started:
    # 2025-05-01, the day of its latest rejection
    directory = write_tiny_export(tmp_path / "export")
    raw = {path.stem: read_table_file(path) for path in directory.glob("*.csv")}
    clock = pd.Timestamp("2025-04-30T23:50:00Z")

    # When it is checked against that clock (plus the 5 minutes of skew)
    export = build_export(raw, lenient=True, clock=clock)

    # Then the rejection dated after it is set aside as dated in the future, nothing else
    (rejected,) = export.rejected_rows
    assert (rejected.table, rejected.key) == ("rejections", "R3")
    assert rejected.reason.startswith("rejected_at: dated in the future")
    assert not build_export(raw, lenient=True, clock=clock + pd.Timedelta(minutes=10)).rejected_rows


def test_a_strict_load_refuses_a_row_dated_in_the_future(tmp_path: Path) -> None:
    rejections = TINY_TABLES["rejections"] + f"R4,L2,{years_ahead()},mql,timing,,,\n"

    (problem,) = problems_of(with_table(tmp_path, "rejections", rejections))

    assert (problem.column, problem.row) == ("rejected_at", 4)
    assert problem.message.startswith("dated in the future")


def test_a_snapshot_in_the_future_is_refused_before_any_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as caught:
        load_export(tmp_path / "not-read", snapshot_at=pd.Timestamp(years_ahead()))

    (problem,) = caught.value.problems
    assert problem.file == "snapshot_at"
    assert "is in the future" in problem.message


def test_a_snapshot_weeks_after_the_exports_last_event_is_refused(tiny_export_dir: Path) -> None:
    # Given the tiny export, whose latest event is 2025-05-01
    latest = load_export(tiny_export_dir).snapshot_at
    # Then a snapshot up to a week after it is the export's end, as for an export taken on
    # a quiet weekend, and one later is refused, naming both moments
    allowed = latest + SNAPSHOT_AFTER_DATA_ALLOWED
    assert load_export(tiny_export_dir, snapshot_at=allowed).snapshot_at == allowed
    with pytest.raises(ContractError) as caught:
        load_export(tiny_export_dir, snapshot_at=allowed + pd.Timedelta(microseconds=1))
    (problem,) = caught.value.problems
    assert problem.file == "snapshot_at"
    assert problem.message.startswith(
        "2025-05-08T00:00:00.000001+00:00 is 7.0 days after the export's latest event "
        "(2025-05-01T00:00:00+00:00): comebacks after that moment are not in the export"
    )


def test_generated_export_validates_in_both_formats(tmp_path: Path, small_export_dir: Path) -> None:
    from features.synthetic import generate_export

    csv_dir = tmp_path / "csv"
    generate_export(csv_dir, 500, 5, "csv")
    parquet_dir = tmp_path / "parquet"
    shutil.copytree(small_export_dir, parquet_dir)

    for directory in (csv_dir, parquet_dir):
        export = load_export(directory)
        assert len(export.leads) > 0
        assert len(export.rejections) > 0


def test_timestamps_without_offset_are_utc_even_beside_offset_rows(tmp_path: Path) -> None:
    activities = (
        "activity_id,lead_id,occurred_at,activity_type\n"
        "A1,L1,2024-01-01T00:00:00+05:00,web_visit\n"
        "A2,L1,2024-02-01T00:00:00,web_visit\n"
        "A3,L1,2024-02-02,web_visit\n"
    )
    export = load_export(with_table(tmp_path, "activities", activities))

    assert export.activities["occurred_at"].tolist() == [
        pd.Timestamp("2023-12-31T19:00:00Z"),
        pd.Timestamp("2024-02-01T00:00:00Z"),
        pd.Timestamp("2024-02-02T00:00:00Z"),
    ]


def test_csv_row_with_extra_fields_is_an_error_not_a_shift(tmp_path: Path) -> None:
    activities = TINY_TABLES["activities"].replace(
        "A1,L1,2024-02-01T00:00:00Z,pricing_page_visit", "A1,L1,2024-02-01T00:00:00Z,web_visit,x"
    )
    (problem,) = problems_of(with_table(tmp_path, "activities", activities))

    assert problem.file.endswith("activities.csv")
    assert problem.row == 1
    assert problem.message.startswith("has more fields than the header")


def test_csv_that_is_not_utf8_is_named_by_line_and_character(tmp_path: Path) -> None:
    # Given a leads file saved as Windows-1252: "Zoë" is one byte 0xEB on the third line
    directory = write_tiny_export(tmp_path / "export")
    leads = TINY_TABLES["leads"].replace("Bob,", "Zoë,")
    (directory / "leads.csv").write_bytes(leads.encode("cp1252"))

    (problem,) = problems_of(directory)

    # Then the problem names the file, the line (the header is line 1) and the character
    assert problem.file.endswith("leads.csv")
    assert problem.message.startswith(
        "not a readable UTF-8 CSV file: line 3, character 98 is the byte 0xEB, which is not "
        "UTF-8 (invalid continuation byte)"
    )


def test_csv_header_naming_a_column_twice_is_named(tmp_path: Path) -> None:
    leads = TINY_TABLES["leads"].replace("industry,employee_count", "industry,industry")
    (problem,) = problems_of(with_table(tmp_path, "leads", leads))

    assert (problem.column, problem.message) == (
        "industry",
        "column appears more than once in the header",
    )


@pytest.mark.parametrize("before", ["\n", "   \n", "\t\r\n"])
def test_csv_header_naming_a_column_twice_is_named_after_blank_lines(
    tmp_path: Path, before: str
) -> None:
    # Given blank lines (or lines of spaces, which pandas skips too) before such a header
    leads = before + TINY_TABLES["leads"].replace("industry,employee_count", "industry,industry")
    (problem,) = problems_of(with_table(tmp_path, "leads", leads))

    assert (problem.column, problem.message) == (
        "industry",
        "column appears more than once in the header",
    )


def test_csv_header_naming_its_first_column_twice_is_named_after_a_byte_order_mark(
    tmp_path: Path,
) -> None:
    # Given a header that repeats its first column, in a file starting with a byte-order mark
    directory = write_tiny_export(tmp_path / "export")
    leads = TINY_TABLES["leads"].replace(",crm_custom_score", ",lead_id")
    (directory / "leads.csv").write_bytes(b"\xef\xbb\xbf" + leads.encode())

    (problem,) = problems_of(directory)

    assert (problem.column, problem.message) == (
        "lead_id",
        "column appears more than once in the header",
    )


def test_lenient_load_sets_aside_the_rows_of_a_set_aside_lead(tmp_path: Path) -> None:
    leads = TINY_TABLES["leads"].replace("2024-01-01T00:00:00Z", "someday")

    export = load_export(with_table(tmp_path, "leads", leads), lenient=True)

    assert export.rejections["rejection_id"].tolist() == ["R2"]
    reasons = {(r.table, r.key): r.reason for r in export.rejected_rows}
    assert reasons[("rejections", "R1")] == "lead_id: its lead's row was set aside"
    assert reasons[("leads", "L1")].startswith("created_at: not an ISO 8601")


def test_a_category_of_non_text_values_is_set_aside_not_a_crash(tmp_path: Path) -> None:
    # Given a Parquet leads file whose job_level holds bytes that are not UTF-8 text
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str)
    leads["job_level"] = [b"v\xffp", None]
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")

    export = load_export(directory, lenient=True)

    # Then the rows are set aside as unknown categories, with the column named
    reasons = [row.reason for row in export.rejected_rows if row.table == "leads"]
    assert len(reasons) == 1
    assert reasons[0].startswith("job_level: not one of")


def _as_parquet(directory: Path, table: str, columns: dict[str, pa.Array]) -> None:
    """Replace ``table``'s CSV with Parquet, the given columns stored with their own types."""
    frame = pa.Table.from_pandas(pd.read_csv(directory / f"{table}.csv", dtype=str))
    for name, values in columns.items():
        if name in frame.column_names:
            frame = frame.set_column(frame.schema.get_field_index(name), name, values)
        else:
            frame = frame.append_column(name, values)
    (directory / f"{table}.csv").unlink()
    pq.write_table(frame, directory / f"{table}.parquet")


def test_parquet_numbers_in_text_columns_read_as_the_csv_text(tmp_path: Path) -> None:
    # Given codes in text columns, as CSV text and as Parquet integers and floats with gaps
    leads = TINY_TABLES["leads"].replace("Software", "12").replace("retail", "")
    leads = leads.replace("lead_id,", "lead_id,account_id,country,").replace("L1,", "L1,900,7,")
    leads = leads.replace("L2,", "L2,,7.5,")
    csv_export = load_export(with_table(tmp_path / "csv", "leads", leads))
    directory = with_table(tmp_path / "parquet", "leads", leads)
    _as_parquet(
        directory,
        "leads",
        {
            "industry": pa.array([12, None], pa.int64()),
            "account_id": pa.array([900.0, None], pa.float64()),
            "country": pa.array([7.0, 7.5], pa.float32()),
        },
    )

    parquet_export = load_export(directory)

    # Then each reads as the CSV's text: "12", not "12.0"
    for column, expected in [("industry", "12"), ("account_id", "900"), ("country", "7")]:
        assert parquet_export.leads[column].iloc[0] == expected, column
        assert csv_export.leads[column].iloc[0] == expected, column
    assert parquet_export.leads["country"].iloc[1] == "7.5"
    assert parquet_export.leads["industry"].dtype == csv_export.leads["industry"].dtype


def test_a_parquet_integer_id_with_gaps_keeps_every_digit_and_finds_its_lead(
    tmp_path: Path,
) -> None:
    # Given lead ids past 2^53 held as integers in Parquet, and as text in the CSV children
    big = 2**60 + 1
    tables = {
        name: text.replace("L1", str(big)).replace("L2", "2") for name, text in TINY_TABLES.items()
    }
    directory = write_tiny_export(tmp_path / "export", tables)
    _as_parquet(directory, "leads", {"lead_id": pa.array([big, 2], pa.int64())})
    _as_parquet(directory, "rejections", {"rep_id": pa.array([5, None, None], pa.int64())})

    export = load_export(directory)

    # Then the ids are the CSV's text, and every child row finds its lead
    assert export.leads["lead_id"].tolist() == [str(big), "2"]
    assert export.rejections["lead_id"].tolist() == [str(big), "2", str(big)]
    assert export.rejections["rep_id"].iloc[0] == "5"


def test_parquet_text_stored_as_bytes_reads_as_its_utf8_text(tmp_path: Path) -> None:
    # Given ids and free text written as bytes without their UTF-8 annotation (some writers
    # do), beside the CSV children that name the same leads as text
    directory = write_tiny_export(tmp_path / "export")
    _as_parquet(
        directory,
        "leads",
        {
            "lead_id": pa.array([b"L1", b"L2"], pa.binary()),
            "industry": pa.array(["Soft\u00e9ware".encode(), None], pa.binary()),
        },
    )

    export = load_export(directory)

    # Then they read as the text the bytes hold, and every child row finds its lead
    assert export.leads["lead_id"].tolist() == ["L1", "L2"]
    assert export.leads["industry"].iloc[0] == "Soft\u00e9ware"
    assert export.rejections["lead_id"].isin(export.leads["lead_id"]).all()


def test_parquet_bytes_in_category_number_and_time_columns_read_as_their_text(
    tmp_path: Path,
) -> None:
    # Given a leads file written by a tool that stores every string as bytes: categories,
    # counts and ISO timestamps included
    directory = write_tiny_export(tmp_path / "export")
    expected = load_export(directory).leads
    _as_parquet(
        directory,
        "leads",
        {
            "lead_source": pa.array([b"webinar", b"Web_Form"], pa.binary()),
            "employee_count": pa.array([b"120", None], pa.binary()),
            "created_at": pa.array(
                [b"2024-01-01T00:00:00Z", b"2024-02-01T00:00:00+02:00"], pa.binary()
            ),
        },
    )

    export = load_export(directory)

    # Then they read as the text the bytes hold, as the CSV's text reads
    for column in ("lead_source", "employee_count", "created_at"):
        pd.testing.assert_series_equal(export.leads[column], expected[column])


def test_parquet_bytes_that_are_not_utf8_in_a_text_column_are_named(tmp_path: Path) -> None:
    directory = write_tiny_export(tmp_path / "export")
    _as_parquet(directory, "leads", {"industry": pa.array([b"ok", b"caf\xe9"], pa.binary())})

    messages = {(Path(p.file).name, p.column, p.row): p for p in problems_of(directory)}

    problem = messages[("leads.parquet", "industry", 2)]
    assert problem.message == "not text (an infinite number, or bytes that are not UTF-8)"
    assert problem.found == "bytes (4 bytes)"


def test_an_infinite_number_in_a_text_column_is_named(tmp_path: Path) -> None:
    directory = write_tiny_export(tmp_path / "export")
    _as_parquet(directory, "leads", {"industry": pa.array([1.0, float("inf")])})

    messages = {(Path(p.file).name, p.column, p.row): p for p in problems_of(directory)}

    problem = messages[("leads.parquet", "industry", 2)]
    assert problem.message == "not text (an infinite number, or bytes that are not UTF-8)"
    assert problem.found == "an infinite number"


#: pandas' C parser does not count the fields of the first row of each block it tokenises;
#: for a narrow file, that is this data row (pandas-dev/pandas#11569).
PANDAS_BLOCK_START = 262_144


@pytest.mark.parametrize("long_row", [PANDAS_BLOCK_START - 1, PANDAS_BLOCK_START])
def test_a_row_with_more_fields_than_the_header_is_refused_wherever_it_is(
    tmp_path: Path, long_row: int
) -> None:
    # Given a narrow CSV whose one long row starts a block of pandas' tokeniser, or not
    path = tmp_path / "activities.csv"
    rows = [f"{i},x,y" for i in range(PANDAS_BLOCK_START + 10)]
    rows[long_row] = f"{long_row},x,y,stray"
    path.write_text("a,b,c\n" + "\n".join(rows) + "\n", encoding="utf-8")

    with pytest.raises(ContractError) as raised:
        read_table_file(path)

    # Then the file is refused, naming the row (the header is not a row)
    (problem,) = raised.value.problems
    assert (problem.file, problem.row) == (str(path), long_row + 1)
    assert problem.message.startswith("has 4 fields where the header has 3")


def test_a_trailing_separator_on_the_first_row_is_read_as_pandas_reads_it(tmp_path: Path) -> None:
    # pandas drops one empty trailing field of the first row (index_col=False); so does the
    # loader, though Arrow's parser counts it as a fourth field
    path = tmp_path / "activities.csv"
    path.write_text("a,b,c\n1,x,y,\n2,x,y\n", encoding="utf-8")

    frame = read_table_file(path)

    assert frame["a"].tolist() == ["1", "2"]


#: The tiny leads with one field missing from L2's row (its empty employee_count): every
#: value after it moves one column left, and L2's e-mail address lands in product_fit.
SHIFTED_LEADS = TINY_TABLES["leads"].replace("retail,,Engineer", "retail,Engineer")


def test_a_shifted_row_is_described_and_none_of_its_cells_is_shown(tmp_path: Path) -> None:
    # Given a leads row shifted by a missing field
    directory = with_table(tmp_path, "leads", SHIFTED_LEADS)

    problems = problems_of(directory)
    export = load_export(directory, lenient=True)

    # Then each problem says what its cell holds, and no message shows a cell
    found = {p.column: p.found for p in problems}
    assert found["product_fit"] == (
        "an e-mail address (15 characters): the row's values may be shifted "
        "(a field missing or added earlier in the row, or a quote left open)"
    )
    assert found["employee_count"] == "a word (8 characters)"
    shown = [str(p) for p in problems] + [str(p.to_dict()) for p in problems]
    shown += [row.reason for row in export.rejected_rows]
    assert not [text for text in shown if "bob@example.com" in text or "Engineer" in text]


def test_a_parquet_cell_holding_another_columns_value_is_described_without_a_shift(
    tmp_path: Path,
) -> None:
    # Given the shifted leads written as Parquet, whose columns are stored apart
    directory = with_table(tmp_path, "leads", SHIFTED_LEADS)
    leads = pd.read_csv(directory / "leads.csv", dtype=str, keep_default_na=False)
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")

    found = {p.column: p.found for p in problems_of(directory)}

    # Then the cell is described, and no row is said to be shifted
    assert found["product_fit"] == "an e-mail address (15 characters)"


def test_a_vocabulary_value_in_the_wrong_column_is_named_by_its_column(tmp_path: Path) -> None:
    leads = TINY_TABLES["leads"].replace("VP Sales,,ideal", "VP Sales,ideal,")

    (problem,) = problems_of(with_table(tmp_path, "leads", leads))

    assert (problem.column, problem.row) == ("job_level", 1)
    assert problem.found is not None
    assert problem.found.startswith("a value allowed in column 'product_fit' (5 characters)")
    assert "ideal" not in str(problem).split("; the cell holds")[1]


def test_unknown_activity_types_are_counted_never_named(tmp_path: Path) -> None:
    # Given an activity whose type column holds an e-mail address (a shifted row)
    activities = TINY_TABLES["activities"].replace("carrier_pigeon", "bob@example.com")

    export = load_export(with_table(tmp_path, "activities", activities))

    (warning,) = [w for w in export.warnings if "activity_type" in w]
    assert warning.endswith(
        "1 activities with an unknown activity_type were kept as 'other' (1 distinct value; "
        "first at row 4)"
    )
    assert "bob@example.com" not in warning


def _consent_as(directory: Path, name: str) -> Path:
    """Move the tiny export's consent table to ``name`` (gzip-compressed for ``.gz``, a
    Parquet dataset directory for a name ending in ``/``)."""
    consent = directory / "consent.csv"
    target = directory / name.rstrip("/")
    if name.endswith(".gz"):
        target.write_bytes(gzip.compress(consent.read_bytes()))
    elif name.endswith("/"):
        target.mkdir()
        pd.read_csv(consent, dtype=str).to_parquet(target / "part-0.parquet")
    else:
        shutil.copyfile(consent, target)
    consent.unlink()
    return target


@pytest.mark.parametrize(
    "name", ["consent.CSV", "Consent.csv", "consent.csv.gz", "consent.parquet/"]
)
def test_a_table_under_a_name_not_read_is_refused_not_skipped(tmp_path: Path, name: str) -> None:
    # Given the consent table (one unsubscribe) under a name the loader does not read
    directory = write_tiny_export(tmp_path / "export")
    target = _consent_as(directory, name)

    (problem,) = problems_of(directory)

    # Then the export is refused, naming the file and the names read, not taken as no consent
    assert problem.file == str(target)
    assert problem.message.startswith(
        "looks like table 'consent', but only a file named exactly consent.parquet or "
        "consent.csv is read as that table"
    )


def test_a_required_table_under_a_name_not_read_is_named_besides_the_missing_table(
    tmp_path: Path,
) -> None:
    directory = write_tiny_export(tmp_path / "export")
    (directory / "activities.csv").rename(directory / "activities.CSV")

    messages = {Path(p.file).name: p.message for p in problems_of(directory)}

    assert messages["activities.CSV"].startswith("looks like table 'activities'")
    assert messages["activities.parquet|.csv"] == "required table 'activities' is missing"


def test_names_that_only_start_with_a_table_name_are_left_alone(tiny_export_dir: Path) -> None:
    (tiny_export_dir / "consent.csv.md5").write_text("0" * 32, encoding="utf-8")
    (tiny_export_dir / "consent_2023.csv").write_text("lead_id\n", encoding="utf-8")

    export = load_export(tiny_export_dir)

    assert len(export.consent) == 1


def test_a_second_file_of_a_table_read_is_refused_as_a_second_copy(tmp_path: Path) -> None:
    # Given consent.csv and a compressed copy of it beside it
    directory = write_tiny_export(tmp_path / "export")
    copy = directory / "consent.csv.gz"
    copy.write_bytes(gzip.compress((directory / "consent.csv").read_bytes()))

    (problem,) = problems_of(directory)

    # Then the copy is named as a second file, not as a table that would count as absent
    assert problem.file == str(copy)
    assert problem.message == "a second file for table consent beside consent.csv; keep one"


@pytest.mark.parametrize(
    ("others", "named"),
    [
        ((), ""),
        (("consent (1).csv", "consent_2026-06-30.csv", "consent.csv.bak"), True),
    ],
)
def test_an_absent_consent_table_is_warned_naming_look_alike_files(
    tiny_export_dir: Path, others: tuple[str, ...], named: object
) -> None:
    # Given no consent.csv, only (maybe) files whose names start with 'consent'
    text = (tiny_export_dir / "consent.csv").read_text(encoding="utf-8")
    (tiny_export_dir / "consent.csv").unlink()
    for name in others:
        (tiny_export_dir / name).write_text(text, encoding="utf-8")

    export = load_export(tiny_export_dir)

    # Then the load succeeds (consent is optional) with a warning naming those files
    (warning,) = [w for w in export.warnings if w.startswith("no consent table")]
    assert "every lead counts as subscribed" in warning
    assert "consent.parquet or consent.csv" in warning
    assert all(name in warning for name in others)
    assert ("not read:" in warning) == bool(named)


def test_a_present_consent_table_gives_no_absence_warning(tiny_export_dir: Path) -> None:
    export = load_export(tiny_export_dir)

    assert not [w for w in export.warnings if w.startswith("no consent table")]


def test_a_rejected_rows_key_is_kept_only_when_the_key_is_not_at_fault(tmp_path: Path) -> None:
    # Given a rejection whose key repeats and one whose date is garbled
    text = TINY_TABLES["rejections"].replace("R3,", "R1,").replace("R2,L2,2024-04-01", "R2,L2,x")
    directory = with_table(tmp_path, "rejections", text)

    export = load_export(directory, lenient=True)

    # Then the repeated key, which may hold anything, is not copied; the other is
    keys = {r.row: (r.key, r.reason.split(":")[0]) for r in export.rejected_rows}
    assert (None, "rejection_id") in keys.values()
    assert any(key is not None and column != "rejection_id" for key, column in keys.values())


def test_a_lead_id_with_spaces_around_it_is_noted_even_when_the_load_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a leads file that writes L2 as "L2 ", and other tables that write it "L2"
    leads = TINY_TABLES["leads"].replace("\nL2,", '\n"L2 ",')
    directory = write_tiny_export(tmp_path / "export", {**TINY_TABLES, "leads": leads})

    with pytest.raises(ContractError) as caught, caplog.at_level(logging.WARNING):
        load_export(directory)
    lenient = load_export(directory, lenient=True)

    # Then the other tables' rows point to no lead as written, but name one read loosely,
    # and a note says why, counting the ids
    assert {p.message for p in caught.value.problems} == {SPACED_LEAD_ID}
    note = "leads.csv: 1 lead_id value has a space at the start or end (first at row 2)"
    assert note in caplog.text
    assert any(note in carried for carried in caught.value.notes)
    assert any(note in warning for warning in lenient.warnings)
    assert "L2 " not in caplog.text


def test_a_naive_snapshot_is_utc(tiny_export_dir: Path) -> None:
    export = load_export(tiny_export_dir, snapshot_at=pd.Timestamp("2025-05-03"))

    assert export.snapshot_at == pd.Timestamp("2025-05-03", tz="UTC")


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ("a,b,c\n0,x,y\n\n1,x,y\n2,x,y\n3,x,y,stray\n", 4),
        ("\n\na,b,c\n0,x,y\n1,x,y\n2,x,y\n3,x,y,stray\n", 4),
        ('a,b,c\n0,"x\ny",y\n1,x,y\n2,x,y,stray\n', 3),
        ("a,b,c\n0,x,y\n   \n1,x,y\n2,x,y,stray\n", 3),
        ('a,b,c\n0,x,y\n\n1,x,y\n2,"x,y\n3,x,y\n', 3),
        ('a,b,c\n0,x,y\n""\n1,x,y\n2,x,y,stray\n', 4),
        ("a,b,c\n\n0," + "x" * 200_000 + ",y\n1,x,y\n2,x,y,stray\n", 3),
    ],
    ids=[
        "blank-line",
        "blank-lines-before-header",
        "quoted-newline",
        "spaces-line",
        "open-quote",
        "quoted-empty-value-is-a-row",
        "field-over-128-kib",
    ],
)
def test_an_unreadable_csv_row_is_numbered_as_every_row_is(
    tmp_path: Path, text: str, row: int
) -> None:
    """pandas counts blank lines in its errors; a problem's row never does (the header and
    blank lines are no rows, and a quoted line break does not start one)."""
    path = tmp_path / "activities.csv"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ContractError) as raised:
        read_table_file(path)

    (problem,) = raised.value.problems
    assert problem.row == row


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_a_parquet_timestamp_past_any_date_is_refused_not_wrapped_around(
    tmp_path: Path, unit: str
) -> None:
    # Given a Parquet activity moment some 586,000 years ahead: in microseconds it would
    # pass int64's range and, wrapped around, read as a plausible date in 2025
    directory = write_tiny_export(tmp_path / "export")
    activities = pd.read_csv(directory / "activities.csv")
    per_unit = {"s": 10**9, "ms": 10**6}[unit]
    moments = [pd.Timestamp(t).value // per_unit for t in activities["occurred_at"]]
    moments[1] = {"s": 18_448_492_809_709, "ms": 18_448_492_809_709_552}[unit]
    table = pa.table(
        {
            **{c: pa.array(activities[c].astype(str)) for c in ("activity_id", "lead_id")},
            "occurred_at": pa.array(moments, pa.timestamp(unit, "UTC")),
            "activity_type": pa.array(activities["activity_type"].astype(str)),
        }
    )
    pq.write_table(table, directory / "activities.parquet")
    (directory / "activities.csv").unlink()

    (problem,) = problems_of(directory)

    assert (problem.column, problem.row) == ("occurred_at", 2)
    assert problem.message == f"not an ISO 8601 timestamp {SPAN}"


@pytest.mark.parametrize(("separator", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_a_csv_written_with_another_separator_is_named_as_such(
    tmp_path: Path, separator: str, name: str
) -> None:
    # Given the leads file saved by a spreadsheet with another separator (a value with a
    # comma inside it too, which splits that row into more fields than the header has)
    directory = write_tiny_export(tmp_path / "export")
    leads = pd.read_csv(directory / "leads.csv", dtype=str, keep_default_na=False)
    leads.loc[0, "industry"] = "Software, SaaS"
    leads.to_csv(directory / "leads.csv", index=False, sep=separator)

    problems = problems_of(directory)

    # Then one problem names the file and the separator, not its columns one by one
    message = (
        f"the header reads as one column holding a {name}: the file looks {name}-separated, "
        "and the contract's CSV is comma-separated"
    )
    of_leads = [p for p in problems if Path(p.file).name == "leads.csv"]
    assert [(p.message, p.column, p.row) for p in of_leads] == [(message, None, None)]


def test_a_lenient_load_with_no_event_time_left_names_the_columns_and_the_way_out(
    tmp_path: Path,
) -> None:
    # Given an export whose every event time is garbled (a format changed upstream)
    garbled = {
        name: re.sub(r"\d{4}-\d\d-\d\dT[\d:]+(Z|\+\d\d:\d\d)", "garbled", text)
        for name, text in TINY_TABLES.items()
    }
    directory = write_tiny_export(tmp_path / "export", garbled)

    # When it is loaded leniently, every row set aside
    with pytest.raises(ContractError) as refused:
        load_export(directory, lenient=True)

    # Then the refusal names the event-time columns and the option that gives a snapshot
    (problem,) = refused.value.problems
    assert problem.file == "export"
    assert "leads.created_at" in problem.message
    assert "activities.occurred_at" in problem.message
    assert "--snapshot-at" in problem.message
