"""One job per output: a second ``srl score`` on the same ``--out`` is refused at once, and
leaves the running job's work directory, output and summary alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from serving.batch_job import EXIT_BUSY, EXIT_OK, EXIT_USAGE, summary_path
from serving.policy import load_policy
from tests.serving.batch_support import (
    CHECKPOINTED_OPTIONS,
    read_output,
    run_score,
    score_command,
    start_score,
    wait_for_parts,
)

pytestmark = pytest.mark.slow

OPTIONS = (*CHECKPOINTED_OPTIONS, "--workers", "1")
EARLIER_SUMMARY = '{"status": "ok", "exit_code": 0}'


def _stopped_after_parts(process: subprocess.Popen[bytes], out: Path, parts: int) -> None:
    """Freeze the job (SIGSTOP to its process group) once ``parts`` chunks are checkpointed:
    it holds its output for as long as the test needs."""
    wait_for_parts(process, out, parts)
    os.killpg(process.pid, signal.SIGSTOP)


@pytest.fixture
def other_policy(tmp_path: Path) -> Path:
    """The packaged policy under another name: a job using it routes under another label."""
    document = load_policy().model_dump(mode="json")
    document["name"] = "other"
    path = tmp_path / "other-policy.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("second", ["same arguments", "another policy", "a refused option"])
def test_a_second_job_on_the_same_output_is_refused_and_leaves_the_first_alone(
    small_export_dir: Path, model_dir: Path, other_policy: Path, tmp_path: Path, second: str
) -> None:
    # Given an earlier night's summary, and a job writing the same output, caught mid-run
    out = tmp_path / "scores.parquet"
    summary = summary_path(out)
    summary.write_text(EARLIER_SUMMARY, encoding="utf-8")
    first = start_score(score_command(small_export_dir, out, model_dir, *OPTIONS))
    try:
        _stopped_after_parts(first, out, parts=2)
        checkpoints = _checkpoints(out)

        # When a second job is started on the same output
        extra = {
            "same arguments": (),
            "another policy": ("--policy", str(other_policy)),
            "a refused option": ("--reasons", "many"),
        }[second]
        refused = run_score(score_command(small_export_dir, out, model_dir, *OPTIONS, *extra))
        untouched = _checkpoints(out) == checkpoints
        summary_left = summary.read_text(encoding="utf-8")
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    finished = first.wait()

    # Then it is refused at once, naming the output and saying another job writes it (or
    # what of its command line is wrong), and touches nothing: the running job keeps its
    # checkpoints and its summary (the earlier night's until it ends), and finishes alone
    (error,) = [line for line in refused.stderr.splitlines() if line.startswith("Error: ")]
    if second == "a refused option":
        assert refused.returncode == EXIT_USAGE, refused.stderr
        assert "--reasons" in error
    else:
        assert refused.returncode == EXIT_BUSY, refused.stderr
        assert error.startswith(f"Error: {out}: another srl score job is writing this output")
    assert "Traceback" not in refused.stderr
    assert untouched
    assert summary_left == EARLIER_SUMMARY
    assert finished == EXIT_OK
    assert json.loads(summary.read_text(encoding="utf-8"))["policy"] == "default@v5"
    assert set(read_output(out)["policy"]) == {"default@v5"}
    assert not out.with_name(out.name + ".lock").exists()


def _checkpoints(out: Path) -> dict[str, bytes]:
    """Every file of the job's work directory, by its path there."""
    work = out.with_name(out.name + ".work")
    return {str(p.relative_to(work)): p.read_bytes() for p in work.rglob("*") if p.is_file()}
