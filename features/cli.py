"""``srl validate``, ``srl generate``, ``srl features`` and ``srl catalogue``."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer

from features.catalogue import catalogue_markdown, contract_markdown
from features.config import (
    MAX_HORIZON_DAYS,
    MIN_HORIZON_DAYS,
    FeatureConfig,
    load_feature_config,
)
from features.dataset import ExampleSet, build_training_set
from features.example_columns import LABEL_COLUMNS
from features.loading import load_export
from features.output import (
    OutputPathError,
    atomic_write,
    check_output_directory,
    check_output_file,
    describe_os_error,
    write_table,
    write_text,
)
from features.problems import ContractError
from features.summary import format_summary, summarise_export
from features.table_files import TABLE_FILE_NAMES, check_not_an_export_table
from features.timestamps import as_utc, parse_timestamp

logger = logging.getLogger(__name__)

DataOption = Annotated[
    Path, typer.Option("--data", help="Export directory: leads, activities, rejections, ...")
]
#: How a moment option is shown in ``--help``.
MOMENT_METAVAR = "ISO-8601"


def contract_moment(text: str) -> datetime:
    """A moment given on the command line, read by the data contract's timestamp rule (the
    files' and the API's): ``2026-06-30``, ``2026-06-30T23:01``, ``...:29.123456Z``,
    ``...+02:00``; no offset means UTC. So a summary's ``as_of`` can be given back as is.

    Raises:
        typer.BadParameter: not such a moment (a usage error, exit code 2).
    """
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} {error}") from None


SnapshotOption = Annotated[
    datetime | None,
    typer.Option(
        "--snapshot-at",
        help="The export's end (UTC unless an offset is given) for censoring; default: its "
        "latest event time.",
        parser=contract_moment,
        metavar=MOMENT_METAVAR,
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Feature/training YAML (defaults when absent).")
]


def horizon_days_option(meaning: str) -> Any:
    """A ``--horizon-days`` option that refuses, as a usage error (exit 2), any value the
    feature config would refuse; the range comes from the config's own limits."""
    return typer.Option(
        "--horizon-days",
        min=MIN_HORIZON_DAYS,
        max=MAX_HORIZON_DAYS,
        help=f"{meaning}, {MIN_HORIZON_DAYS} to {MAX_HORIZON_DAYS} days.",
    )


def validate(
    data: DataOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
    horizon_days: Annotated[
        int, horizon_days_option("Horizon used to count observed and censored outcomes")
    ] = 365,
    snapshot_at: SnapshotOption = None,
) -> None:
    """Check an export against the data contract and summarise it (exit 1 on problems)."""
    try:
        export = load_export(data, snapshot_at=as_utc(snapshot_at))
    except ContractError as error:
        _report_problems(error, as_json)
        raise typer.Exit(1) from error
    summary = summarise_export(export, horizon_days)
    typer.echo(
        json.dumps({"valid": True, **summary}, indent=2) if as_json else format_summary(summary)
    )


def checked_output(
    path: Path,
    check: Callable[[Path], Path] = check_output_file,
    option: str = "--out",
    *,
    data: Path | None = None,
) -> Path:
    """``check(path)`` before any work; an unusable output path is a usage error (exit 2).

    Every command that writes files checks its output paths with ``features.output``'s
    checks through this, so they are refused alike, naming the path and why. With ``data``,
    a path that is one of that export's table files is refused too.
    """
    try:
        target = check(path)
        return target if data is None else check_not_an_export_table(target, data)
    except OutputPathError as error:
        raise typer.BadParameter(str(error), param_hint=option) from error


def write_failed(error: OSError) -> typer.Exit:
    """Report a write that failed (which file, and why) and return the exit to raise (1)."""
    typer.echo(f"error: {describe_os_error(error)}", err=True)
    return typer.Exit(1)


def settings_from(config: Path | None) -> FeatureConfig:
    """The feature settings of ``--config``; an unreadable or invalid file exits 1, named."""
    try:
        return load_feature_config(config)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


def _report_problems(error: ContractError, as_json: bool) -> None:
    if as_json:
        problems = [p.to_dict() for p in error.problems]
        document = {"valid": False, "problems": problems, "warnings": error.notes}
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"{len(error.problems)} problem(s):", err=True)
    for problem in error.problems:
        typer.echo(f"  - {problem}", err=True)


#: The most leads ``srl generate`` takes: about 22 GB of memory (4.4 GB per million).
MAX_GENERATED_LEADS = 5_000_000
#: The longest history ``srl generate`` writes, in years.
MAX_GENERATED_YEARS = 10.0


def generate(
    out: Annotated[
        str,
        typer.Option("--out", help="Directory to write the export into (created if missing)."),
    ],
    leads: Annotated[
        int,
        typer.Option(
            "--leads",
            min=1,
            max=MAX_GENERATED_LEADS,
            help="Number of leads (memory: about 4.4 GB per million over four years).",
        ),
    ] = 20_000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (same seed, same files).")
    ] = 7,
    fmt: Annotated[Literal["parquet", "csv"], typer.Option("--format", help="File format.")] = (
        "parquet"
    ),
    years: Annotated[
        float,
        typer.Option(
            "--years",
            min=1.0,
            max=MAX_GENERATED_YEARS,
            help="Years of history, ending 2026-06-30 (a won model needs about six; see "
            "docs/synthetic-data.md).",
        ),
    ] = 4.0,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the table files of an export already in --out (refused otherwise).",
        ),
    ] = False,
) -> None:
    """Generate a realistic synthetic CRM export (deterministic per seed).

    Exit code 0: written; 1: the files could not be written (nothing partial is left at
    --out) or memory ran out; 2: bad command line, including an --out that cannot be
    written or that already holds an export, without --overwrite (checked before any work).
    """
    from features.synthetic import generate_export

    target = checked_output(_generation_directory(out, overwrite), check_output_directory)
    try:
        files = generate_export(target, leads, seed, fmt, years)
    except OSError as error:
        raise write_failed(error) from error
    except MemoryError as error:
        typer.echo(f"error: not enough memory to generate {leads:,} leads", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"wrote {len(files)} tables for {leads:,} leads to {target}")


def _generation_directory(out: str, overwrite: bool) -> Path:
    """``--out`` as a path, refused (exit 2) when empty or when it holds an export already
    and ``--overwrite`` was not given: generated files would replace the export's own."""
    if not out:
        raise typer.BadParameter("is empty; name the directory to write into", param_hint="--out")
    target = Path(out)
    held = sorted(entry.name for entry in _table_files(target))
    if held and not overwrite:
        raise typer.BadParameter(
            f"{target}: already holds an export ({', '.join(held)}); pass --overwrite to "
            "replace its table files with generated ones",
            param_hint="--out",
        )
    return target


def _table_files(directory: Path) -> list[Path]:
    """The contract table files (``<table>.parquet`` or ``.csv``) in ``directory``."""
    if not directory.is_dir():
        return []
    return [entry for entry in directory.iterdir() if entry.name in TABLE_FILE_NAMES]


def features(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Output file, .parquet or .csv.")],
    config: ConfigOption = None,
    snapshot_at: SnapshotOption = None,
) -> None:
    """Write the example table: keys, as_of, features, label and censored flag.

    Exit code 0: written; 1: the export or the config is unusable, or the file could not be
    written (a previous file at --out is left as it was); 2: bad command line, including an
    --out that cannot be written (checked before any work).
    """
    target = checked_output(out, data=data)
    feature_config = settings_from(config)
    try:
        export = load_export(data, snapshot_at=as_utc(snapshot_at))
    except ContractError as error:
        _report_problems(error, as_json=False)
        raise typer.Exit(1) from error
    examples = build_training_set(export, feature_config)
    try:
        write_table(example_frame(examples), target)
    except OSError as error:
        raise write_failed(error) from error
    censored = int(examples.labels.censored.sum()) if examples.labels is not None else 0
    typer.echo(f"wrote {len(examples):,} examples ({censored:,} censored) to {out}")


def example_frame(examples: ExampleSet) -> pd.DataFrame:
    """Keys, readable features (categories as labels), label and censored flag."""
    columns: dict[str, object] = {}
    for spec in examples.features.specs:
        values = examples.features.columns[spec.name]
        if spec.kind == "category":
            labels = pd.Categorical.from_codes(
                pd.Series(values).fillna(-1).astype(int), categories=list(spec.vocabulary)
            )
            columns[spec.name] = labels
        else:
            columns[spec.name] = values
    keys = examples.keys.drop(columns=[c for c in examples.keys.columns if c in columns])
    frame = pd.concat([keys, pd.DataFrame(columns)], axis=1)
    if examples.labels is not None:
        for column, field in LABEL_COLUMNS.items():
            frame[column] = getattr(examples.labels, field)
    return frame


def catalogue(
    docs: Annotated[Path, typer.Option("--docs", help="Folder to write the Markdown into.")] = Path(
        "docs"
    ),
    config: ConfigOption = None,
) -> None:
    """Write docs/feature-catalogue.md and docs/data-contract.md, generated from the code."""
    checked_output(docs, check_output_directory, "--docs")
    written = {
        docs / "feature-catalogue.md": catalogue_markdown(settings_from(config)),
        docs / "data-contract.md": contract_markdown(),
    }
    for path, text in written.items():
        try:
            atomic_write(path, functools.partial(write_text, text=text))
        except OSError as error:
            raise write_failed(error) from error
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``srl`` application."""
    app.command()(validate)
    app.command()(generate)
    app.command()(features)
    app.command()(catalogue)
