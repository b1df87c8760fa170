"""``srl serve``: options, and threads that never oversubscribe the cores."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from serving.cli import available_cores, cap_loaded_thread_pools, threads_per_worker
from srl.cli import app as srl_app
from srl.cli import configure_logging
from tests.servers import SRL, eventually, free_port, running
from tests.serving.request_support import example_items


@pytest.mark.parametrize(
    ("workers", "requested", "cores", "threads"),
    [
        (1, 1, 2, 1),
        (1, 0, 2, 2),
        (2, 0, 2, 1),
        (2, 4, 2, 1),
        (4, 0, 2, 1),
        (2, 0, 8, 4),
        (3, 2, 8, 2),
    ],
)
def test_workers_times_threads_fit_the_cores(
    workers: int, requested: int, cores: int, threads: int
) -> None:
    assert threads_per_worker(workers, requested, cores) == threads
    assert workers * threads <= max(cores, workers)


def test_the_cores_are_those_this_process_may_run_on() -> None:
    # Given a process allowed on one core only (a container's cpuset, taskset)
    one = min(os.sched_getaffinity(0))
    probe = "from serving.cli import available_cores; print(available_cores())"
    # When it counts its cores
    result = subprocess.run(
        [sys.executable, "-c", probe],
        preexec_fn=lambda: os.sched_setaffinity(0, {one}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it counts that one, whatever the machine has
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert available_cores() == len(os.sched_getaffinity(0))


def test_serve_explains_every_option() -> None:
    result = CliRunner().invoke(srl_app, ["serve", "--help"], env={"COLUMNS": "240"})

    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--workers",
        "--model",
        "--policy",
        "--reload-interval",
        "--threads",
        "--max-batch-items",
        "--timeout",
        "--allow-public-bind",
        "--log-level",
    ):
        assert option in result.output


@pytest.mark.usefixtures("restored_environ")
def test_serve_reads_an_option_left_out_from_its_environment_variable() -> None:
    environment = {"SRL_HOST": "0.0.0.0", "SRL_PORT": "1", "SRL_API_KEYS": ""}

    result = CliRunner().invoke(srl_app, ["serve"], env=environment)

    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output


@pytest.mark.usefixtures("restored_environ")
def test_an_option_given_wins_over_its_environment_variable() -> None:
    environment = {"SRL_HOST": "127.0.0.1", "SRL_API_KEYS": ""}

    result = CliRunner().invoke(
        srl_app, ["serve", "--host", "0.0.0.0", "--port", "1"], env=environment
    )

    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output


@pytest.mark.usefixtures("restored_environ")
def test_serve_refuses_an_unknown_log_level() -> None:
    result = CliRunner().invoke(srl_app, ["serve", "--port", "1"], env={"SRL_LOG_LEVEL": "loud"})

    assert result.exit_code == 2
    assert "--log-level must be one of" in result.output


@pytest.mark.usefixtures("restored_environ")
def test_a_short_key_is_refused_without_showing_any_key() -> None:
    # Given a real key and a short one in SRL_API_KEYS
    secret = "ThisIsMyRealSecretKey123"
    environment = {"SRL_API_KEYS": f"{secret},short"}

    result = CliRunner().invoke(srl_app, ["serve", "--port", "1"], env=environment)

    # Then the start is refused naming the variable and the rule, and no key is printed
    assert result.exit_code == 2
    assert "SRL_API_KEYS: every API key must be at least 16 characters long" in result.output
    assert secret not in result.output
    assert "short" not in result.output.replace("at least", "")


@pytest.mark.usefixtures("restored_environ")
def test_a_port_out_of_range_is_a_usage_error() -> None:
    result = CliRunner().invoke(srl_app, ["serve", "--port", "99999"], env={"COLUMNS": "240"})

    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.output
    assert "less than or equal to 65535" in result.output


@pytest.mark.slow
def test_a_server_started_from_the_environment_alone_uses_it(
    model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    environment = {
        "SRL_PORT": str(port),
        "SRL_MODEL_URI": str(model_dir),
        "SRL_MAX_BATCH_ITEMS": "2",
        "SRL_LOG_LEVEL": "warning",
    }
    base = f"http://127.0.0.1:{port}"

    with running([SRL, "serve"], f"{base}/readyz", tmp_path / "serve.log", environment):
        two = httpx.post(f"{base}/v1/score/batch", json={"items": example_items(2)})
        three = httpx.post(f"{base}/v1/score/batch", json={"items": example_items(3)})

    assert two.status_code == 200
    assert three.status_code == 422
    assert "items" in [field["field"] for field in three.json()["error"]["fields"]]


def test_pools_loaded_before_serve_set_its_variables_are_capped() -> None:
    import lightgbm  # noqa: F401 - loads OpenMP, as ``srl`` does before ``srl serve`` runs
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=None):  # restores the pools' limits afterwards
        before = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
        cap_loaded_thread_pools(1)
        after = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}

    assert any(pool["user_api"] == "openmp" for pool in threadpool_info())
    assert set(after) == set(before)
    assert set(after.values()) == {1}


@pytest.mark.usefixtures("restored_environ")
def test_serve_refuses_a_port_in_use_before_loading_anything(tmp_path: Path) -> None:
    # Given a port another process listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # When srl serve is asked for it (a model that does not exist: nothing is loaded)
        result = CliRunner().invoke(
            srl_app, ["serve", "--port", str(port), "--model", str(tmp_path / "absent")]
        )

    # Then it exits 1 naming the address, not uvicorn's 3 after a model load
    assert result.exit_code == 1, result.output
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output


def test_an_unknown_srl_log_level_is_a_usage_error_for_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "srl", "models"],
        env={**os.environ, "SRL_LOG_LEVEL": "verbose"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    expected = "Error: SRL_LOG_LEVEL: must be one of debug, info, warning, error, critical"
    assert result.stderr.strip() == expected


def test_log_level_on_the_command_line_overrides_an_unknown_srl_log_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an unknown level in the environment
    monkeypatch.setenv("SRL_LOG_LEVEL", "verbose")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)

    # When `srl serve --log-level debug` starts, its logging is set up from the option
    configure_logging(["serve", "--log-level", "debug"])
    assert root.level == logging.DEBUG
    configure_logging(["serve", "--log-level=WARNING"])

    # And without the option the variable is still a usage error
    with pytest.raises(SystemExit) as stopped:
        configure_logging(["serve"])
    assert stopped.value.code == 2


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started and that still run (Linux's /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_the_workers_end_with_a_server_killed_by_sigkill(model_dir: Path, tmp_path: Path) -> None:
    # Given srl serve with two workers, serving
    port = free_port()
    command = [SRL, "serve", "--port", str(port), "--workers", "2", "--model", str(model_dir)]
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), seconds=120)
            workers = _children(server.pid)
            assert len(workers) >= 2

            # When the supervising process is killed outright (kill -9, the OOM killer)
            server.kill()
            server.wait(timeout=30)

            # Then its workers end too, freeing the port for a restart
            eventually(lambda: not any(_running(pid) for pid in workers), seconds=60)
        finally:
            for pid in _children(server.pid) | {server.pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
