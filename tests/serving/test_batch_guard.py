"""What the batch job refuses or warns of around publishing: absent consent or
opportunities and tables mostly set aside (``serving.batch_guard``, through
``input_problems`` and real jobs), temporaries a killed job left, an output on a read-only
file system, and a scoring moment that scores nothing or comes long after the export."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from features.output import OutputPathError, check_output_file, remove_stale_partials
from serving.batch import run_batch
from serving.batch_guard import DEFAULT_MAX_REJECTED_SHARE, input_problems
from serving.batch_job import EXIT_FAILED, EXIT_REJECTED, BatchError, BatchRequest
from serving.batch_lock import output_lock
from serving.batch_output import LEAD_KNOWN_COLUMN, LEAD_MOVED_COLUMN
from tests.disk_full import srl_command
from tests.serving.batch_support import copy_as_csv
from tests.serving.test_batch_input_checks import request

ROWS = {"leads": 100, "activities": 1000, "rejections": 40, "opportunities": 20, "consent": 30}


def _rejects(rows: list[tuple[str, str]], names_a_lead: bool = True) -> pa.Table:
    """Set-aside rows (table, reason), each naming a lead of the export or none."""
    tables, reasons = zip(*rows, strict=True) if rows else ((), ())
    known = [names_a_lead] * len(tables)
    return pa.table(
        {
            "table": list(tables),
            "reason": list(reasons),
            LEAD_KNOWN_COLUMN: pa.array(known, pa.bool_()),
            LEAD_MOVED_COLUMN: pa.array([False] * len(tables), pa.bool_()),
        }
    )


def test_clean_inputs_raise_nothing() -> None:
    assert input_problems(ROWS, _rejects([]), frozenset(), DEFAULT_MAX_REJECTED_SHARE) == []


@pytest.mark.parametrize("table", ["consent", "opportunities"])
def test_an_absent_or_empty_guarded_table_is_refused_unless_allowed(table: str) -> None:
    absent = {t: n for t, n in ROWS.items() if t != table}
    empty = {**ROWS, table: 0}

    for rows in (absent, empty):
        (problem,) = input_problems(rows, _rejects([]), frozenset(), 0.05)
        assert problem.startswith(f"the {table} table is absent or empty: ")
        assert problem.endswith(f"pass --allow-missing {table}")
        assert input_problems(rows, _rejects([]), frozenset({table}), 0.05) == []


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"allow_missing": frozenset({"consent", "leads"})}, "allow_missing 'leads'"),
        ({"allow_unmatched": frozenset({"activities"})}, "allow_unmatched 'activities'"),
        ({"max_rejected_share": 1.5}, "max_rejected_share 1.5"),
        ({"max_rejected_share": float("nan")}, "max_rejected_share nan"),
        ({"engine": "dask"}, "engine 'dask'"),
        ({"reasons": "some"}, "reasons 'some'"),
        ({"chunk_leads": 0}, "chunk_leads 0"),
        ({"workers": -1}, "workers -1"),
    ],
)
def test_a_request_the_cli_would_refuse_is_refused_by_the_python_api(
    tmp_path: Path, arguments: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named}"):
        BatchRequest(data=str(tmp_path), out=tmp_path / "scores.parquet", **arguments)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_table_mostly_set_aside_is_refused_naming_its_most_common_reasons() -> None:
    # Given 2 of 30 consent rows set aside (6.7%) and 50 of 1,000 activities (5%)
    rejects = _rejects(
        [("consent", "changed_at: required value is missing")] * 2
        + [("activities", "occurred_at: required value is missing")] * 30
        + [("activities", "activity_type: not one of the contract's values")] * 20
    )

    problems = input_problems(ROWS, rejects, frozenset(), 0.05)

    # Then only the share above 5% is refused, with its reasons and counts
    assert problems == [
        "2 of the 30 rows of consent (6.7%) were set aside, more than --max-rejected-share "
        "0.05 allows; most often: changed_at: required value is missing (2)"
    ]
    stricter = input_problems(ROWS, rejects, frozenset(), 0.04)
    (activities,) = [p for p in stricter if p.startswith("50 of the 1,000 rows of activities")]
    assert activities.endswith(
        "most often: occurred_at: required value is missing (30); "
        "activity_type: not one of the contract's values (20)"
    )
    assert input_problems(ROWS, rejects, frozenset(), 1.0) == []


@pytest.mark.parametrize("table", ["consent", "opportunities"])
def test_one_guarded_row_that_names_no_lead_is_refused_unless_allowed(table: str) -> None:
    # Given one row of a guarded table set aside for naming no lead, and a known lead's row
    reason = "lead_id: points to a lead_id that is not in leads"
    unmatched = _rejects([(table, reason)], names_a_lead=False)
    rejects = pa.concat_tables([unmatched, _rejects([(table, "status: not one of ...")])])

    # Then that one row refuses the job, far below any share, unless accepted
    (problem,) = input_problems(ROWS, rejects, frozenset(), 1.0)
    assert problem.startswith(f"1 row of {table} set aside name no lead of the export")
    assert f"(most often: {reason} (1))" in problem
    assert problem.endswith(f"pass --allow-unmatched {table}")
    assert input_problems(ROWS, rejects, frozenset(), 1.0, allow_unmatched={table}) == []
    # And an activity naming no lead is only counted in its table's share
    activity = _rejects([("activities", reason)], names_a_lead=False)
    assert input_problems(ROWS, activity, frozenset(), 0.05) == []


def test_opt_outs_whose_ids_lost_their_form_fail_the_job_below_the_share(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export where 3% of the consent rows, opt-outs, lost their ids' prefix upstream
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    consent = pd.read_csv(folder / "consent.csv", dtype=str, keep_default_na=False)
    opt_outs = consent.index[consent["status"] != "subscribed"][: len(consent) * 3 // 100]
    consent.loc[opt_outs, "lead_id"] = consent.loc[opt_outs, "lead_id"].str.lstrip("L0")
    consent.to_csv(folder / "consent.csv", index=False)
    out = tmp_path / "scores.parquet"

    # Then the job publishes nothing, though the share set aside is under 5%
    with pytest.raises(BatchError) as refused:
        run_batch(request(folder, out, model_dir))
    (failure,) = refused.value.summary.document["failures"]
    assert failure["message"].startswith(
        f"{len(opt_outs):,} rows of consent set aside name no lead of the export"
    )
    assert not out.exists()

    # And a rerun that accepts them publishes, the rows set aside
    accepted = run_batch(request(folder, out, model_dir, allow_unmatched=frozenset({"consent"})))
    assert accepted.exit_code == EXIT_REJECTED
    assert accepted.document["rejected_rows"]["by_table"] == {"consent": len(opt_outs)}


def test_a_job_whose_consent_rows_name_no_lead_publishes_nothing(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given consent rows whose lead ids lost their form upstream (none names a lead)
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    consent = pd.read_csv(folder / "consent.csv", dtype=str, keep_default_na=False)
    consent["lead_id"] = "crm-" + consent["lead_id"]
    consent.to_csv(folder / "consent.csv", index=False)
    out = tmp_path / "scores.parquet"

    # Then the job fails and publishes nothing: every opted-out lead would be contactable
    with pytest.raises(BatchError) as refused:
        run_batch(request(folder, out, model_dir))
    summary = refused.value.summary.document
    assert (summary["status"], summary["exit_code"]) == ("failed", EXIT_FAILED)
    unmatched, share = summary["failures"]
    assert share["message"].startswith(f"{len(consent):,} of the {len(consent):,} rows of consent")
    assert unmatched["message"].startswith(f"{len(consent):,} rows of consent set aside name no")
    assert summary["rejected_rows"]["by_table"] == {"consent": len(consent)}
    assert summary["input_rows"]["consent"] == len(consent)
    assert not out.exists()
    assert not out.with_name(out.name + ".rejects.csv").exists()

    # And a rerun that accepts it publishes from the kept work, with the rows set aside
    accepted = run_batch(
        request(
            folder,
            out,
            model_dir,
            max_rejected_share=1.0,
            allow_unmatched=frozenset({"consent"}),
        )
    )
    assert accepted.exit_code == EXIT_REJECTED
    assert out.exists()


def test_a_job_without_opportunities_fails_unless_they_may_be_missing(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    (folder / "opportunities.csv").unlink()
    out = tmp_path / "scores.parquet"

    with pytest.raises(BatchError) as refused:
        run_batch(request(folder, out, model_dir))
    (failure,) = refused.value.summary.document["failures"]
    assert "--allow-missing opportunities" in failure["message"]
    assert not out.exists()

    allowed = frozenset({"opportunities"})
    summary = run_batch(request(folder, out, model_dir, allow_missing=allowed))
    assert summary.exit_code == 0
    (warning,) = summary.document["warnings"]
    assert warning.startswith(
        "the opportunities table is absent or empty, as --allow-missing opportunities accepts"
    )


def test_temporaries_a_killed_job_left_are_removed_and_no_other_file(tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    left = [
        tmp_path / ".scores.parquet.ab_c1234.partial",
        tmp_path / ".scores.parquet.rejects.csv.zz9yx8w7.partial",
    ]
    kept = [
        tmp_path / ".scores.parquet.x.ab_c1234.partial",  # another output's temporary
        tmp_path / ".scores.parquet.abc.partial",
        tmp_path / "scores.parquet.ab_c1234.partial",
        out,
    ]
    for path in (*left, *kept):
        path.write_bytes(b"PAR1")

    removed = [
        *remove_stale_partials(out),
        *remove_stale_partials(out.with_name(out.name + ".rejects.csv")),
    ]

    assert sorted(removed) == sorted(left)
    assert not any(path.exists() for path in left)
    assert all(path.exists() for path in kept)
    assert remove_stale_partials(tmp_path / "missing" / "scores.parquet") == []


def test_a_job_removes_the_temporaries_a_killed_run_left_beside_its_output(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    orphan = out.parent / ".scores.parquet.summary.json.k1ll3d00.partial"
    orphan.write_text("{")

    run_batch(request(small_export_dir, out, model_dir))

    assert not orphan.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "scores.parquet",
        "scores.parquet.summary.json",
    ]


def test_srl_score_takes_the_tables_it_may_miss_and_prints_its_warnings(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = copy_as_csv(small_export_dir, tmp_path / "export")
    (folder / "consent.csv").unlink()
    options = ["--data", str(folder), "--model", str(model_dir), "--workers", "1"]

    def score(out: str, *more: str) -> subprocess.CompletedProcess[str]:
        command = srl_command("score", *options, "--out", str(tmp_path / out), *more)
        return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    refused = score("refused.parquet")
    assert refused.returncode == EXIT_FAILED
    assert "failed: InputRefused: the consent table is absent or empty" in refused.stdout
    allowed = score("allowed.parquet", "--allow-missing", "consent", "--max-rejected-share", "0")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "warning: no consent table: every lead counts as subscribed" in allowed.stdout
    unknown = score("unknown.parquet", "--allow-missing", "leads")
    assert unknown.returncode == 2
    assert "'leads' is not one of consent, opportunities" in unknown.stderr


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on a file system mounted read-only (a small tmpfs; needs root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a read-only file system needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_output_on_a_read_only_file_system_is_named_so(read_only_folder: Path) -> None:
    out = read_only_folder / "scores.parquet"

    with pytest.raises(OutputPathError) as refused:
        check_output_file(out)

    assert str(refused.value) == (
        f"{out}: cannot be written, {read_only_folder} is on a read-only file system"
    )


def test_a_moment_that_scores_nothing_or_long_after_the_export_is_warned_of(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    before = datetime(1990, 1, 1, tzinfo=UTC)
    after = datetime(2030, 1, 1, tzinfo=UTC)

    empty = run_batch(
        request(small_export_dir, tmp_path / "empty.parquet", model_dir, as_of=before)
    )
    late = run_batch(request(small_export_dir, tmp_path / "late.parquet", model_dir, as_of=after))

    (nothing,) = empty.document["warnings"]
    assert empty.document["scored"]["rows"] == 0
    assert nothing.startswith("nothing was scored: no rejection is open at as_of 1990-01-01")
    (stale,) = [w for w in late.document["warnings"] if w.startswith("as_of is ")]
    assert late.document["scored"]["rows"] > 0
    assert "days after the export's end" in stale


def test_a_job_leaves_the_temporary_of_a_job_writing_its_rejects_path_as_output(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given another job running now whose --out is this job's rejects path, mid-write
    out = tmp_path / "scores.csv"
    other = out.with_name(out.name + ".rejects.csv")
    in_flight = tmp_path / f".{other.name}.ab12cd34.partial"
    in_flight.write_text("table,row\n")

    with output_lock(other):
        run_batch(request(small_export_dir, out, model_dir))

    # Then its temporary is left alone (a killed job's would have gone)
    assert in_flight.exists()
