"""A batch job stopped by a signal (``timeout``, systemd, ``kill <pid>``, Ctrl-C) stops as it
does on a failure: its workers end with it, its summary says it was stopped, nothing is
published, and a rerun resumes to the bytes of an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from serving import batch_local, batch_signals
from serving.batch import run_batch
from serving.batch_job import summary_path
from serving.batch_signals import JobStopped
from tests.serving.batch_support import (
    CHECKPOINTED_OPTIONS,
    request,
    run_score,
    score_command,
    start_score,
    wait_for_parts,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _signal_after_parts(
    process: subprocess.Popen[bytes], out: Path, parts: int, signum: int
) -> int:
    """Send ``signum`` to the job's main process alone once ``parts`` chunks are
    checkpointed (its workers are running then); wait for the job to end."""
    wait_for_parts(process, out, parts)
    os.kill(process.pid, signum)
    return process.wait()


def _stat_fields(process: Path) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first, session
    fourth), or None when the process is gone or a zombie."""
    try:
        fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):  # it ended while being read
        return None
    return None if fields[0] == "Z" else fields


def _session_processes(session: int) -> list[str]:
    """The command lines of the processes still alive in ``session``."""
    alive = []
    for process in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(process)
        if fields is None or int(fields[3]) != session:
            continue
        try:
            command = (process / "cmdline").read_bytes()
        except OSError:  # it ended while being read
            continue
        alive.append(command.replace(b"\0", b" ").decode(errors="replace"))
    return alive


def _orphans(session: int) -> list[str]:
    """The processes the job left behind, once those ending with it have ended."""
    deadline = time.monotonic() + 60  # the resource tracker ends once the job has exited
    while (alive := _session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_job_stopped_by_a_signal_ends_its_workers_says_so_and_resumes(
    small_export_dir: Path, model_dir: Path, uninterrupted: Path, tmp_path: Path, signum: int
) -> None:
    # Given the ok summary of an earlier night, and a job running a pool of two workers
    out = tmp_path / "scores.parquet"
    summary_path(out).write_bytes(summary_path(uninterrupted).read_bytes())
    command = score_command(
        small_export_dir, out, model_dir, *CHECKPOINTED_OPTIONS, "--workers", "2"
    )
    log = tmp_path / "job.log"
    job = start_score(command, log)

    # When its main process alone is sent the signal (as `kill <pid>` or `timeout` do)
    code = _signal_after_parts(job, out, parts=2, signum=signum)

    # Then it exits with 128 + the signal's number, ends its workers, publishes nothing,
    # and its summary says which signal stopped it
    assert code == 128 + signum, log.read_text(encoding="utf-8", errors="replace")[-4000:]
    assert _orphans(job.pid) == []
    assert not out.exists()
    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert (summary["status"], summary["exit_code"]) == ("failed", 128 + signum)
    assert summary["failures"][0]["error"] == "JobStopped"
    assert f"stopped by {signal.Signals(signum).name}" in summary["failures"][0]["message"]
    assert summary["model"]["version"] is not None

    # And started again, it resumes from its checkpoints to the uninterrupted run's bytes
    resumed = run_score(command)
    assert resumed.returncode == 0, resumed.stderr
    assert "batch resuming" in resumed.stderr
    assert json.loads(summary_path(out).read_text(encoding="utf-8"))["chunks"]["resumed"] >= 2
    assert out.read_bytes() == uninterrupted.read_bytes()
    assert not out.with_name(out.name + ".work").exists()


def test_an_error_raised_while_the_job_stops_is_the_stop(
    small_export_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job whose pool clean-up fails on the way out of a stop (as a file removed under
    # it or a broken pipe would make it fail), and SIGTERM once its chunks are submitted
    def terminate_then_fail(pool: Any) -> None:
        real_terminate(pool)
        raise OSError(errno.ENOTEMPTY, "Directory not empty")

    def stop_then_collect(*arguments: Any) -> Any:
        handler = signal.getsignal(signal.SIGTERM)
        assert isinstance(handler, batch_signals._StopHandler), "the job's handler is not in place"
        os.kill(os.getpid(), signal.SIGTERM)
        return real_collect(*arguments)

    real_terminate, real_collect = batch_local._terminate, batch_local._collect
    monkeypatch.setattr(batch_local, "_terminate", terminate_then_fail)
    monkeypatch.setattr(batch_local, "_collect", stop_then_collect)
    out = tmp_path / "scores.parquet"

    # When it runs, then it ends as stopped by the signal, the clean-up's error behind it
    with pytest.raises(JobStopped) as stopped:
        run_batch(request(small_export_dir, out, model_dir, workers=2, chunk_leads=100))
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert isinstance(stopped.value.__cause__, OSError)
    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert (summary["status"], summary["exit_code"]) == ("failed", 128 + signal.SIGTERM)
    assert summary["failures"][0]["error"] == "JobStopped"
    assert not out.exists()


#: A job that starts one worker, waits until it is ready, writes its pid down and ends
#: outright (no clean-up of any kind, as SIGKILL would).
_JOB_WITH_A_DEAF_WORKER = """
import multiprocessing, os, sys, time
from tests.serving.batch_support import deaf_worker
ready, pid = sys.argv[1], sys.argv[2]
worker = multiprocessing.get_context("spawn").Process(target=deaf_worker, args=(ready,))
worker.start()
while not os.path.exists(ready):
    time.sleep(0.05)
with open(pid, "w") as file:
    file.write(str(worker.pid))
os._exit(0)
"""


def test_a_worker_the_parent_death_signal_cannot_end_still_ends_with_its_job(
    tmp_path: Path,
) -> None:
    # Given a job whose worker ignores SIGTERM, so that the kernel's signal when the job
    # ends cannot end it (as a signal held or lost would not)
    pid = tmp_path / "worker.pid"
    subprocess.run(
        [sys.executable, "-c", _JOB_WITH_A_DEAF_WORKER, str(tmp_path / "ready"), str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    worker = int(pid.read_text())

    # When the job has ended outright, then the worker ends by itself soon after
    deadline = time.monotonic() + 60
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (neither gone nor a zombie)."""
    return _stat_fields(Path(f"/proc/{pid}")) is not None


def test_a_job_killed_outright_leaves_no_worker_behind_and_resumes(
    small_export_dir: Path, model_dir: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    # Given a job running a pool of two workers
    out = tmp_path / "scores.parquet"
    command = score_command(
        small_export_dir, out, model_dir, *CHECKPOINTED_OPTIONS, "--workers", "2"
    )
    job = start_score(command)

    # When its main process alone is killed outright (`kill -9 <pid>`, the out-of-memory
    # killer), so that it cannot end its workers itself
    code = _signal_after_parts(job, out, parts=2, signum=signal.SIGKILL)

    # Then the kernel ends its workers with it, and nothing is published
    assert code == -signal.SIGKILL
    assert _orphans(job.pid) == []
    assert not out.exists()

    # And started again, it takes over the lock left behind and resumes from its
    # checkpoints to the uninterrupted run's bytes
    resumed = run_score(command)
    assert resumed.returncode == 0, resumed.stderr
    assert "batch resuming" in resumed.stderr
    assert out.read_bytes() == uninterrupted.read_bytes()
    assert not out.with_name(out.name + ".work").exists()
