"""The ``srl`` console script's entry point: process settings first, then the commands."""

from __future__ import annotations

import os

#: OpenMP reads these when LightGBM's runtime loads, so they are set before any import of
#: it. A passive wait keeps idle OpenMP threads from spinning on a busy 2-core machine.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def main() -> None:
    """Set OpenMP defaults (the environment wins), then run the ``srl`` application."""
    for name, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from srl.cli import main as run

    run()
