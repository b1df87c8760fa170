"""The ``srl`` console script: subcommands are thin wrappers over package functions."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

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


def configure_logging(arguments: Sequence[str] | None = None) -> None:
    """Plain key=value log lines on stderr; level from ``--log-level`` when the command line
    gives one (``srl serve``), else from ``SRL_LOG_LEVEL`` (default INFO).

    An unknown ``SRL_LOG_LEVEL`` is a usage error (exit 2) naming the variable, as for every
    ``SRL_*`` setting, before any command runs, unless ``--log-level`` overrides it (an
    unknown ``--log-level`` is the command's own usage error).
    """
    given = _log_level_option(sys.argv[1:] if arguments is None else arguments)
    if given is not None:
        level = given if given in LOG_LEVELS else "info"
    else:
        level = os.environ.get("SRL_LOG_LEVEL", "info").strip().lower()
        if level not in LOG_LEVELS:
            sys.stderr.write(f"Error: SRL_LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}\n")
            raise SystemExit(2)
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


def _log_level_option(arguments: Sequence[str]) -> str | None:
    """The value of ``--log-level VALUE`` or ``--log-level=VALUE`` (lower case), if given."""
    for index, argument in enumerate(arguments):
        if argument == "--log-level" and index + 1 < len(arguments):
            return arguments[index + 1].strip().lower()
        if argument.startswith("--log-level="):
            return argument.partition("=")[2].strip().lower()
    return None


def main() -> None:
    """Entry point of the ``srl`` console script."""
    configure_logging()
    app()
