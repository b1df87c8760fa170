"""``srl score``: every open rejection scored and routed exactly as the shared scoring path does."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from typer.testing import CliRunner

from features.contract import PERSONAL_ID_RULE
from features.dataset import ExampleSet, build_scoring_set
from features.loading import Export, load_export
from features.output import OutputPathError
from features.predictor import ReconversionModel
from features.problems import ContractError
from features.timestamps import SPAN
from serving.batch import run_batch
from serving.batch_cli import register
from serving.batch_job import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, BatchSummary, micros
from serving.batch_output import output_schema
from serving.chunk_scoring import FAIL_CLOSED_TABLES
from serving.policy import load_policy
from serving.reasons import explain
from serving.routing import NO_DATE
from serving.scoring import Scored, score_features
from tests.clock import years_ahead
from tests.serving.batch_support import (
    SCORED_AT,
    break_latest_rows,
    copy_as_csv,
    edit_csv,
    numeric_id,
    read_output,
    request,
    score_command,
    with_keys_repeated_across_chunks,
    with_numeric_ids,
    with_set_aside_opportunities,
)
from tests.serving.conftest import TRAINED_AGE_DAYS
from tests.trained_store import trained_store


@pytest.fixture(scope="module")
def reference(small_export: Export, model: ReconversionModel) -> tuple[ExampleSet, Scored]:
    """The open rejections at the export's end, scored through ``score_features`` directly."""
    examples = build_scoring_set(small_export, model.config)
    as_of = np.full(len(examples), micros(small_export.snapshot_at.to_pydatetime()))
    return examples, score_features(model, examples.features, as_of, load_policy(), contact=None)


@pytest.fixture(scope="module")
def scored(
    small_export_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BatchSummary]:
    """One batch run over the small export (Parquet output)."""
    out = tmp_path_factory.mktemp("batch") / "scores.parquet"
    return out, run_batch(request(small_export_dir, out, model_dir))


def test_every_open_rejection_is_scored_and_routed_by_the_shared_path(
    scored: tuple[Path, BatchSummary], reference: tuple[ExampleSet, Scored]
) -> None:
    out, summary = scored
    examples, expected = reference

    frame = read_output(out)

    assert summary.exit_code == EXIT_OK
    assert frame["rejection_id"].tolist() == examples.keys["rejection_id"].tolist()
    assert frame["lead_id"].tolist() == examples.keys["lead_id"].tolist()
    np.testing.assert_array_equal(frame["probability"].to_numpy(), expected.probability)
    routes = expected.routes
    assert frame["tier"].tolist() == list(routes.tier)
    assert frame["program"].tolist() == list(routes.program)
    assert frame["suppressed"].tolist() == list(routes.suppressed)
    assert frame["beyond_trained_age"].tolist() == list(expected.beyond_trained_age)
    assert frame["priority"].tolist() == list(routes.priority)
    assert frame["re_entry_stage"].tolist() == list(routes.re_entry_stage)
    expected_days = [None if t == NO_DATE else t // 86_400_000_000 for t in routes.next_action_at]
    days = [
        None if d is None else (d - pd.Timestamp(0).date()).days for d in frame["next_action_date"]
    ]
    assert days == expected_days


def test_output_has_the_import_columns_and_one_stamp(
    scored: tuple[Path, BatchSummary], small_export: Export
) -> None:
    out, summary = scored

    table = pq.read_table(out)

    assert table.schema.remove_metadata() == output_schema(with_reasons=False)
    # the columns of earlier releases keep their positions: imports may map by position
    assert table.schema.names == [
        "lead_id",
        "rejection_id",
        "as_of",
        "probability",
        "tier",
        "program",
        "suppressed",
        "suppression_reason",
        "priority",
        "re_entry_stage",
        "next_action_date",
        "policy",
        "model_version",
        "scored_at",
        "beyond_trained_age",
    ]
    frame = table.to_pandas()
    assert set(frame["as_of"]) == {small_export.snapshot_at}
    assert set(frame["scored_at"]) == {pd.Timestamp(SCORED_AT, tz="UTC")}
    assert set(frame["model_version"]) == {summary.document["model"]["version"]}
    assert set(frame["policy"]) == {"default@v5"}
    assert not frame["rejection_id"].duplicated().any()


def test_rejections_older_than_any_trained_on_are_marked_extrapolations(
    scored: tuple[Path, BatchSummary], small_export: Export
) -> None:
    out, _ = scored

    frame = read_output(out)

    # Then exactly the rejections more than the model's oldest trained age before the
    # export's end are marked, and the export holds both kinds
    rejected_at = small_export.rejections.set_index("rejection_id")["rejected_at"]
    age = frame["as_of"] - frame["rejection_id"].map(rejected_at)
    older = (age > pd.Timedelta(days=TRAINED_AGE_DAYS)).tolist()
    assert frame["beyond_trained_age"].tolist() == older
    assert True in older
    assert False in older


def test_summary_is_written_beside_the_output_and_matches_it(
    scored: tuple[Path, BatchSummary],
) -> None:
    out, summary = scored
    frame = read_output(out)

    written = json.loads(out.with_name(out.name + ".summary.json").read_text())

    assert written == summary.document
    assert written["scored"]["rows"] == len(frame)
    assert written["scored"]["tiers"] == frame["tier"].value_counts().sort_index().to_dict()
    assert written["scored"]["programs"] == frame["program"].value_counts().sort_index().to_dict()
    assert written["scored"]["suppressed"] == int(frame["suppressed"].sum())
    assert written["scored"]["beyond_trained_age"] == int(frame["beyond_trained_age"].sum())
    assert written["rejected_rows"]["total"] == 0
    assert written["failures"] == []
    assert written["model"]["version"].startswith("local-")


def test_nothing_but_the_results_is_left_behind(scored: tuple[Path, BatchSummary]) -> None:
    out, _ = scored

    left = sorted(p.name for p in out.parent.iterdir())

    assert left == ["scores.parquet", "scores.parquet.summary.json"]


def test_same_arguments_give_the_same_bytes(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    first, _ = scored

    run_batch(request(small_export_dir, tmp_path / "again.parquet", model_dir))

    assert (tmp_path / "again.parquet").read_bytes() == first.read_bytes()


def test_csv_output_holds_the_same_rows(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    parquet = read_output(scored[0])

    run_batch(request(small_export_dir, tmp_path / "scores.csv", model_dir))
    csv = read_output(tmp_path / "scores.csv")

    assert list(csv.columns) == list(parquet.columns)
    assert csv["rejection_id"].tolist() == parquet["rejection_id"].tolist()
    np.testing.assert_array_equal(csv["probability"].astype(float), parquet["probability"])
    assert csv["suppressed"].tolist() == ["true" if s else "false" for s in parquet["suppressed"]]
    assert set(csv["scored_at"]) == {"2026-07-01T06:00:00.000000Z"}
    dates = [("" if d is None else d.isoformat()) for d in parquet["next_action_date"]]
    assert csv["next_action_date"].tolist() == dates


def test_numeric_lead_ids_score_as_their_text(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    # Given the export with lead ids as Parquet integers (leads) and floats (other tables)
    numeric = with_numeric_ids(small_export_dir, tmp_path / "numeric")

    # When it is scored
    summary = run_batch(request(numeric, tmp_path / "scores.parquet", model_dir))

    # Then every row finds its lead, as with text ids, and the ids read as integer text
    frame, expected = read_output(tmp_path / "scores.parquet"), read_output(scored[0])
    assert summary.exit_code == EXIT_OK
    assert frame["lead_id"].tolist() == [numeric_id(i) for i in expected["lead_id"]]
    pd.testing.assert_frame_equal(frame.drop(columns="lead_id"), expected.drop(columns="lead_id"))


@pytest.mark.slow
def test_chunking_and_workers_do_not_change_the_rows(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    out = tmp_path / "many.parquet"

    run_batch(request(small_export_dir, out, model_dir, chunk_leads=300, workers=2))

    pd.testing.assert_frame_equal(read_output(out), read_output(scored[0]))


def test_top_reasons_are_the_apis_reasons(
    small_export_dir: Path,
    model_dir: Path,
    model: ReconversionModel,
    reference: tuple[ExampleSet, Scored],
    tmp_path: Path,
) -> None:
    examples, expected = reference
    out = tmp_path / "reasons.parquet"

    run_batch(request(small_export_dir, out, model_dir, reasons="top"))
    frame = read_output(out)

    rows = np.arange(0, len(examples), 97)
    subset = examples.take(rows)
    explained = explain(model, subset.features, expected.matrix[rows], 3)
    written = [json.loads(frame["reasons"].iloc[r]) for r in rows]
    assert written == [[reason.to_dict() for reason in row] for row in explained]
    assert all(1 <= len(r) <= 3 for r in written)


@pytest.fixture(scope="module")
def corrupted(small_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CSV copy of the small export with bad rows, and what was broken (keys by problem)."""
    folder = copy_as_csv(small_export_dir, tmp_path_factory.mktemp("corrupt") / "export")
    break_latest_rows(folder)
    broken = {
        "bad_date": edit_csv(folder, "rejections", 5, "rejected_at", "31/02/2026 25:00"),
        "bad_reason": edit_csv(folder, "rejections", 40, "reason_code", "abducted_by_aliens"),
        "bad_number": edit_csv(folder, "leads", 12, "employee_count", "twelve"),
        "orphan": edit_csv(folder, "activities", 3, "lead_id", "L-NOT-A-LEAD"),
        "future": edit_csv(folder, "activities", 9, "occurred_at", years_ahead()),
        # a mistyped date in the past: months after the export's end (2026-06-30)
        "stray": edit_csv(folder, "activities", 15, "occurred_at", "2026-10-15T09:00:00Z"),
        "bad_consent": _lead_of_row(folder, "consent", 7),
    }
    edit_csv(folder, "consent", 7, "status", "opted_out")
    return {"dir": str(folder), **broken}


@pytest.fixture(scope="module")
def corrupted_run(
    corrupted: dict[str, str], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BatchSummary]:
    """The batch job over the corrupted export."""
    out = tmp_path_factory.mktemp("corrupt-out") / "scores.parquet"
    return out, run_batch(request(Path(corrupted["dir"]), out, model_dir))


def test_bad_rows_land_in_the_rejects_file_with_their_reason(
    corrupted: dict[str, str], corrupted_run: tuple[Path, BatchSummary]
) -> None:
    out, summary = corrupted_run

    rejects = pd.read_csv(
        out.with_name(out.name + ".rejects.csv"), dtype=str, keep_default_na=False
    )

    assert summary.exit_code == EXIT_REJECTED
    by_key = rejects.set_index(["table", "key"])["reason"]
    assert by_key["rejections", corrupted["bad_date"]] == (
        f"rejected_at: not an ISO 8601 timestamp {SPAN}"
    )
    assert by_key["rejections", corrupted["bad_reason"]].startswith("reason_code: not one of")
    assert by_key["leads", corrupted["bad_number"]] == "employee_count: not a whole number"
    assert by_key["activities", corrupted["orphan"]] == (
        "lead_id: points to a lead_id that is not in leads"
    )
    assert by_key["activities", corrupted["future"]].startswith("occurred_at: dated in the future")
    assert by_key["activities", corrupted["stray"]].startswith(
        "occurred_at: dated after a gap of 107 days with no event of any table"
    )
    rejection_ids = rejects[rejects["table"] == "rejections"].set_index("key")["rejection_id"]
    assert rejection_ids[corrupted["bad_date"]] == corrupted["bad_date"]
    assert list(rejects.columns) == ["table", "row", "key", "lead_id", "rejection_id", "reason"]
    assert summary.document["rejected_rows"]["total"] == len(rejects) >= 5


def test_rejects_are_exactly_the_rows_the_loader_sets_aside(
    corrupted: dict[str, str], corrupted_run: tuple[Path, BatchSummary]
) -> None:
    out, _ = corrupted_run
    loaded = load_export(corrupted["dir"], lenient=True)

    rejects = pd.read_csv(
        out.with_name(out.name + ".rejects.csv"), dtype=str, keep_default_na=False
    )

    written = sorted(
        zip(
            rejects["table"],
            rejects["row"].astype(int),
            rejects["key"],
            rejects["reason"],
            strict=True,
        )
    )
    expected = sorted((r.table, r.row, r.key or "", r.reason) for r in loaded.rejected_rows)
    assert written == expected


def test_an_export_end_before_mistyped_dates_is_the_loaders_when_its_last_row_is_set_aside(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a CSV export whose last regular event is an activity of no lead (set aside when
    # rows are checked against their lead), and an activity dated months later (a typo)
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    edit_csv(folder, "activities", 20, "lead_id", "L-NOBODY")
    edit_csv(folder, "activities", 20, "occurred_at", "2026-06-30T23:59:00Z")
    edit_csv(folder, "activities", 21, "occurred_at", "2026-10-15T09:00:00Z")
    out = tmp_path / "scores.parquet"

    # When the job scores it without --as-of
    summary = run_batch(request(folder, out, model_dir))

    # Then it sets aside what the lenient loader sets aside and scores at its snapshot
    loaded = load_export(folder, lenient=True)
    rejects = pd.read_csv(
        out.with_name(out.name + ".rejects.csv"), dtype=str, keep_default_na=False
    )
    written = sorted(
        zip(rejects["table"], rejects["row"].astype(int), rejects["reason"], strict=True)
    )
    assert written == sorted((r.table, r.row, r.reason) for r in loaded.rejected_rows)
    assert len(written) == 2
    assert summary.document["as_of"] == loaded.snapshot_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert loaded.snapshot_at < pd.Timestamp("2026-06-30T23:59:00Z")


def test_the_rest_is_scored_at_the_end_of_the_valid_rows(
    corrupted: dict[str, str],
    corrupted_run: tuple[Path, BatchSummary],
    model: ReconversionModel,
    small_export: Export,
) -> None:
    out, summary = corrupted_run
    loaded = load_export(corrupted["dir"], lenient=True)
    examples = build_scoring_set(loaded, model.config)
    # A lead with a set-aside consent, rejection or opportunity row is not scored (fail closed)
    unverified = {
        _lead_of_row(Path(corrupted["dir"]), rejected.table, rejected.row - 1)
        for rejected in loaded.rejected_rows
        if rejected.table in FAIL_CLOSED_TABLES
    }
    examples = examples.take(~examples.keys["lead_id"].isin(unverified).to_numpy())

    frame = read_output(out)

    assert loaded.snapshot_at < small_export.snapshot_at
    assert summary.document["as_of"] == loaded.snapshot_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert frame["rejection_id"].tolist() == examples.keys["rejection_id"].tolist()
    np.testing.assert_array_equal(frame["probability"], model.predict_set(examples))
    assert corrupted["bad_date"] not in set(frame["rejection_id"])
    assert corrupted["bad_consent"] in unverified
    assert not set(frame["lead_id"]) & unverified


def _lead_of_row(folder: Path, table: str, row: int) -> str:
    return str(pd.read_csv(folder / f"{table}.csv", dtype=str).at[row, "lead_id"])


def test_a_set_aside_opportunity_leaves_its_lead_unscored(
    small_export_dir: Path,
    model_dir: Path,
    scored: tuple[Path, BatchSummary],
    tmp_path: Path,
) -> None:
    # Given three leads whose latest rejection is closed only by an opportunity created after
    # it, and those opportunities set aside (an amount of '12,5k'; a key repeated by a lead
    # in a later chunk, which routes that row to the chunk of the key's first lead)
    chunk_leads = 700
    folder = tmp_path / "export"
    leads = with_set_aside_opportunities(small_export_dir, folder, chunk_leads)
    clean = read_output(scored[0])
    out = tmp_path / "scores.parquet"

    summary = run_batch(request(folder, out, model_dir, chunk_leads=chunk_leads))

    # Then whether their rejection is open is unknown: none is scored (fail closed) ...
    frame = read_output(out)
    assert not set(leads) & set(clean["lead_id"])
    assert not set(leads) & set(frame["lead_id"])
    assert frame["rejection_id"].tolist() == clean["rejection_id"].tolist()
    # ... each set-aside row is in the rejects file with its reason, and they are counted
    rejects = pd.read_csv(
        out.with_name(out.name + ".rejects.csv"), dtype=str, keep_default_na=False
    )
    assert set(rejects["lead_id"]) == set(leads)
    assert set(rejects["table"]) == {"opportunities"}
    assert set(rejects["rejection_id"]) == {""}
    assert rejects["reason"].str.startswith(("amount:", "opportunity_id:")).all()
    assert summary.exit_code == EXIT_REJECTED
    assert summary.document["rejected_rows"]["by_table"] == {"opportunities": 3}
    assert summary.document["withheld"] == len(leads)
    assert scored[1].document["withheld"] == 0


def test_a_set_aside_activity_only_loses_its_event(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    # Given an activity of a scored lead that is set aside
    clean = read_output(scored[0])
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    activities = pd.read_csv(folder / "activities.csv", dtype=str)
    row = int(np.flatnonzero(activities["lead_id"].isin(set(clean["lead_id"])))[0])
    lead = activities.at[row, "lead_id"]
    edit_csv(folder, "activities", row, "occurred_at", "not a time")
    out = tmp_path / "scores.parquet"

    summary = run_batch(request(folder, out, model_dir))

    # Then the lead is still scored: an activity never decides whether a rejection is open
    assert lead in set(read_output(out)["lead_id"])
    assert read_output(out)["rejection_id"].tolist() == clean["rejection_id"].tolist()
    assert summary.document["rejected_rows"]["by_table"] == {"activities": 1}
    assert summary.document["withheld"] == 0


def test_rows_moved_by_a_repeated_key_are_reported_as_in_one_chunk(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    # Given rows of later leads repeating a key of the first chunk, so that they are set
    # aside in the first chunk, away from their own lead's
    clean = read_output(scored[0])
    folder = tmp_path / "export"
    lead = with_keys_repeated_across_chunks(
        small_export_dir, folder, chunk_leads=700, scored=set(clean["lead_id"])
    )

    # When the job runs in chunks of 700 leads and in one chunk
    runs = {}
    for chunk_leads in (700, 10_000):
        out = tmp_path / f"scores-{chunk_leads}.parquet"
        summary = run_batch(request(folder, out, model_dir, chunk_leads=chunk_leads))
        rejects_path = out.with_name(out.name + ".rejects.csv")
        runs[chunk_leads] = (summary, read_output(out), rejects_path.read_text(encoding="utf-8"))

    # Then the rejects file, the output and the counts do not depend on the chunks
    (small, small_frame, small_rejects), (one, one_frame, one_rejects) = runs.values()
    assert small_rejects == one_rejects
    pd.testing.assert_frame_equal(small_frame, one_frame)
    assert small.document["withheld"] == one.document["withheld"] >= 1
    assert small.document["rejected_rows"] == one.document["rejected_rows"]
    # and each row names what it should: a real lead, with its open rejection if scored
    rejects = pd.read_csv(io.StringIO(small_rejects), dtype=str, keep_default_na=False)
    moved = rejects[rejects["reason"] == "activity_id: duplicate primary key"]
    opened = dict(zip(clean["lead_id"], clean["rejection_id"], strict=True))
    shown = dict(zip(moved["lead_id"], moved["rejection_id"], strict=True))
    assert shown[lead["scored"]] == opened[lead["scored"]]
    assert shown[lead["unscored"]] == ""
    assert lead["orphan"] not in shown
    assert lead["stranger"] not in small_rejects
    assert moved["lead_id"].tolist().count("") == 1  # the orphan's row
    # (the stranger's row is set aside first for its e-mail address, shown nowhere)
    at_sign = rejects[rejects["reason"] == f"lead_id: {PERSONAL_ID_RULE}"]
    assert at_sign[["table", "lead_id", "rejection_id"]].values.tolist() == [["activities", "", ""]]
    withheld = rejects[rejects["lead_id"] == lead["withheld"]]
    assert sorted(withheld["table"]) == ["activities", "opportunities"]
    assert set(withheld["rejection_id"]) == {""}
    assert lead["withheld"] not in set(small_frame["lead_id"])


def test_a_planned_close_date_does_not_move_the_default_as_of(
    small_export_dir: Path, model_dir: Path, small_export: Export, tmp_path: Path
) -> None:
    # Given an export where one opportunity closes two years after the data ends
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    edit_csv(folder, "opportunities", 0, "closed_at", "2031-01-01T00:00:00Z")
    out = tmp_path / "scores.parquet"

    summary = run_batch(request(folder, out, model_dir))

    # Then the rejections are scored at the export's last event, as the loader's snapshot
    assert summary.document["as_of"] == small_export.snapshot_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(read_output(out)["as_of"]) == {small_export.snapshot_at}


def test_a_row_dated_in_the_future_is_set_aside_without_moving_the_default_as_of(
    small_export_dir: Path,
    model_dir: Path,
    small_export: Export,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an export where one activity's year is mistyped, ten years ahead
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    future = edit_csv(folder, "activities", 0, "occurred_at", years_ahead())
    out = tmp_path / "scores.parquet"

    with caplog.at_level(logging.INFO):
        summary = run_batch(request(folder, out, model_dir))

    # Then the row is set aside and the rejections are scored at the export's real end in
    # one pass: the partition never took the future row for the end, so nothing is re-scored
    rejects = pd.read_csv(out.with_name(out.name + ".rejects.csv"), dtype=str)
    assert rejects[["table", "key"]].values.tolist() == [["activities", future]]
    assert summary.document["as_of"] == small_export.snapshot_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "export_end_moved" not in caplog.text


def test_a_missing_column_is_a_clear_error_and_writes_nothing(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    frame = pd.read_csv(folder / "rejections.csv", dtype=str)
    frame.drop(columns=["reason_code"]).to_csv(folder / "rejections.csv", index=False)
    out = tmp_path / "scores.parquet"

    with pytest.raises(ContractError) as raised:
        run_batch(request(folder, out, model_dir))

    problem = raised.value.problems[0]
    assert (Path(problem.file).name, problem.column) == ("rejections.csv", "reason_code")
    assert not out.exists()


def test_a_csv_row_with_more_fields_than_its_header_stops_the_job_as_the_loader_does(
    small_export_dir: Path, model_dir: Path, scored: tuple[Path, BatchSummary], tmp_path: Path
) -> None:
    # Given a stray comma: one activities row has a fifth field
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    with (folder / "activities.csv").open("a", encoding="utf-8") as handle:
        handle.write("A9999999,L0000001,2022-07-10T17:41:56Z,web_visit,extra\n")
    lines = len((folder / "activities.csv").read_text(encoding="utf-8").splitlines())
    out = tmp_path / "scores.parquet"

    with pytest.raises(ContractError) as raised:
        run_batch(request(folder, out, model_dir))
    with pytest.raises(ContractError) as loaded:
        load_export(folder, lenient=True)

    # Then both name the file and the row, and nothing is written
    for problem in (raised.value.problems[0], loaded.value.problems[0]):
        assert (Path(problem.file).name, problem.row) == ("activities.csv", lines - 1)
        assert problem.message.startswith("has 5 fields where the header has 4")
    assert not out.exists()
    # and the failed summary keeps the model the job had resolved (it stopped after that)
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "failed"
    assert summary["model"] == scored[1].document["model"] | {"uri": str(model_dir)}
    assert summary["model"]["version"] is not None


def test_a_csv_that_is_not_utf8_stops_the_job_naming_its_line_as_the_loader_does(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a Latin-1 byte on the last line of the activities, far past the first buffer
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    with (folder / "activities.csv").open("ab") as handle:
        handle.write(b"A9999999,L0000001,2022-07-10T17:41:56Z,caf\xe9_visit\n")
    lines = len((folder / "activities.csv").read_bytes().splitlines())
    out = tmp_path / "scores.parquet"

    with pytest.raises(ContractError) as raised:
        run_batch(request(folder, out, model_dir))
    with pytest.raises(ContractError) as loaded:
        load_export(folder, lenient=True)

    # Then both name the file, the line and the character, and nothing is written
    assert raised.value.problems == loaded.value.problems
    (problem,) = raised.value.problems
    assert Path(problem.file).name == "activities.csv"
    assert f"line {lines}, character 43 is the byte 0xE9" in problem.message
    assert not out.exists()


def test_a_foreign_directory_in_the_work_path_is_never_deleted(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    foreign = out.with_name(out.name + ".work")
    foreign.mkdir()
    (foreign / "holiday-photos.jpg").write_bytes(b"precious")

    with pytest.raises(OutputPathError):
        run_batch(request(small_export_dir, out, model_dir))

    assert (foreign / "holiday-photos.jpg").read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["hidden entries only", "a file"])
def test_a_work_path_that_is_not_ours_is_refused_clearly(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "scores.parquet"
    foreign = out.with_name(out.name + ".work")
    if kind == "a file":
        foreign.write_bytes(b"notes")
    else:
        (foreign / ".git").mkdir(parents=True)
        (foreign / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")

    with pytest.raises(OutputPathError, match="is not a batch work directory"):
        run_batch(request(small_export_dir, out, model_dir))

    assert foreign.exists()
    assert kind == "a file" or (foreign / ".git" / "HEAD").exists()


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """The ``srl`` application (only the batch command)."""

    register(app)
    return app


def test_cli_exit_code_tells_the_scheduler_about_rejected_rows(
    corrupted: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    arguments = ["score", "--data", corrupted["dir"], "--out", str(out), "--model", str(model_dir)]

    result = CliRunner().invoke(_cli(), [*arguments, "--chunk-leads", "1000", "--workers", "1"])

    assert result.exit_code == EXIT_REJECTED, result.output
    assert "status: rejected_rows (exit code 3)" in result.output
    assert "rejected input rows:" in result.output
    assert out.exists()


def test_cli_prints_the_withheld_count_of_the_summary(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export with leads withheld by their set-aside opportunities
    with_set_aside_opportunities(small_export_dir, tmp_path / "export", 700)
    out = tmp_path / "scores.parquet"
    arguments = ["score", "--data", str(tmp_path / "export"), "--out", str(out)]

    result = CliRunner().invoke(
        _cli(), [*arguments, "--model", str(model_dir), "--workers", "1", "--chunk-leads", "700"]
    )

    # Then the printed summary says so, as the summary file does
    assert result.exit_code == EXIT_REJECTED, result.output
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text(encoding="utf-8"))
    assert summary["withheld"] > 0
    assert f"withheld: {summary['withheld']} open rejection(s)" in result.output


def test_cli_rejects_an_unknown_engine(small_export_dir: Path, tmp_path: Path) -> None:
    arguments = ["score", "--data", str(small_export_dir), "--out", str(tmp_path / "x.parquet")]

    result = CliRunner().invoke(_cli(), [*arguments, "--engine", "mainframe"])

    assert result.exit_code == 2
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    ("policy_text", "message"),
    [
        ("version: [1\n", "could not be read"),
        ("version: 1\nname: broken\ntiers: []\n", "is invalid: tiers"),
        ("intent_3Od", "rebound.recent_intent_feature 'intent_3Od' is not a count of activities"),
    ],
)
def test_cli_names_a_policy_that_cannot_serve_and_writes_nothing(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, policy_text: str, message: str
) -> None:
    policy = tmp_path / "policy.yaml"
    if policy_text == "intent_3Od":
        document = load_policy().model_dump(mode="json")
        document["rebound"]["recent_intent_feature"] = "intent_3Od"
        policy_text = yaml.safe_dump(document)
    policy.write_text(policy_text, encoding="utf-8")
    out = tmp_path / "scores.parquet"
    arguments = ["score", "--data", str(small_export_dir), "--out", str(out)]

    result = CliRunner().invoke(
        _cli(), [*arguments, "--model", str(model_dir), "--policy", str(policy)]
    )

    assert result.exit_code == EXIT_FAILED, result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()
    # and the failed summary names the model's version once it was loaded (the policy was
    # read, then found to use a feature the model does not compute)
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text(encoding="utf-8"))
    model_loaded = "recent_intent_feature" in message
    assert (summary["model"]["version"] is not None) is model_loaded


@pytest.mark.slow
def test_a_registry_model_is_loaded_without_progress_bars_in_the_log(
    small_export_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given a model registered in a real MLflow store, and nothing said about progress bars
    store = trained_store(small_export_dir, tmp_path_factory)
    out = tmp_path / "scores.parquet"
    command = score_command(small_export_dir, out, tmp_path, "--workers", "1")
    command[command.index("--model") + 1] = f"models:/{store.name}@champion"
    environment = {**os.environ, **store.environment(), "SRL_LOG_LEVEL": "INFO"}
    environment.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)

    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)

    # Then the job downloads and scores with the champion, and its log has no progress bar
    assert result.returncode in (EXIT_OK, EXIT_REJECTED), result.stderr
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text(encoding="utf-8"))
    assert summary["model"]["version"] == store.champion
    assert "Downloading artifacts" not in result.stderr + result.stdout
