"""The ``srl`` launcher: process settings made before any command, the environment winning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from srl.launcher import process_defaults

#: Runs the launcher as the console script does, then reports, from inside that process,
#: MLflow's telemetry setting and whether MLflow made a telemetry client at its import.
PROBE = """
import os, sys
from srl.launcher import main
sys.argv = ["srl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
from mlflow.telemetry import get_telemetry_client
from mlflow.telemetry.utils import is_telemetry_disabled
setting = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
print(f"setting={setting} disabled={is_telemetry_disabled()} client={get_telemetry_client()}")
"""


def _launch(arguments: list[str], home: Path, **environment: str) -> str:
    """The probe's report after ``srl ARGUMENTS``, in an environment free of the CI and test
    markers (``PYTEST_CURRENT_TEST``, ``CI``) that turn MLflow's telemetry off by themselves."""
    clean = {"PATH": os.environ["PATH"], "HOME": str(home), "SRL_LOG_LEVEL": "warning"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "arguments", [["--help"], ["serve", "--help"], ["score", "--help"], ["train", "--help"]]
)
def test_srl_commands_send_no_mlflow_telemetry(tmp_path: Path, arguments: list[str]) -> None:
    # When an srl command runs where nothing else turns MLflow's telemetry off
    report = _launch(arguments, tmp_path)

    # Then telemetry is off and MLflow made no client that could send it
    assert report == "setting=true disabled=True client=None"


def test_an_operator_may_opt_in_to_mlflow_telemetry(tmp_path: Path) -> None:
    # When the operator asks for telemetry explicitly, the setting is theirs
    report = _launch(["--help"], tmp_path, MLFLOW_DISABLE_TELEMETRY="false")

    # (no MLflow call is made, so the client made at import never sends anything)
    assert report.startswith("setting=false disabled=False client=<mlflow.telemetry")


def test_a_usage_error_in_a_log_names_a_long_path_on_one_line(tmp_path: Path) -> None:
    # Given an --out longer than a terminal line that cannot be written (it is a directory)
    out = tmp_path / ("nightly-export-" * 8) / "scores.parquet"
    out.mkdir(parents=True)

    # When srl score runs with its stderr going to a log, as under a scheduler
    result = subprocess.run(
        [sys.executable, "-m", "srl", "score", "--data", str(tmp_path), "--out", str(out)],
        env={**os.environ, "SRL_LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    # Then the error is one plain line holding the whole path, as a log search finds it
    assert result.returncode == 2, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert f"Invalid value for --out: {out}: is a directory" in error
    assert "╭" not in result.stderr


def test_a_terminal_keeps_the_framed_errors_and_the_environment_wins(tmp_path: Path) -> None:
    assert "TYPER_USE_RICH" not in process_defaults(stderr_is_terminal=True)
    assert process_defaults(stderr_is_terminal=False)["TYPER_USE_RICH"] == "false"

    # An operator who wants the panels in a log keeps them
    forced = {**os.environ, "TYPER_USE_RICH": "true", "TERMINAL_WIDTH": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "srl", "score", "--data", str(tmp_path), "--out", str(tmp_path)],
        env=forced,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "╭─ Error" in result.stderr


#: Loads every command as ``srl --help`` does, then names the heavy libraries it imported.
IMPORTS_PROBE = """
import sys
import srl.cli
heavy = ("lightgbm", "sklearn", "scipy", "mlflow", "fastapi", "uvicorn", "pyspark")
print(",".join(name for name in heavy if name in sys.modules))
"""


def test_loading_the_commands_imports_no_model_or_server_library() -> None:
    """``srl --help``, ``srl check-policy`` and ``srl validate`` never make a booster, so
    LightGBM (with scikit-learn and SciPy, about 1.2 s), MLflow and the web stack stay out
    of the start-up that every command pays; a command loads what it uses when it runs."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


#: ``srl generate`` run by the launcher, sent SIGTERM by the operating system once a table
#: file is written (as `timeout` or `docker stop` would while it writes).
STOPPED_WHILE_WRITING = """
import os, signal, sys
import features.synthetic as synthetic
from srl.launcher import main

real_write = synthetic._write_table

def write_then_stop(name, frame, path, fmt):
    real_write(name, frame, path, fmt)
    if name == "activities":
        os.kill(os.getpid(), signal.SIGTERM)

synthetic._write_table = write_then_stop
sys.argv = ["srl", "generate", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new directory", "existing export"])
def test_sigterm_stops_a_command_with_its_clean_up_and_exit_143(
    tmp_path: Path, existing: bool
) -> None:
    # Given an output directory, new or holding an export
    out = tmp_path / "export"
    arguments = ["--out", str(out), "--leads", "200"]
    if existing:
        first = subprocess.run([sys.executable, "-m", "srl", "generate", *arguments], check=False)
        assert first.returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()} if existing else {}
    # When SIGTERM arrives while the tables are written
    stopped = subprocess.run(
        [sys.executable, "-c", STOPPED_WHILE_WRITING, *arguments, "--seed", "2", "--overwrite"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # Then the command ends with 128 + 15, and its staged files are gone
    assert stopped.returncode == 143, stopped.stderr
    assert [p.name for p in tmp_path.iterdir()] == (["export"] if existing else [])
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


#: As above, SIGTERM sent once the first table file has moved into place.
STOPPED_WHILE_PUBLISHING = """
import os, signal, sys
from srl.launcher import main

real_replace = os.replace

def replace_then_stop(source, target):
    real_replace(source, target)
    if str(target).endswith("leads.parquet"):
        os.kill(os.getpid(), signal.SIGTERM)

os.replace = replace_then_stop
sys.argv = ["srl", "generate", *sys.argv[1:]]
main()
"""


def test_sigterm_while_files_move_into_place_waits_until_all_have_moved(tmp_path: Path) -> None:
    # Given an export, and the export another seed gives
    out, expected = tmp_path / "export", tmp_path / "expected"
    for folder, seed in ((out, "1"), (expected, "2")):
        made = subprocess.run(
            [sys.executable, "-m", "srl", "generate", "--out", str(folder), "--leads", "200",
             "--seed", seed],
            check=False,
        )  # fmt: skip
        assert made.returncode == 0
    # When SIGTERM arrives after the first file of the new seed has replaced its old one
    stopped = subprocess.run(
        [sys.executable, "-c", STOPPED_WHILE_PUBLISHING, "--out", str(out), "--leads", "200",
         "--seed", "2", "--overwrite"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    # Then the command still stops with 143, but only once every file is the new one
    assert stopped.returncode == 143, stopped.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        p.name: p.read_bytes() for p in expected.iterdir()
    }


def test_a_command_started_with_sighup_ignored_keeps_ignoring_it() -> None:
    # Given srl started under nohup (SIGHUP ignored), whose terminal then goes away
    script = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from srl.launcher import main\n"
        "import srl.cli\n"
        "srl.cli.main = lambda: (os.kill(os.getpid(), signal.SIGHUP), print('survived'))\n"
        "main()\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    # Then the command carries on as nohup asked
    assert (result.returncode, result.stdout.strip()) == (0, "survived"), result.stderr
