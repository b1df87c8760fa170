"""The Spark engine, run for real on ``local[2]``, matches the local engine row for row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.loading import load_export
from features.predictor import ReconversionModel
from features.problems import ContractError, Problem
from features.table_files import NOT_UTF8_TEXT
from serving.batch import run_batch
from serving.batch_job import EXIT_OK, EXIT_REJECTED, BatchError, BatchSummary, summary_path
from serving.batch_signals import JobStopped, stop_behind
from tests.clock import years_ahead
from tests.parquet_damage import damage_a_page, with_bytes_not_utf8
from tests.serving.batch_support import (
    contacted_leads,
    copy_export,
    read_output,
    request,
    score_command,
    with_fractional_ids,
    with_keys_repeated_across_chunks,
    with_nanosecond_timestamps,
    with_numeric_ids,
    with_set_aside_opportunities,
    with_spaced_consent,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _both_engines(
    spark: Any, data: Path, model_dir: Path, folder: Path, chunk_leads: int, **changes: Any
) -> tuple[tuple[Path, BatchSummary], tuple[Path, BatchSummary]]:
    local, distributed = folder / "local.parquet", folder / "spark.parquet"
    local_run = run_batch(request(data, local, model_dir, chunk_leads=chunk_leads, **changes))
    spark_request = request(
        data, distributed, model_dir, chunk_leads=chunk_leads, engine="spark", **changes
    )
    spark_run = run_batch(spark_request, spark=spark)
    return (local, local_run), (distributed, spark_run)


def test_spark_and_local_engines_agree_row_for_row(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    (local, _), (distributed, summary) = _both_engines(
        spark, small_export_dir, model_dir, tmp_path, chunk_leads=1000
    )

    mine, theirs = read_output(local), read_output(distributed)

    assert summary.document["engine"] == "spark"
    assert theirs["rejection_id"].tolist() == mine["rejection_id"].tolist()
    assert np.abs(theirs["probability"] - mine["probability"]).max() <= 1e-9
    pd.testing.assert_frame_equal(
        theirs.drop(columns="probability"), mine.drop(columns="probability")
    )
    assert distributed.read_bytes() == local.read_bytes()


@pytest.mark.parametrize("child_type", [pa.float64(), pa.decimal128(24, 2)], ids=str)
def test_numeric_lead_ids_meet_their_lead_in_spark_as_locally(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path, child_type: pa.DataType
) -> None:
    """Integer ids in leads, float or decimal ids elsewhere: Spark writes ``29.0`` for a
    float and ``29.00`` for a decimal, the rule ``29``."""
    numeric = with_numeric_ids(small_export_dir, tmp_path / "numeric", child_type)

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, numeric, model_dir, tmp_path, chunk_leads=1000
    )

    assert spark_run.exit_code == local_run.exit_code == EXIT_OK
    theirs, mine = read_output(distributed), read_output(local)
    assert theirs["lead_id"].tolist() == mine["lead_id"].tolist()
    assert np.abs(theirs["probability"] - mine["probability"]).max() <= 1e-9


def test_fractional_lead_ids_meet_their_lead_in_spark_as_locally(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    """Text ids in leads, float ids elsewhere: Spark writes ``2.9E-4`` where the rule (and
    the leads table) writes ``0.00029``."""
    fractional = with_fractional_ids(small_export_dir, tmp_path / "fractional")

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, fractional, model_dir, tmp_path, chunk_leads=1000
    )

    assert spark_run.exit_code == local_run.exit_code == EXIT_OK
    theirs, mine = read_output(distributed), read_output(local)
    assert "0.00029" in mine["lead_id"].tolist()
    assert theirs["lead_id"].tolist() == mine["lead_id"].tolist()
    assert np.abs(theirs["probability"] - mine["probability"]).max() <= 1e-9


@pytest.fixture(scope="module")
def corrupted_parquet(small_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet export with text timestamps, an unknown reason, a duplicate key, an orphan
    two rows dated in the future (one as text, one as a typed timestamp), one months
    after the export's end (a mistyped date in the past) and unknown activity types."""
    folder = tmp_path_factory.mktemp("corrupt-parquet") / "export"
    folder.mkdir()
    tables = {p.stem: pd.read_parquet(p) for p in small_export_dir.glob("*.parquet")}
    rejections = tables["rejections"].astype({"reason_code": str})
    rejections["rejected_at"] = rejections["rejected_at"].map(lambda t: t.isoformat())
    rejections.loc[7, "rejected_at"] = "yesterday-ish"
    rejections.loc[30, "reason_code"] = "gone_fishing"
    rejections.loc[31, "rejected_at"] = years_ahead(70)
    tables["rejections"] = rejections
    activities = tables["activities"].astype({"lead_id": str, "activity_type": str})
    for row in (40, len(activities) // 2, len(activities) - 40):  # in different chunks
        activities.loc[row, "activity_type"] = "carrier_pigeon"
    activities.loc[2, "activity_id"] = activities["activity_id"].iloc[-5]
    activities.loc[11, "lead_id"] = "L-UNKNOWN"
    activities.loc[12, "occurred_at"] = pd.Timestamp(years_ahead())
    activities.loc[13, "occurred_at"] = pd.Timestamp("2026-10-15T09:00:00Z")  # mistyped
    tables["activities"] = activities
    for name, frame in tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def test_spark_sets_aside_exactly_the_rows_the_local_engine_does(
    spark: Any, corrupted_parquet: Path, model_dir: Path, tmp_path: Path
) -> None:
    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, corrupted_parquet, model_dir, tmp_path, chunk_leads=700
    )

    local_rejects = local.with_name(local.name + ".rejects.csv").read_text()
    spark_rejects = distributed.with_name(distributed.name + ".rejects.csv").read_text()

    assert spark_run.exit_code == local_run.exit_code == EXIT_REJECTED
    assert spark_rejects == local_rejects
    assert "activity_id: duplicate primary key" in spark_rejects
    assert "gone_fishing" not in spark_rejects
    assert spark_rejects.count("dated in the future") == 2
    assert spark_rejects.count("dated after a gap of") == 1
    assert len(spark_rejects.splitlines()) == 1 + 8
    snapshot = load_export(corrupted_parquet, lenient=True).snapshot_at
    assert spark_run.document["as_of"] == snapshot.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert local_run.document["as_of"] == spark_run.document["as_of"]
    assert distributed.read_bytes() == local.read_bytes()
    assert spark_run.document["warnings"] == local_run.document["warnings"]
    assert (
        "activities: 3 activities with an unknown activity_type were kept as 'other' "
        "(1 distinct value; first at row 41)"
    ) in spark_run.document["warnings"]


def test_spark_leaves_leads_with_a_set_aside_opportunity_unscored_as_locally(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given leads whose latest rejection only a set-aside opportunity closes
    data = tmp_path / "export"
    leads = with_set_aside_opportunities(small_export_dir, data, chunk_leads=700)

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, data, model_dir, tmp_path, chunk_leads=700
    )

    # Then Spark withholds them (fail closed) exactly as the local engine does
    local_rejects = local.with_name(local.name + ".rejects.csv").read_text()
    spark_rejects = distributed.with_name(distributed.name + ".rejects.csv").read_text()
    assert not set(leads) & set(read_output(distributed)["lead_id"])
    assert spark_run.document["withheld"] == local_run.document["withheld"] == len(leads)
    assert spark_rejects == local_rejects
    assert distributed.read_bytes() == local.read_bytes()


def test_spark_reports_rows_moved_by_a_repeated_key_as_locally(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given rows of later leads that repeat a key of the first leads' rows (one of them an
    # opportunity that alone closes its lead's rejection, one naming no lead)
    clean = run_batch(request(small_export_dir, tmp_path / "clean.parquet", model_dir))
    assert clean.exit_code == EXIT_OK
    scored = set(read_output(tmp_path / "clean.parquet")["lead_id"])
    data = tmp_path / "export"
    lead = with_keys_repeated_across_chunks(small_export_dir, data, 700, scored)

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, data, model_dir, tmp_path, chunk_leads=700
    )

    # Then Spark's buckets report them exactly as the local chunks do
    local_rejects = local.with_name(local.name + ".rejects.csv").read_text()
    spark_rejects = distributed.with_name(distributed.name + ".rejects.csv").read_text()
    assert spark_rejects == local_rejects
    assert f"{lead['unscored']},,activity_id: duplicate primary key" in spark_rejects
    assert lead["stranger"] not in spark_rejects
    assert spark_run.document["withheld"] == local_run.document["withheld"] >= 1
    assert distributed.read_bytes() == local.read_bytes()


def test_a_csv_export_is_refused_with_a_clear_message(
    spark: Any, tmp_path: Path, model_dir: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("leads", "activities", "rejections"):
        (folder / f"{name}.csv").write_text("lead_id\n")

    with pytest.raises(ContractError, match="reads Parquet"):
        run_batch(request(folder, tmp_path / "x.parquet", model_dir, engine="spark"), spark=spark)


def test_without_pyspark_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("pyspark", "pyspark.sql", "pyspark.sql.functions"):
        monkeypatch.setitem(sys.modules, name, None)
    from serving.spark import spark_session

    with pytest.raises(RuntimeError, match=r"pip install 'srl-rebound\[spark\]'"):
        spark_session()


def test_nanosecond_timestamps_are_read_and_rounded_up_as_locally(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export whose timestamps are nanoseconds (pandas' default), its latest event
    # a nanosecond past a microsecond
    data = tmp_path / "export"
    end = with_nanosecond_timestamps(small_export_dir, data)

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, data, model_dir, tmp_path, chunk_leads=700
    )

    # Then Spark reads them, rounds that rest up as the contract does, and agrees
    assert spark_run.exit_code == local_run.exit_code == EXIT_OK
    assert set(read_output(distributed)["as_of"]) == {end}
    assert distributed.read_bytes() == local.read_bytes()


def test_a_column_in_nanoseconds_in_some_files_only_is_refused_by_name(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a consent dataset whose second file holds its timestamps in nanoseconds
    data = copy_export(small_export_dir, tmp_path / "export")
    consent = pq.read_table(data / "consent.parquet")
    (data / "consent.parquet").unlink()
    (data / "consent").mkdir()
    half = consent.num_rows // 2
    pq.write_table(consent.slice(0, half), data / "consent" / "part-0.parquet")
    changed = consent["changed_at"].cast(pa.timestamp("ns", tz="UTC"))
    late = consent.set_column(1, "changed_at", changed).slice(half)
    pq.write_table(late, data / "consent" / "part-1.parquet")
    out = tmp_path / "x.parquet"

    # Then the job stops with a contract error naming the file and the column
    with pytest.raises(ContractError) as refused:
        run_batch(request(data, out, model_dir, engine="spark"), spark=spark)

    problem = refused.value.problems[0]
    assert problem.file.endswith("consent/part-0.parquet")
    assert problem.column == "changed_at"
    assert "nanosecond" in problem.message
    assert json.loads(out.with_name(out.name + ".summary.json").read_text())["status"] == "failed"


def test_an_opt_out_with_a_spaced_lead_id_withholds_its_lead_in_both_engines(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given leads routed to a contact program, in different chunks, each with an opt-out
    # whose lead_id is written slightly off (spaces, invisible characters, lower case,
    # full-width forms: ``SPACINGS``), and one opt-out that names no lead at all
    leads, withheld_before = contacted_leads(small_export_dir, model_dir, tmp_path)
    data = tmp_path / "export"
    written = with_spaced_consent(small_export_dir, data, leads)
    # (the opt-out naming no lead refuses a Spark job as a local one, unless accepted)
    refused_out = tmp_path / "refused.parquet"
    with pytest.raises(BatchError) as refused:
        run_batch(request(data, refused_out, model_dir, engine="spark"), spark=spark)
    (failure,) = refused.value.summary.document["failures"]
    assert failure["message"].startswith("1 row of consent set aside name no lead")

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, data, model_dir, tmp_path, chunk_leads=700, allow_unmatched=frozenset({"consent"})
    )

    # Then neither engine scores those leads; the rejects name each row as written
    local_rejects = pd.read_csv(
        local.with_name(local.name + ".rejects.csv"), dtype=str, keep_default_na=False
    )
    spark_rejects = distributed.with_name(distributed.name + ".rejects.csv").read_text()
    assert not set(leads) & set(read_output(local)["lead_id"])
    assert local_run.document["withheld"] == withheld_before + len(leads)
    spaced = local_rejects[local_rejects["reason"].str.contains("surrounding spaces")]
    assert spaced["lead_id"].tolist() == written
    stranger = local_rejects[local_rejects["reason"].str.endswith("not in leads")]
    assert stranger[["table", "lead_id"]].values.tolist() == [["consent", ""]]
    # And Spark agrees row for row
    assert spark_run.exit_code == local_run.exit_code
    assert spark_run.document["withheld"] == local_run.document["withheld"]
    assert spark_rejects == local.with_name(local.name + ".rejects.csv").read_text()
    assert distributed.read_bytes() == local.read_bytes()


def test_a_parquet_type_spark_cannot_read_is_refused_by_file_and_column(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a leads file with an extra column of times of day (a type Spark refuses)
    data = copy_export(small_export_dir, tmp_path / "export")
    leads = pq.read_table(data / "leads.parquet")
    times = pa.array([0] * leads.num_rows, pa.time64("ns"))
    pq.write_table(leads.append_column("call_time", times), data / "leads.parquet")

    # Then the job stops with a contract error naming the file and the column
    with pytest.raises(ContractError) as refused:
        run_batch(request(data, tmp_path / "x.parquet", model_dir, engine="spark"), spark=spark)

    (problem,) = refused.value.problems
    assert (problem.file.rsplit("/", 1)[-1], problem.column) == ("leads.parquet", "call_time")
    assert "Spark cannot read" in problem.message


def test_an_extra_column_named_like_a_contract_column_in_another_case_is_ignored(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    """Spark matches column names case-insensitively by default, so ``LEAD_ID`` beside
    ``lead_id`` was a clash there and an extra column locally; the job reads names as
    written in both engines."""
    data = copy_export(small_export_dir, tmp_path / "cased")
    activities = pq.read_table(data / "activities.parquet")
    cased = activities.append_column("LEAD_ID", activities.column("lead_id"))
    pq.write_table(cased, data / "activities.parquet")

    (local, local_run), (distributed, spark_run) = _both_engines(
        spark, data, model_dir, tmp_path, chunk_leads=1000
    )

    assert spark_run.exit_code == local_run.exit_code == EXIT_OK
    assert distributed.read_bytes() == local.read_bytes()
    assert spark.conf.get("spark.sql.caseSensitive") == "false"  # the session's own, back


def test_a_stop_that_pyspark_wrapped_in_its_own_error_is_still_a_stop() -> None:
    """The signal handler raises ``JobStopped`` inside PySpark's collect; PySpark's clean-up
    then fails on the broken pipe to the JVM and raises over it (a ``Py4JJavaError``)."""

    def collect() -> None:
        try:
            raise JobStopped(signal.SIGTERM)
        except JobStopped:
            raise RuntimeError("An error occurred while calling o1052.getResult") from None

    with pytest.raises(RuntimeError) as wrapped:
        collect()

    stop = stop_behind(wrapped.value)
    assert stop is not None
    assert stop.exit_code == 143
    assert stop_behind(RuntimeError("a failed Spark task")) is None


def test_a_spark_job_stopped_by_sigterm_while_it_scores_exits_143(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a Spark job whose Python workers are scoring (the driver waits in the collect)
    out, log = tmp_path / "scores.parquet", tmp_path / "job.log"
    command = score_command(
        small_export_dir, out, model_dir, "--engine", "spark", "--chunk-leads", "700"
    )
    with log.open("wb") as written:
        job = subprocess.Popen(
            command,
            stderr=written,
            env={**os.environ, "SRL_LOG_LEVEL": "INFO"},
            start_new_session=True,
        )
    try:
        _until_scoring(job, log)
        # When its main process is sent SIGTERM (as `timeout` or Airflow's timeout do)
        job.send_signal(signal.SIGTERM)
        code = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    # Then it is a stop, not a failure: 143, JobStopped, the moment it was scoring kept
    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert code == 143, summary
    assert (summary["status"], summary["exit_code"]) == ("failed", 143)
    assert summary["failures"][0]["error"] == "JobStopped"
    assert summary["as_of"] is not None
    assert not out.exists()


#: CPU seconds Spark's Python workers have spent once they are scoring buckets (loading
#: the model takes less): the driver then waits in the collect.
SCORING_CPU_SECONDS = 2.0


def _until_scoring(job: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the job has resolved its moment (its log says ``batch scoring``) and
    Spark's Python workers have been scoring its buckets for a while."""
    deadline = time.monotonic() + 300
    while (
        b"batch scoring as_of=" not in log.read_bytes()
        or _python_worker_seconds(job.pid) < SCORING_CPU_SECONDS
    ):
        assert job.poll() is None, "the job ended before it scored"
        assert time.monotonic() < deadline, "the job never started scoring"
        time.sleep(0.05)


def _python_worker_seconds(session: int) -> float:
    """CPU seconds spent so far by Spark's Python workers in the job's session."""
    listed = subprocess.run(
        ["ps", "-s", str(session), "-o", "cputimes=,args="],
        capture_output=True,
        text=True,
        check=False,
    )
    return float(
        sum(
            int(line.split(None, 1)[0])
            for line in listed.stdout.splitlines()
            if "-m pyspark.daemon" in line
        )
    )


def test_a_spark_worker_loads_the_broadcast_model_and_leaves_no_copy_behind(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the model's files as the job broadcasts them, under a fingerprint of this test
    from serving import spark as spark_engine

    files: dict[str, Any] = {
        name: (model_dir / name).read_bytes() for name in ("booster.txt", "model.json")
    }
    files["fingerprint"] = f"test-{tmp_path.name}"
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    # When a worker loads it
    model = spark_engine._worker_model(files)

    # Then it is the model, and no copy of its files is left in the temporary folder
    assert model.feature_names == ReconversionModel.load(model_dir).feature_names
    assert list(tmp_path.iterdir()) == []


def test_a_page_that_fails_its_checksum_stops_either_engine_naming_the_file(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export whose activities file has a damaged page (with its checksum)
    damaged = copy_export(small_export_dir, tmp_path / "damaged")
    damage_a_page(damaged / "activities.parquet", column=1)

    # When either engine scores it
    problem, failure = _refused_by_both_engines(spark, damaged, model_dir, tmp_path)

    # Then each names the file and the failed checksum; nothing is written
    assert problem.file.endswith("activities.parquet")
    assert "CRC checksum verification failed" in problem.message
    assert "activities.parquet" in failure["message"]
    assert "CRC checksum verification failed" in failure["message"]
    assert not (tmp_path / "spark.parquet").exists()
    assert not (tmp_path / "local.parquet").exists()


def test_parquet_text_that_is_not_utf8_stops_either_engine_naming_column_and_row(
    spark: Any, small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export whose activities hold, in rows 41 and 2001, ids that are not UTF-8
    damaged = copy_export(small_export_dir, tmp_path / "damaged")
    with_bytes_not_utf8(damaged / "activities.parquet", "activity_id", [40, 2000])

    problem, failure = _refused_by_both_engines(spark, damaged, model_dir, tmp_path)

    # Then the local engine names the file, Spark the table, both the column and first row
    assert (problem.file.endswith("activities.parquet"), problem.column, problem.row) == (
        True,
        "activity_id",
        41,
    )
    named = f"activities, column 'activity_id', row 41: {NOT_UTF8_TEXT}"
    assert failure["message"].startswith(named)


def _refused_by_both_engines(
    spark: Any, data: Path, model_dir: Path, folder: Path
) -> tuple[Problem, dict[str, Any]]:
    """The local engine's one problem and the Spark job's one failure, for an export both
    refuse (the local engine before the job begins, Spark in its failed summary)."""
    with pytest.raises(ContractError) as local:
        run_batch(request(data, folder / "local.parquet", model_dir))
    spark_request = request(data, folder / "spark.parquet", model_dir, engine="spark")
    with pytest.raises(BatchError) as distributed:
        run_batch(spark_request, spark=spark)
    (problem,) = local.value.problems
    (failure,) = distributed.value.summary.document["failures"]
    return problem, failure
