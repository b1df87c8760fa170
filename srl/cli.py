"""The ``srl`` console script: subcommands are thin wrappers over package functions."""

from __future__ import annotations

import logging
import os
import sys

import typer

import features.cli
from serving.logs import LOG_LEVELS

app = typer.Typer(
    name="srl",
    help="SRL Rebound: find the sales-rejected leads worth winning back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
features.cli.register(app)


def _register_optional() -> None:
    """Training and serving commands, registered when those packages are present."""
    import importlib

    for module in ("training.cli", "serving.cli", "serving.batch_cli", "srl.demo"):
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            continue
        loaded.register(app)


_register_optional()


def configure_logging() -> None:
    """Plain key=value log lines on stderr; level from ``SRL_LOG_LEVEL`` (default INFO).

    An unknown level is a usage error (exit 2) naming the variable, as for every ``SRL_*``
    setting, before any command runs.
    """
    level = os.environ.get("SRL_LOG_LEVEL", "info").strip().lower()
    if level not in LOG_LEVELS:
        sys.stderr.write(f"Error: SRL_LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}\n")
        raise SystemExit(2)
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


def main() -> None:
    """Entry point of the ``srl`` console script."""
    configure_logging()
    app()
