"""``srl score`` refuses the exports ``srl validate`` refuses for their shape, and shows no cell.

A required table without rows, a table under a name the job does not read, or a second
copy of a table, stops the job before any work with the loader's own message, whatever
the engine; a shifted CSV row reaches neither the rejects file nor the summary with its
values. The Spark engine refuses an export path its reader would take as a glob pattern.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from features.loading import SPACED_LEAD_ID, load_export
from features.problems import ContractError, Problem
from features.row_notes import merged_notes
from serving.batch import check_data, run_batch
from serving.batch_job import EXIT_FAILED, EXIT_REJECTED, EXIT_USAGE, BatchError, summary_path
from serving.checkpoints import WorkDirectory
from serving.spark_parquet import GlobPathError, read_parquet
from srl.cli import app as srl_app
from tests.serving.batch_support import (
    STRANGER,
    DirectoryAppearsAtOutput,
    closing_opportunities,
    contacted_leads,
    copy_as_csv,
    copy_export,
    read_output,
    request,
    run_score,
    score_command,
    with_spaced_consent,
)

EMAIL = "jane.doe@example.com"


@pytest.fixture(
    params=["local", pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])]
)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine, the Spark one run for real on the module's ``local[2]`` session."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    return str(request.param)


def _score_in_process(folder: Path, out: Path, model_dir: Path, engine: str) -> Result:
    """``srl score`` run in this process (the Spark engine takes the active session)."""
    options = ["--data", str(folder), "--out", str(out), "--model", str(model_dir)]
    return CliRunner().invoke(srl_app, ["score", *options, "--engine", engine, "--workers", "1"])


def _without_rows(source: Path, target: Path, table: str, suffix: str) -> Path:
    """A copy of the export whose ``table`` file keeps its header (or schema) but no row."""
    if suffix == ".csv":
        folder = copy_as_csv(source, target)
        path = folder / f"{table}.csv"
        path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
        return folder
    folder = copy_export(source, target)
    path = folder / f"{table}.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    return folder


def _refused_as_the_loader_refuses(folder: Path, out: Path, model_dir: Path) -> Problem:
    """The one problem for which the batch job and ``load_export`` both refuse ``folder``."""
    with pytest.raises(ContractError) as raised:
        run_batch(request(folder, out, model_dir))
    with pytest.raises(ContractError) as loaded:
        load_export(folder)
    assert raised.value.problems == loaded.value.problems
    (problem,) = raised.value.problems
    return problem


@pytest.mark.parametrize(
    ("table", "suffix"),
    [("activities", ".csv"), ("rejections", ".csv"), ("activities", ".parquet")],
)
def test_a_required_table_without_rows_stops_the_job_as_the_loader_does(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, table: str, suffix: str
) -> None:
    # Given an export whose activities (or rejections) file has a header but no row
    folder = _without_rows(small_export_dir, tmp_path / "export", table, suffix)
    out = tmp_path / "scores.parquet"

    problem = _refused_as_the_loader_refuses(folder, out, model_dir)

    # Then the job refuses it with the loader's problem, and writes nothing
    assert (problem.file, problem.message) == (
        str(folder / f"{table}{suffix}"),
        f"required table {table!r} has no rows",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("table", "text", "row", "message"),
    [
        ("consent", "", None, "is empty: not even a header row"),
        ("activities", "\n\n", None, "is empty: not even a header row"),
        (
            "activities",
            'activity_id,lead_id,occurred_at,activity_type\nA1,L0000001,"2024-01-01,web_visit\n'
            "A2,L0000001,2024-01-02,web_visit\n",
            1,
            "opens a quote that is never closed: the rest of the file would be one value",
        ),
    ],
    ids=["empty-optional-file", "blank-lines-only", "quote-never-closed"],
)
def test_an_unreadable_csv_stops_the_job_naming_why_as_the_loader_does(
    small_export_dir: Path,
    model_dir: Path,
    tmp_path: Path,
    table: str,
    text: str,
    row: int | None,
    message: str,
) -> None:
    # Given an export with one CSV file that cannot be read as a table
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    (folder / f"{table}.csv").write_text(text, encoding="utf-8")
    out = tmp_path / "scores.parquet"

    problem = _refused_as_the_loader_refuses(folder, out, model_dir)

    # Then both say why in the contract's words, naming the row where there is one
    assert (problem.file, problem.row, problem.message) == (
        str(folder / f"{table}.csv"),
        row,
        message,
    )
    assert not out.exists()


def test_srl_score_exits_1_on_a_header_only_activities_file(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = _without_rows(small_export_dir, tmp_path / "export", "activities", ".csv")
    out = tmp_path / "scores.parquet"

    result = run_score(score_command(folder, out, model_dir, "--workers", "1"))

    assert result.returncode == EXIT_FAILED, result.stderr
    assert "activities.csv: required table 'activities' has no rows" in result.stderr
    assert not out.exists()


def _rename_consent(folder: Path, name: str) -> Path:
    consent = folder / "consent.csv"
    target = folder / name
    if name.endswith(".gz"):
        target.write_bytes(gzip.compress(consent.read_bytes()))
        consent.unlink()
    else:
        consent.rename(target)
    return target


@pytest.mark.parametrize("name", ["consent.CSV", "consent.csv.gz"])
def test_a_consent_file_under_a_name_not_read_stops_the_job(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, name: str
) -> None:
    # Given the consent table (the unsubscribes) under a name the job does not read
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    target = _rename_consent(folder, name)
    out = tmp_path / "scores.parquet"

    problem = _refused_as_the_loader_refuses(folder, out, model_dir)

    # Then the job refuses it as the loader does, rather than score with no consent at all
    assert problem.file == str(target)
    assert "only a file named exactly consent.parquet or consent.csv" in problem.message
    assert not out.exists()


def test_srl_score_exits_1_on_a_consent_file_with_an_upper_case_suffix(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    _rename_consent(folder, "consent.CSV")
    out = tmp_path / "scores.parquet"

    result = run_score(score_command(folder, out, model_dir, "--workers", "1"))

    assert result.returncode == EXIT_FAILED, result.stderr
    assert "consent.CSV: looks like table 'consent'" in result.stderr
    assert not out.exists()


def _shift_rows(folder: Path) -> None:
    """Shift the first leads row (an e-mail address lands in product_fit) and the first
    activities row (an e-mail address in an extra column lands in activity_type), as a
    field missing from each row does."""
    leads = pd.read_csv(folder / "leads.csv", dtype=str, keep_default_na=False)
    fit = list(leads.columns).index("product_fit")
    row = [*leads.iloc[0]]
    row[fit + 1] = EMAIL  # the lead's e-mail address, after product_fit
    del row[fit - 1]  # job_level's field is missing: the values after it move left
    _write_with_first_row(folder / "leads.csv", leads, row)
    activities = pd.read_csv(folder / "activities.csv", dtype=str, keep_default_na=False)
    activities["contact_email"] = "someone@example.com"
    row = [*activities.iloc[0]]
    row[-1] = EMAIL
    del row[-2]  # activity_type's field is missing
    _write_with_first_row(folder / "activities.csv", activities, row)


def _write_with_first_row(path: Path, frame: pd.DataFrame, first: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerow(first)
        writer.writerows(frame.iloc[1:].itertuples(index=False))


def test_shifted_rows_leave_no_cell_in_the_rejects_file_or_the_summary(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a CSV export where a leads row and an activities row are shifted
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    _shift_rows(folder)
    out = tmp_path / "scores.parquet"
    request_ = request(folder, out, model_dir)

    summary = run_batch(request_)

    # Then the lead is set aside with a reason naming the column, and no file shows a cell
    assert summary.exit_code == EXIT_REJECTED
    rejects = request_.rejects_path.read_text(encoding="utf-8")
    assert "\nleads,1," in rejects
    written = [rejects, json.dumps(summary.document), request_.summary_path.read_text("utf-8")]
    assert any("unknown activity_type" in w for w in summary.document["warnings"])
    assert not [text for text in written if EMAIL in text]


@pytest.mark.spark
@pytest.mark.slow
def test_the_spark_engine_refuses_a_table_under_a_name_not_read(
    spark: Any,
    small_export_dir: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    folder = copy_export(small_export_dir, tmp_path / "export")
    (folder / "consent.parquet").rename(folder / "Consent.parquet")
    out = tmp_path / "scores.parquet"

    with pytest.raises(ContractError) as raised:
        run_batch(request(folder, out, model_dir, engine="spark"), spark=spark)

    (problem,) = raised.value.problems
    assert problem.file == str(folder / "Consent.parquet")
    assert "only consent.parquet (a file or a dataset directory) or a consent/ dataset" in (
        problem.message
    )
    assert not out.exists()


@pytest.mark.spark
@pytest.mark.slow
def test_the_spark_engine_refuses_a_required_table_without_rows(
    spark: Any,
    small_export_dir: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    folder = _without_rows(small_export_dir, tmp_path / "export", "activities", ".parquet")
    out = tmp_path / "scores.parquet"

    with pytest.raises(ContractError) as raised:
        run_batch(request(folder, out, model_dir, engine="spark"), spark=spark)

    (problem,) = raised.value.problems
    assert (problem.file, problem.message) == (
        str(folder / "activities.parquet"),
        "required table 'activities' has no rows",
    )
    assert not out.exists()


def test_a_compressed_copy_beside_the_consent_file_is_a_second_copy(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given consent.csv and consent.csv.gz beside it
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    copy = folder / "consent.csv.gz"
    copy.write_bytes(gzip.compress((folder / "consent.csv").read_bytes()))

    problem = _refused_as_the_loader_refuses(folder, tmp_path / "scores.parquet", model_dir)

    # Then the job says what is true: consent.csv is read, the copy is one file too many
    assert problem.file == str(copy)
    assert problem.message == "a second file for table consent beside consent.csv; keep one"


def test_an_absent_consent_table_fails_the_job_unless_it_is_allowed(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given the consent table under a name no reader takes
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    (folder / "consent.csv").rename(folder / "consent (1).csv")
    out = tmp_path / "scores.parquet"

    # Then the job fails (consent is optional, but without it no lead has opted out),
    # saying how to accept it, and publishes nothing
    with pytest.raises(BatchError) as refused:
        run_batch(request(folder, out, model_dir))
    (failure,) = refused.value.summary.document["failures"]
    assert failure["error"] == "InputRefused"
    assert failure["message"].startswith("the consent table is absent or empty")
    assert "--allow-missing consent" in failure["message"]
    assert "not read: consent (1).csv" in failure["message"]  # the likelier cause, first
    assert refused.value.summary.exit_code == EXIT_FAILED
    assert not out.exists()

    # And allowed, the rerun publishes and says so, naming the file not read
    summary = run_batch(request(folder, out, model_dir, allow_missing=frozenset({"consent"})))
    assert out.exists()
    (warning,) = [w for w in summary.document["warnings"] if w.startswith("no consent table")]
    assert "every lead counts as subscribed" in warning
    assert "not read: consent (1).csv" in warning


def test_a_key_at_fault_is_not_copied_into_the_rejects_file(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an activity whose activity_id is longer than any id (a shifted row's text)
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    path = folder / "activities.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "activity_id"] = EMAIL * 20
    frame.to_csv(path, index=False)
    out = tmp_path / "scores.parquet"

    summary = run_batch(request(folder, out, model_dir))

    # Then its row is rejected without its key
    assert summary.exit_code == EXIT_REJECTED
    rejects_path = out.with_name(out.name + ".rejects.csv")
    rejects = pd.read_csv(rejects_path, dtype=str, keep_default_na=False)
    row = rejects[rejects["reason"].str.startswith("activity_id:")]
    assert row["key"].tolist() == [""]
    assert EMAIL not in out.with_name(out.name + ".rejects.csv").read_text(encoding="utf-8")


def _with_email_lead_ids(source: Path, target: Path) -> Path:
    """A CSV copy of the export whose first activity and consent rows have an e-mail
    address for their lead_id (a shifted row)."""
    folder = copy_as_csv(source, target)
    for table in ("activities", "consent"):
        path = folder / f"{table}.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.loc[0, "lead_id"] = EMAIL
        frame.to_csv(path, index=False)
    return folder


def test_a_lead_id_that_names_no_lead_is_not_copied_into_the_rejects_file(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an activity and a consent row whose lead_id is an e-mail address (a shifted row)
    folder = _with_email_lead_ids(small_export_dir, tmp_path / "export")
    out = tmp_path / "scores.parquet"

    # (a consent row naming no lead refuses the job unless accepted: serving.batch_guard)
    summary = run_batch(request(folder, out, model_dir, allow_unmatched=frozenset({"consent"})))

    # Then both rows are rejected for the unknown lead, without the value (the activity
    # with its key; consent rows have none)
    assert summary.exit_code == EXIT_REJECTED
    rejects_path = out.with_name(out.name + ".rejects.csv")
    rejects = pd.read_csv(rejects_path, dtype=str, keep_default_na=False)
    unknown = rejects[rejects["reason"].str.startswith("lead_id:")]
    assert sorted(unknown["table"]) == ["activities", "consent"]
    assert unknown["lead_id"].tolist() == ["", ""]
    assert unknown.set_index("table").at["activities", "key"] != ""
    assert EMAIL not in rejects_path.read_text(encoding="utf-8")
    # and the other rows still name their (real) lead
    assert (rejects.drop(unknown.index)["lead_id"] != "").all()


def test_a_lead_id_that_names_no_lead_is_not_kept_in_the_checkpoints(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given the same rows, and a run that fails once every chunk is checkpointed (its
    # output path becomes a directory), so that its work directory stays for a rerun
    folder = _with_email_lead_ids(small_export_dir, tmp_path / "export")
    out = tmp_path / "out" / "scores.parquet"

    with pytest.raises(BatchError):
        run_batch(request(folder, out, model_dir), progress=DirectoryAppearsAtOutput(out))

    # Then the checkpoints (each chunk's scored and rejected rows) hold no such value
    work = WorkDirectory.beside(out).path
    assert work.stat().st_mode & 0o777 == 0o700  # and only their owner can read them
    parts = sorted(work.glob("parts-*/*.arrow"))
    assert any(p.name.startswith("rejects-") for p in parts)
    assert not [p.name for p in parts if EMAIL.encode() in p.read_bytes()]


def test_a_file_given_as_the_export_is_named_a_file_as_the_loader_names_it(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    leads = copy_as_csv(small_export_dir, tmp_path / "export") / "leads.csv"
    out = tmp_path / "scores.parquet"

    problem = _refused_as_the_loader_refuses(leads, out, model_dir)

    assert (problem.file, problem.message) == (
        str(leads),
        "is a file, not an export directory (pass the directory that holds the tables)",
    )
    assert not out.exists()


def test_a_fail_closed_row_with_a_spaced_lead_id_withholds_its_lead_however_split(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given leads routed to a contact program with an opt-out whose lead_id is written
    # slightly off (``SPACINGS``), and a lead whose only closing opportunity has a stray space
    leads, withheld_before = contacted_leads(small_export_dir, model_dir, tmp_path)
    folder = tmp_path / "export"
    written = with_spaced_consent(small_export_dir, folder, leads)
    closing = closing_opportunities(small_export_dir).iloc[0]
    opportunities = pd.read_parquet(folder / "opportunities.parquet")
    mine = opportunities["opportunity_id"] == closing["opportunity_id"]
    opportunities.loc[mine, "lead_id"] = f"{closing['lead_id']} "
    opportunities.to_parquet(folder / "opportunities.parquet", index=False)
    withheld = [*leads, str(closing["lead_id"])]

    # When it is scored in chunks of 700 leads and in one chunk (the stranger's opt-out,
    # naming no lead, accepted: serving.batch_guard)
    accepted = frozenset({"consent"})
    runs = {
        size: run_batch(
            request(
                folder,
                tmp_path / f"{size}.parquet",
                model_dir,
                chunk_leads=size,
                allow_unmatched=accepted,
            )
        )
        for size in (700, 100_000)
    }

    # Then those leads are withheld, their rows named as written, the stranger's not named
    out = tmp_path / "700.parquet"
    rejects_path = out.with_name(out.name + ".rejects.csv")
    rejects = pd.read_csv(rejects_path, dtype=str, keep_default_na=False)
    assert not set(withheld) & set(read_output(out)["lead_id"])
    assert runs[700].document["withheld"] == withheld_before + len(withheld)
    spaced = rejects[rejects["reason"] == f"lead_id: {SPACED_LEAD_ID}"]
    assert spaced["lead_id"].tolist() == [f"{closing['lead_id']} ", *written]
    stranger = rejects[rejects["reason"] == "lead_id: points to a lead_id that is not in leads"]
    assert stranger[["table", "lead_id"]].values.tolist() == [["consent", ""]]
    assert STRANGER not in rejects_path.read_text()
    # and the split changes nothing
    one = tmp_path / "100000.parquet"
    pd.testing.assert_frame_equal(read_output(one), read_output(out))
    assert runs[100_000].document["withheld"] == runs[700].document["withheld"]
    assert one.with_name(one.name + ".rejects.csv").read_text() == rejects_path.read_text()


def test_an_export_whose_event_times_all_fail_to_parse_names_the_columns_and_the_way_out(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a CSV export written by a tool that puts a space where ISO 8601 puts a "T"
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    for path in folder.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for column in ("created_at", "occurred_at", "rejected_at", "changed_at", "closed_at"):
            if column in frame:
                frame[column] = frame[column].str.replace("T", " ", regex=False)
        frame.to_csv(path, index=False)

    # When it is scored without an --as-of
    with pytest.raises(BatchError) as raised:
        run_batch(request(folder, tmp_path / "scores.parquet", model_dir))

    # Then the failure names every event-time column and how to find each one's problem
    (failure,) = raised.value.summary.document["failures"]
    assert failure["error"] == "NoTimestamps"
    assert "activities.occurred_at, rejections.rejected_at" in failure["message"]
    assert "srl validate --data DIR" in failure["message"]
    assert not (tmp_path / "scores.parquet").exists()


def _with_second_consent(source: Path, target: Path, second: str) -> Path:
    """A copy of the export with a second copy of consent beside ``consent.parquet``: a
    ``consent.csv`` file or a ``consent/`` dataset directory."""
    folder = copy_export(source, target)
    consent = folder / "consent.parquet"
    if second == "consent.csv":
        pd.read_parquet(consent).to_csv(folder / second, index=False)
    else:
        (folder / second).mkdir()
        (folder / second / "part-0.parquet").write_bytes(consent.read_bytes())
    return folder


@pytest.mark.parametrize(
    ("second", "where", "message"),
    [
        ("consent.csv", "", "both consent.parquet and consent.csv exist; keep one"),
        ("consent", "/consent", "a second file for table consent beside consent.parquet; keep one"),
    ],
    ids=["parquet-and-csv", "parquet-and-directory"],
)
def test_a_second_copy_of_a_table_stops_either_engine_with_the_same_message(
    small_export_dir: Path,
    model_dir: Path,
    tmp_path: Path,
    engine: str,
    second: str,
    where: str,
    message: str,
) -> None:
    # Given consent.parquet and a second copy of consent beside it
    folder = _with_second_consent(small_export_dir, tmp_path / "export", second)
    out = tmp_path / "scores.parquet"

    result = _score_in_process(folder, out, model_dir, engine)

    # Then the job picks neither: it fails naming the copies, and publishes nothing
    assert result.exit_code == EXIT_FAILED, result.output
    assert f"  - {folder}{where}: {message}\n" in result.output
    assert json.loads(summary_path(out).read_text(encoding="utf-8"))["exit_code"] == EXIT_FAILED
    assert not out.exists()


def test_every_required_table_without_rows_is_named_by_either_engine(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, engine: str
) -> None:
    # Given an export whose every table has its columns but no row
    folder = copy_export(small_export_dir, tmp_path / "export")
    for path in folder.glob("*.parquet"):
        pq.write_table(pq.read_table(path).slice(0, 0), path)
    out = tmp_path / "scores.parquet"

    result = _score_in_process(folder, out, model_dir, engine)

    # Then each required table is named, not only the first
    assert result.exit_code == EXIT_FAILED, result.output
    for table in ("leads", "activities", "rejections"):
        expected = f"  - {folder}/{table}.parquet: required table {table!r} has no rows\n"
        assert expected in result.output
    assert not out.exists()


def test_the_spark_engine_refuses_an_export_path_its_reader_would_take_as_a_pattern(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export in a folder exp[1], beside exp1: Spark's reader would score exp1
    copy_export(small_export_dir, tmp_path / "exp1")
    folder = copy_export(small_export_dir, tmp_path / "exp[1]")
    out = tmp_path / "scores.parquet"

    result = run_score(score_command(folder, out, model_dir, "--engine", "spark"))

    # Then the command line is refused before any work, naming --data and the character
    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"Invalid value for --data: {folder}: holds '['" in result.stderr
    assert "rename the folder" in result.stderr
    assert "or use --engine local" in result.stderr
    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert (summary["status"], summary["exit_code"]) == ("failed", EXIT_USAGE)
    assert not out.exists()
    # while the local engine reads the path as written
    check_data(request(folder, out, model_dir))


@pytest.mark.parametrize("character", list("*?[]{}\\"))
def test_spark_s_reader_is_never_handed_a_path_with_a_glob_character(character: str) -> None:
    path = f"s3a://exports/exp{character}1/leads.parquet"

    with pytest.raises(GlobPathError, match=re.escape(f"holds {character!r}")):
        read_parquet(None, path)


def _spread_row_warnings(folder: Path) -> None:
    """Unknown activity types and lead ids with a space around them, in rows far apart."""
    leads = pd.read_csv(folder / "leads.csv", dtype=str, keep_default_na=False)
    for row in (4, len(leads) - 10):
        leads.loc[row, "lead_id"] = f" {leads.loc[row, 'lead_id']}"
    leads.to_csv(folder / "leads.csv", index=False)
    activities = pd.read_csv(folder / "activities.csv", dtype=str, keep_default_na=False)
    spread = np.linspace(20, len(activities) - 1, 5).astype(int)
    for row, kind in zip(spread, ["Fax_Blast", "fax_blast", "carrier_pigeon"] * 2, strict=False):
        activities.loc[row, "activity_type"] = kind
    activities.to_csv(folder / "activities.csv", index=False)


def test_row_warnings_add_up_over_the_chunks_as_the_loader_counts_them(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an export whose unknown activity types and spaced lead ids fall in many chunks
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    _spread_row_warnings(folder)

    with caplog.at_level(logging.WARNING):
        summary = run_batch(
            request(folder, tmp_path / "scores.parquet", model_dir, chunk_leads=300)
        )
    logged_by_the_job = caplog.text

    # Then the summary says what the loader says of the whole export: one warning per file
    # and kind, rows added up, distinct values counted once, the first row in file numbering
    export = load_export(folder, lenient=True)
    named_by_table = [replace(note, file=Path(note.file).stem) for note in export.row_notes]
    expected = [note.text() for note in merged_notes(named_by_table)]
    assert [w for w in summary.document["warnings"] if w.startswith(("leads:", "activities:"))] == (
        expected
    )
    assert expected == [
        "activities: 5 activities with an unknown activity_type were kept as 'other' "
        "(2 distinct values; first at row 21)",
        "leads: 2 lead_id values have a space at the start or end (first at row 5); ids are "
        "compared as written, so rows of other tables that leave the spaces out point to no "
        "lead",
    ]
    assert summary.document["chunks"]["total"] >= 12
    # and no chunk logs its own count (one worker: the chunks run in this process)
    assert "unknown activity_type" not in logged_by_the_job
