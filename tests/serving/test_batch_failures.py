"""``srl score`` when it fails: a failed summary in place of the last one, no traceback, and
nothing published at the final paths on exit 1; an unusable output path or any other bad
command line is exit 2."""

from __future__ import annotations

import errno
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from features.output import OutputWriteError
from serving import batch
from serving.batch import run_batch
from serving.batch_job import BatchError
from srl.cli import app
from tests.disk_full import run_on_small_disk, srl_command
from tests.serving.batch_support import DirectoryAppearsAtOutput, copy_as_csv, request

PREVIOUS_OUTPUT = b"the previous run's output"
PREVIOUS_REJECTS = b"the previous run's rejects"
PREVIOUS_SUMMARY = {"status": "ok", "exit_code": 0, "scored_at": "2026-06-30T06:00:00Z"}


def _score(data: Path, out: Path, model: Path | str) -> Result:
    arguments = ["score", "--data", str(data), "--out", str(out), "--model", str(model)]
    return CliRunner().invoke(app, [*arguments, "--workers", "1", "--chunk-leads", "700"])


def _previous_run(out: Path) -> None:
    """The files an earlier, successful run left."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(PREVIOUS_OUTPUT)
    _rejects(out).write_bytes(PREVIOUS_REJECTS)
    _summary(out).write_text(json.dumps(PREVIOUS_SUMMARY), encoding="utf-8")


def _rejects(out: Path) -> Path:
    return out.with_name(out.name + ".rejects.csv")


def _summary(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


def _read_summary(out: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_summary(out).read_text(encoding="utf-8"))
    return document


def _assert_previous_run_kept(out: Path) -> None:
    assert out.read_bytes() == PREVIOUS_OUTPUT
    assert _rejects(out).read_bytes() == PREVIOUS_REJECTS
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".partial")]


def _without_column(source: Path, target: Path) -> Path:
    folder = copy_as_csv(source, target)
    frame = pd.read_csv(folder / "rejections.csv", dtype=str)
    frame.drop(columns=["reason_code"]).to_csv(folder / "rejections.csv", index=False)
    return folder


@pytest.mark.parametrize(
    ("failure", "reason"),
    [("a missing column", "reason_code"), ("a model that cannot be loaded", "no-such-model")],
)
def test_a_failed_run_replaces_the_last_ok_summary_with_a_failed_one(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, failure: str, reason: str
) -> None:
    # Given an earlier run's files, and an export or a model that cannot be used
    out = tmp_path / "out" / "scores.parquet"
    _previous_run(out)
    data, model = small_export_dir, model_dir
    if failure == "a missing column":
        data = _without_column(small_export_dir, tmp_path / "export")
    else:
        model = tmp_path / "no-such-model"

    result = _score(data, out, model)

    # Then the job exits 1 without a traceback, and the summary says failed and why
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    summary = _read_summary(out)
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert reason in json.dumps(summary["failures"])
    _assert_previous_run_kept(out)


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("wrong extension", "scores.txt"),
        ("output is a directory", "scores.parquet"),
        ("parent is a file", "a-file"),
        ("rejects path is a directory", "scores.parquet.rejects.csv"),
        ("work path is not a work directory", "scores.parquet.work"),
    ],
)
def test_an_output_path_that_cannot_be_used_is_refused_before_any_work(
    tmp_path: Path, case: str, named: str
) -> None:
    # Given an output path with something in the way (the export and the model do not
    # even exist: the paths are checked first)
    out = tmp_path / "out" / "scores.parquet"
    _previous_run(out)
    if case == "wrong extension":
        out = out.with_name("scores.txt")
    elif case == "output is a directory":
        out.unlink()
        out.mkdir()
    elif case == "parent is a file":
        (tmp_path / "a-file").write_bytes(b"")
        out = tmp_path / "a-file" / "scores.parquet"
    elif case == "rejects path is a directory":
        _rejects(out).unlink()
        _rejects(out).mkdir()
    else:
        (out.with_name("scores.parquet.work") / "notes").mkdir(parents=True)

    result = _score(tmp_path / "no-export", out, tmp_path / "no-model")

    # Then it is a usage error naming the path, and nothing is written there
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert named in re.sub(r"[\s│]", "", result.output)  # the message, unboxed
    if case in ("rejects path is a directory", "work path is not a work directory"):
        assert out.read_bytes() == PREVIOUS_OUTPUT
        summary = _read_summary(out)
        assert (summary["status"], summary["exit_code"]) == ("failed", 2)
        assert named in summary["failures"][0]["message"]


def test_a_full_disk_stops_the_job_cleanly_and_keeps_the_last_run(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an earlier run's files, and a disk where no file can grow past 200 kB (the
    # model's copy fits, the routed export does not)
    out = tmp_path / "out" / "scores.parquet"
    _previous_run(out)
    command = srl_command(
        "score", "--data", str(small_export_dir), "--out", str(out), "--model", str(model_dir)
    )

    result = run_on_small_disk([*command, "--workers", "1"], max_file_bytes=200_000)

    # Then the job says which file could not be written and why, with no traceback
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "could not write" in result.stderr
    assert "File too large" in result.stderr
    summary = _read_summary(out)
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert "File too large" in summary["failures"][0]["message"]
    _assert_previous_run_kept(out)


def test_a_disk_that_fills_while_the_export_is_routed_keeps_no_half_routed_files(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a disk that fills up while the export is routed, after some routed rows are
    # written (a whole file system: what the job leaves there takes the summary's room)
    def fill_the_disk(*arguments: Any) -> None:
        (arguments[-1] / "staged-activities-00000.arrow").write_bytes(b"routed rows")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch, "partition_export", fill_the_disk)
    out = tmp_path / "out" / "scores.parquet"
    _previous_run(out)

    with pytest.raises(OutputWriteError):
        run_batch(request(small_export_dir, out, model_dir))

    # Then the half-routed export is gone (a rerun routes it again) and the summary says why
    work = out.with_name(out.name + ".work")
    assert sorted(p.name for p in work.iterdir()) == ["manifest.json", "model"]
    summary = _read_summary(out)
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert "No space left on device" in summary["failures"][0]["message"]
    _assert_previous_run_kept(out)


def test_rejects_that_cannot_be_written_publish_nothing(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export whose every activity row is rejected, so that its rejects file is
    # larger than anything else the job writes (the routed activities are next); its size
    # is measured on a free disk first
    data = copy_as_csv(small_export_dir, tmp_path / "export")
    activities = pd.read_csv(data / "activities.csv", dtype=str)
    activities["activity_type"] = ""
    activities.to_csv(data / "activities.csv", index=False)
    options = ["--model", str(model_dir), "--workers", "1", "--chunk-leads", "700"]
    options += ["--max-rejected-share", "1"]
    free = tmp_path / "free" / "scores.parquet"
    free_run = srl_command("score", "--data", str(data), "--out", str(free), *options)
    assert run_on_small_disk(free_run, max_file_bytes=2**40).returncode == 3
    out = tmp_path / "out" / "scores.parquet"
    _previous_run(out)
    command = srl_command("score", "--data", str(data), "--out", str(out), *options)

    # When the disk fills up as the rejects file is written (after the output)
    result = run_on_small_disk(command, max_file_bytes=_rejects(free).stat().st_size - 1)

    # Then nothing is published: the last run's output and rejects stay, and the summary
    # names the rejects file
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = f"could not write {_rejects(out)}: File too large"
    assert message in result.stdout
    summary = _read_summary(out)
    assert (summary["status"], summary["failures"][0]["message"]) == ("failed", message)
    _assert_previous_run_kept(out)


@pytest.mark.parametrize(
    ("mistake", "named"),
    [
        (["--as-of", "garbage"], "--as-of"),
        (["--reasons", "many"], "--reasons"),
        (["--engine", "mainframe"], "--engine"),
        (["--workers", "-1"], "--workers"),
        (["--scored-at", "2026-13-01T00:00:00"], "--scored-at"),
        (["--as_of", "2026-01-15"], "--as_of"),
        (["--chunk-leads"], "--chunk-leads"),
        (["--reasons", "top", "--policy"], "--policy"),
    ],
)
def test_a_bad_command_line_replaces_the_last_ok_summary_with_a_failed_one(
    small_export_dir: Path, tmp_path: Path, mistake: list[str], named: str
) -> None:
    # Given an earlier run's files, and a command line with one bad option
    out = tmp_path / "out" / "scores.parquet"
    _previous_run(out)
    arguments = ["score", "--data", str(small_export_dir), "--out", str(out), *mistake]

    result = CliRunner().invoke(app, arguments)

    # Then it is a usage error, and the summary says failed (exit 2) and names the option
    assert result.exit_code == 2, result.output
    summary = _read_summary(out)
    assert (summary["status"], summary["exit_code"]) == ("failed", 2)
    assert named in summary["failures"][0]["message"]
    _assert_previous_run_kept(out)


def test_a_bad_command_line_writes_no_summary_beside_an_unusable_out(tmp_path: Path) -> None:
    # Given an --out with the wrong extension, and a bad --as-of
    out = tmp_path / "scores.txt"

    result = CliRunner().invoke(app, ["score", "--data", "x", "--out", str(out), "--as-of", "?"])

    # Then nothing is written beside it
    assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_publishing_keeps_the_as_of_and_model_it_knew(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a run whose output path becomes a directory once every chunk is scored
    out = tmp_path / "out" / "scores.parquet"
    job = request(small_export_dir, out, model_dir, as_of=datetime(2026, 1, 15))

    with pytest.raises(BatchError) as raised:
        run_batch(job, progress=DirectoryAppearsAtOutput(out))

    # Then the failed summary names the output and keeps the scoring moment and the model
    summary = _read_summary(out)
    assert summary == raised.value.summary.document
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert str(out) in summary["failures"][0]["message"]
    assert summary["as_of"] == "2026-01-15T00:00:00Z"
    assert summary["model"]["version"] is not None
