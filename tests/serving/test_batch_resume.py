"""A batch job killed with SIGKILL and started again resumes and writes the same bytes; a work
directory of another checkpoint format is never resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from serving.batch import run_batch
from serving.batch_job import EXIT_REJECTED, summary_path
from serving.checkpoints import MANIFEST_FILE, MANIFEST_FORMAT
from tests.serving.batch_support import (
    CHECKPOINTED_OPTIONS,
    checkpointed_parts,
    read_output,
    request,
    run_score,
    score_command,
    start_score,
    wait_for_parts,
)

pytestmark = pytest.mark.slow


def _kill_after_parts(process: subprocess.Popen[bytes], out: Path, parts: int) -> int:
    """SIGKILL the job's process group once ``parts`` chunks are checkpointed."""
    wait_for_parts(process, out, parts)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return len(checkpointed_parts(out))


def _summary(out: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads(summary_path(out).read_text())
    return document


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killed_job_resumes_to_identical_bytes(
    small_export_dir: Path, model_dir: Path, uninterrupted: Path, tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "scores.parquet"
    command = score_command(
        small_export_dir, out, model_dir, *CHECKPOINTED_OPTIONS, "--workers", workers
    )

    finished = _kill_after_parts(start_score(command), out, parts=3)
    assert not out.exists()
    resumed = run_score(command)

    assert resumed.returncode == 0, resumed.stderr
    assert "batch resuming" in resumed.stderr
    chunks = _summary(out)["chunks"]
    assert isinstance(chunks, dict)
    assert finished <= chunks["resumed"] < chunks["total"]
    assert out.read_bytes() == uninterrupted.read_bytes()
    assert not out.with_name(out.name + ".work").exists()


def test_resumed_job_keeps_the_stamp_of_its_first_start(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    command = score_command(
        small_export_dir, out, model_dir, "--chunk-leads", "100", "--workers", "1"
    )

    _kill_after_parts(start_score(command), out, parts=2)
    manifest = json.loads((out.with_name(out.name + ".work") / "manifest.json").read_text())
    result = run_score(command)

    assert result.returncode == 0, result.stderr
    stamp = pd.Timestamp(manifest["scored_at_us"], unit="us").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert set(read_output(out)["scored_at"]) == {stamp}


def test_changed_inputs_start_over_cleanly(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    first = score_command(small_export_dir, out, model_dir, *CHECKPOINTED_OPTIONS, "--workers", "1")
    _kill_after_parts(start_score(first), out, parts=3)
    moved = (*CHECKPOINTED_OPTIONS, "--workers", "1", "--as-of", "2026-01-15")

    result = run_score(score_command(small_export_dir, out, model_dir, *moved))
    reference = tmp_path / "reference.parquet"
    run_score(score_command(small_export_dir, reference, model_dir, *moved))

    assert result.returncode == 0, result.stderr
    assert "batch starting over" in result.stderr
    chunks = _summary(out)["chunks"]
    assert isinstance(chunks, dict)
    assert chunks["resumed"] == 0
    assert out.read_bytes() == reference.read_bytes()
    assert set(read_output(out)["as_of"]) == {pd.Timestamp("2026-01-15", tz="UTC")}


class _StoppedError(Exception):
    """The job was stopped on purpose."""


class _StopAfterChunks:
    """Progress that stops the job once ``chunks`` chunks are checkpointed."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks

    def start(self, total: int, done: int) -> None:
        """Nothing to show."""

    def advance(self, rows: int) -> None:
        """One more chunk is checkpointed; stop when enough are."""
        self.left -= 1
        if self.left == 0:
            raise _StoppedError

    def close(self) -> None:
        """Nothing to close."""


@pytest.mark.parametrize(
    ("written_by", "resumed"),
    [("this code", 2), ("the code before format 2", 0), ("newer code", 0)],
)
def test_a_work_directory_of_another_format_starts_over(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, written_by: str, resumed: int
) -> None:
    # Given a job stopped after two chunks, its manifest as the given code would write it
    out = tmp_path / "scores.parquet"
    job = request(small_export_dir, out, model_dir, chunk_leads=100)
    with pytest.raises(_StoppedError):
        run_batch(job, progress=_StopAfterChunks(2))
    manifest_path = out.with_name(out.name + ".work") / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["format"] == MANIFEST_FORMAT
    formats = {"this code": MANIFEST_FORMAT, "the code before format 2": 1}
    manifest["format"] = formats.get(written_by, MANIFEST_FORMAT + 1)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    # When it is started again with the same arguments
    summary = run_batch(job)

    # Then only a work directory of this code's format is resumed
    assert summary.document["chunks"]["resumed"] == resumed


def _kill_once_strays_are_set_aside(process: subprocess.Popen[bytes], out: Path) -> None:
    """SIGKILL the job once it has found mistyped dates and checkpointed two chunks scored
    with them set aside."""
    work = out.with_name(out.name + ".work")
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, "the job ended before it reached that point"
        assert time.monotonic() < deadline, "the job never set mistyped dates aside"
        try:
            manifest = json.loads((work / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not written yet, or being replaced
            manifest = {}
        if manifest.get("stray_cut") is not None:
            parts = work / f"parts-{manifest['as_of_us']}"
            if len(list(parts.glob("part-*.arrow"))) >= 2:
                break
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_job_killed_after_it_set_mistyped_dates_aside_resumes_to_identical_bytes(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export with one activity dated months after its end (a mistyped date)
    export = tmp_path / "export"
    shutil.copytree(small_export_dir, export)
    activities = pd.read_parquet(export / "activities.parquet")
    activities.loc[15, "occurred_at"] = pd.Timestamp("2026-10-15T09:00:00Z")
    activities.to_parquet(export / "activities.parquet", index=False)
    clean = tmp_path / "clean" / "scores.parquet"
    clean.parent.mkdir()
    whole = run_score([*score_command(export, clean, model_dir, *CHECKPOINTED_OPTIONS)])
    assert whole.returncode == EXIT_REJECTED, whole.stderr

    # When a job over it is killed while it scores again with that row set aside
    out = tmp_path / "scores.parquet"
    command = score_command(export, out, model_dir, *CHECKPOINTED_OPTIONS, "--workers", "1")
    _kill_once_strays_are_set_aside(start_score(command), out)
    resumed = run_score(command)

    # Then the resumed job sets the same row aside and writes the same bytes
    assert resumed.returncode == EXIT_REJECTED, resumed.stderr
    assert "batch resuming" in resumed.stderr
    assert out.read_bytes() == clean.read_bytes()
    rejects = out.with_name(out.name + ".rejects.csv").read_text(encoding="utf-8")
    assert rejects == clean.with_name(clean.name + ".rejects.csv").read_text(encoding="utf-8")
    assert "occurred_at: dated after a gap of 107 days" in rejects
    assert _summary(out)["as_of"] == _summary(clean)["as_of"]


def test_a_resumed_job_keeps_the_clock_of_its_first_start(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a job killed mid-run, then resumed and killed again
    out = tmp_path / "scores.parquet"
    command = score_command(small_export_dir, out, model_dir, *CHECKPOINTED_OPTIONS)
    manifest_path = out.with_name(out.name + ".work") / MANIFEST_FILE
    started = time.time()
    first = _kill_after_parts(start_score([*command, "--workers", "1"]), out, parts=2)
    first_clock = json.loads(manifest_path.read_text(encoding="utf-8"))["clock_us"]
    _kill_after_parts(start_score([*command, "--workers", "1"]), out, parts=first + 2)

    # Then the manifest still holds the first start's clock, which decides what every
    # chunk takes as dated in the future (``ChunkSettings.clock_us``)
    assert json.loads(manifest_path.read_text(encoding="utf-8"))["clock_us"] == first_clock
    assert started <= first_clock / 1e6 <= started + 60
