"""The ``srl`` console script's entry point: process settings first, then the commands."""

from __future__ import annotations

import os
import sys
from types import FrameType

#: Set before any import, the environment winning. OpenMP reads its variables when
#: LightGBM's runtime loads: a passive wait keeps idle OpenMP threads from spinning on a busy
#: 2-core machine. MLflow's download progress bars (a model loaded from the registry) would
#: interleave with the log lines of every command (``srl score``, ``evaluate``, ``serve``).
#: MLflow 3 sends usage telemetry (to ``config.mlflow-telemetry.io``) from the moment it is
#: imported: a scoring service and the batch and training jobs do not phone home unless the
#: operator sets ``MLFLOW_DISABLE_TELEMETRY=false``.
PROCESS_DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def process_defaults(stderr_is_terminal: bool) -> dict[str, str]:
    """The defaults of this process. Written to a log or a pipe rather than a terminal, a
    usage error is click's plain ``Error: ...`` line: Typer's framed panel is 80 columns
    wide there, splitting a long ``--out`` path across lines a scheduler's log search would
    not find."""
    if stderr_is_terminal:
        return dict(PROCESS_DEFAULTS)
    return {**PROCESS_DEFAULTS, "TYPER_USE_RICH": "false"}


def exit_on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """Stop the command with exit code 128 + ``signum``, as a shell reports a process the
    signal ended, but by an exception, so that its clean-up runs: temporary and staged
    files are removed, an MLflow run is marked failed. The batch job and the server put
    their own handlers in place while they run."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Set the process defaults (the environment wins), then run the ``srl`` application.

    SIGTERM and SIGHUP (``serving.batch_signals.STOP_SIGNALS``) stop a command as Ctrl-C
    does, unless the process was started with the signal ignored (``nohup``): that stays.
    """
    from serving.batch_signals import handle_stop_signals

    handle_stop_signals(exit_on_stop_signal)
    for name, value in process_defaults(sys.stderr.isatty()).items():
        os.environ.setdefault(name, value)
    from srl.cli import main as run

    run()
