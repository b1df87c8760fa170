"""Running a command on a disk that fills up: a small file-size limit in the child process.

With ``RLIMIT_FSIZE`` set and ``SIGXFSZ`` ignored, every write past the limit fails with
``EFBIG`` (``File too large``) as a full disk fails with ``ENOSPC``: the real writers meet a
real error at the real point, nothing is mocked.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

#: What starts coverage in a child process (``patch = ["subprocess"]`` in pyproject.toml).
COVERAGE_VARIABLES = frozenset({"COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"})


def srl_command(*arguments: str) -> list[str]:
    """The ``srl`` command line for a subprocess."""
    return [sys.executable, "-m", "srl", *arguments]


def run_on_small_disk(command: list[str], max_file_bytes: int) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to completion where no file may grow past ``max_file_bytes``."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in COVERAGE_VARIABLES  # coverage could not save its data there either
    } | {"SRL_LOG_LEVEL": "WARNING", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=environment,
        preexec_fn=limit_file_size,
        check=False,
    )
