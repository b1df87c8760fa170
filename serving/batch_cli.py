"""``srl score``: the nightly batch job, a thin wrapper over ``serving.batch.run_batch``."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click import Context
from typer._click.exceptions import UsageError  # typer vendors click and exports neither
from typer.core import TyperCommand

from features.cli import MOMENT_METAVAR, contract_moment
from features.model_store import ModelLoadError
from features.output import OutputPathError, describe_os_error
from features.problems import ContractError
from serving.batch import run_batch
from serving.batch_guard import DEFAULT_MAX_REJECTED_SHARE, GUARDED_TABLES
from serving.batch_job import (
    DEFAULT_CHUNK_LEADS,
    DEFAULT_MODEL_URI,
    EXIT_BUSY,
    EXIT_FAILED,
    BatchError,
    BatchRequest,
    BatchSummary,
    Engine,
)
from serving.batch_lock import OutputBusyError
from serving.batch_signals import JobStopped, stopped_by
from serving.batch_summary import save_usage_failure
from serving.policy import PolicyError
from serving.scoring import ReasonMode
from serving.spark_parquet import GlobPathError


class ScoreCommand(TyperCommand):
    """``srl score``'s command: a refused command line (exit code 2) leaves a failed summary.

    Every option is checked while the command line is parsed (``--engine`` and
    ``--reasons`` are choices), so this one place sees every argument error: a bad
    ``--as-of`` or ``--reasons`` must not leave the ``ok`` of an earlier run standing.
    """

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        """Parse as usual; on a usage error, write the failed summary, then re-raise."""
        given = list(args)  # the parser consumes ``args``
        try:
            return super().parse_args(ctx, args)
        except UsageError as error:
            out = self._given_out(ctx, given)
            if out is not None:
                save_usage_failure(Path(out), _usage_failure(error))
            raise

    def _given_out(self, ctx: Context, given: list[str]) -> str | None:
        """The ``--out`` on the command line as typed, if it can be told.

        A misspelt option does not hide it, nor does a last option without its value
        (``... --chunk-leads``): the words before that one still say where the output goes.
        """
        parser = self.make_parser(ctx)
        parser.ignore_unknown_options = True
        for end in range(len(given), 0, -1):
            with contextlib.suppress(UsageError):
                options, _, _ = parser.parse_args(args=given[:end])
                out = options.get("out")
                return out if isinstance(out, str) and out else None
        return None


def _usage_failure(error: UsageError) -> dict[str, Any]:
    """The summary's failure entry for a refused command line."""
    return {"chunk": None, "error": type(error).__name__, "message": error.format_message()}


def _guarded_tables_option(flag: str, help_text: str) -> Any:
    """A repeatable option naming guarded tables (``GUARDED_TABLES``), each checked."""
    return typer.Option(
        flag, callback=_guarded_tables, metavar=f"[{'|'.join(GUARDED_TABLES)}]", help=help_text
    )


def score(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Export directory (Spark engine: any path Spark reads, no glob characters).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file, .parquet or .csv.")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            parser=contract_moment,
            metavar=MOMENT_METAVAR,
            help="Score rejections open at this moment (UTC unless an offset is given); "
            "default: the export's end (its latest valid timestamp).",
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", help="Model URI: registry alias or version, run, or directory."),
    ] = DEFAULT_MODEL_URI,
    engine: Annotated[Engine, typer.Option("--engine", help="local or spark.")] = "local",
    reasons: Annotated[
        ReasonMode, typer.Option("--reasons", help="none, top (three strongest factors) or all.")
    ] = "none",
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Routing policy YAML (default: packaged).")
    ] = None,
    chunk_leads: Annotated[
        int,
        typer.Option("--chunk-leads", min=1, help="Leads per chunk (checkpoint and memory unit)."),
    ] = DEFAULT_CHUNK_LEADS,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="Local worker processes (0: one per CPU).")
    ] = 0,
    scored_at: Annotated[
        datetime | None,
        typer.Option(
            "--scored-at",
            parser=contract_moment,
            metavar=MOMENT_METAVAR,
            help="Time stamp written in scored_at (default: when the job first started; "
            "a resumed job keeps its first stamp).",
        ),
    ] = None,
    allow_missing: Annotated[
        list[str] | None,
        _guarded_tables_option(
            "--allow-missing",
            "An optional table (consent, opportunities) the job may run without, absent or "
            "empty; repeat for both. Without it such an export fails the job.",
        ),
    ] = None,
    allow_unmatched: Annotated[
        list[str] | None,
        _guarded_tables_option(
            "--allow-unmatched",
            "A table (consent, opportunities) whose rows may name no lead of the export "
            "(set aside); repeat for both. Without it any such row fails the job: an opt-out "
            "that names no lead protects nobody.",
        ),
    ] = None,
    max_rejected_share: Annotated[
        float,
        typer.Option(
            "--max-rejected-share",
            min=0.0,
            max=1.0,
            help="The largest share of any table's rows that may be set aside; more fails "
            "the job (1 never does).",
        ),
    ] = DEFAULT_MAX_REJECTED_SHARE,
) -> None:
    """Score and route every open rejected lead of an export into one file.

    Exit code 0: all rows scored; 3: scored, but some input rows were rejected (see
    <out>.rejects.csv); 1: failed, nothing written at --out, the summary says why (rerun to
    resume), including an export without consent or opportunities (see --allow-missing) or
    with more than --max-rejected-share of a table's rows set aside, or with consent or
    opportunity rows naming no lead (see --allow-unmatched); 2: bad command line,
    including an --out whose files cannot be written, or for the Spark engine a --data
    holding a glob character * ? [ ] { } \\ (checked before any work; the
    summary then says failed too, when it can be written);
    75: another job is writing --out now, try again later (its summary is left alone);
    143 (129, 130): stopped by SIGTERM (SIGHUP, Ctrl-C), nothing written at --out, the
    summary says failed (rerun to resume).
    """
    request = BatchRequest(
        data=data,
        out=out,
        as_of=as_of,
        model_uri=model,
        engine=engine,
        reasons=reasons,
        policy_path=policy,
        chunk_leads=chunk_leads,
        workers=workers,
        scored_at=scored_at,
        allow_missing=frozenset(allow_missing or ()),
        max_rejected_share=max_rejected_share,
        allow_unmatched=frozenset(allow_unmatched or ()),
    )
    try:
        summary = run_batch(request)
    except OutputBusyError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(EXIT_BUSY) from error
    except OutputPathError as error:
        raise typer.BadParameter(str(error), param_hint="--out") from error
    except GlobPathError as error:
        raise typer.BadParameter(str(error), param_hint="--data") from error
    except BatchError as error:
        _echo_summary(error.summary)
        raise typer.Exit(EXIT_FAILED) from error
    except ContractError as error:
        typer.echo(f"{len(error.problems)} problem(s) with the export:", err=True)
        for problem in error.problems:
            typer.echo(f"  - {problem}", err=True)
        raise _failed(request) from error
    except ModelLoadError as error:
        typer.echo(f"model could not be loaded: {error}", err=True)
        raise _failed(request) from error
    except PolicyError as error:
        typer.echo(f"error: {error}", err=True)
        raise _failed(request) from error
    except OSError as error:
        typer.echo(f"error: {describe_os_error(error)}", err=True)
        raise _failed(request) from error
    except (JobStopped, KeyboardInterrupt) as error:
        stop = stopped_by(error)
        assert stop is not None
        typer.echo(f"error: {stop.message}", err=True)
        raise _failed(request, stop.exit_code) from error
    _echo_summary(summary)
    raise typer.Exit(summary.exit_code)


def _guarded_tables(tables: list[str] | None) -> list[str] | None:
    """``--allow-missing``'s or ``--allow-unmatched``'s values, each one of ``GUARDED_TABLES``."""
    for table in tables or ():
        if table not in GUARDED_TABLES:
            choices = ", ".join(GUARDED_TABLES)
            raise typer.BadParameter(f"{table!r} is not one of {choices}")
    return tables


def _failed(request: BatchRequest, exit_code: int = EXIT_FAILED) -> typer.Exit:
    """Say where the failed summary is; the exit for a job that failed before its chunks
    or was stopped by a signal."""
    path = request.summary_path
    written = f"see {path}" if path.is_file() else "no summary could be written"
    typer.echo(f"status: failed (exit code {exit_code}); {written}")
    return typer.Exit(exit_code)


def _echo_summary(summary: BatchSummary) -> None:
    document = summary.document
    lines = [
        f"status: {document['status']} (exit code {document['exit_code']})",
        f"model: {document['model']['uri']} version {document['model']['version']}",
        f"as_of: {document.get('as_of')}  scored_at: {document['scored_at']}",
        *_scored_lines(document),
    ]
    rejected = document.get("rejected_rows")
    if rejected:
        lines.append(
            f"rejected input rows: {rejected['total']:,} {json.dumps(rejected['by_table'])}"
        )
    lines.extend(f"warning: {warning}" for warning in document.get("warnings", []))
    for failure in document.get("failures", []):
        chunk = failure["chunk"]
        where = "failed" if chunk is None or chunk < 0 else f"failed chunk {chunk}"
        lines.append(f"{where}: {failure['error']}: {failure['message']}")
    if "summary_not_written" in document:
        lines.append(f"summary not written: {document['summary_not_written']}")
    typer.echo("\n".join(lines))


def _scored_lines(document: dict[str, Any]) -> list[str]:
    """What was scored, and the open rejections withheld (their lead failed closed)."""
    scored = document.get("scored")
    if not scored:
        return []
    return [
        f"scored: {scored['rows']:,} rows, {scored['suppressed']:,} suppressed, "
        f"{scored['beyond_trained_age']:,} older than the model's trained ages",
        f"tiers: {json.dumps(scored['tiers'])}",
        f"programs: {json.dumps(scored['programs'])}",
        f"withheld: {document.get('withheld', 0):,} open rejection(s) whose lead failed closed",
    ]


def register(app: typer.Typer) -> None:
    """Add ``srl score`` to the ``srl`` application."""
    app.command("score", cls=ScoreCommand)(score)


def main() -> None:
    """Run ``score`` alone: ``python -m serving.batch_cli --data ...``.

    This is also the script to hand to ``spark-submit`` for the Spark engine on a cluster.
    """
    from srl.cli import configure_logging

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(cls=ScoreCommand)(score)
    configure_logging()
    app()


if __name__ == "__main__":
    main()
