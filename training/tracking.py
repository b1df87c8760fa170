"""MLflow tracking for training runs: the store, the experiment and what a run records.

The store is ``MLFLOW_TRACKING_URI`` or the embedded sqlite database ``.srl/mlflow.db``
(created on first use, with artifacts in ``.srl/mlartifacts``); see
``features.tracking_store``. Nothing is configured or created at import time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from features.contract import EVENT_TIME_COLUMN
from features.dataset import ExampleSet
from features.error_text import error_summary, without_credentials
from features.export_end import table_spans
from features.loading import Export
from features.tracking_store import (
    TRACKING_VARIABLE,
    artifact_root,
    is_local_store,
    sqlite_path,
    tracking_uri,
)

logger = logging.getLogger(__name__)

PACKAGE = "srl-rebound"
ENVIRONMENT_PACKAGES = (
    "mlflow",
    "lightgbm",
    "numpy",
    "pandas",
    "scikit-learn",
    "pydantic",
    "optuna",
    "shap",
    "pyarrow",
)
MAX_PARAM_LENGTH = 500
#: MLflow prints a link to every run it ends on a tracking server, to stdout, with the
#: server's address as given: ``user:password@`` included.
SUPPRESS_RUN_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


@contextmanager
def using_store() -> Iterator[str]:
    """Point MLflow at the configured store for the duration of the block.

    The embedded sqlite store gets its folder on first use. MLflow's process-wide tracking
    URI (and ``MLFLOW_TRACKING_URI``) are restored afterwards, so a training run never
    redirects other MLflow users of the process. A URI with credentials keeps MLflow from
    printing its run links, which would show them.
    """
    uri = tracking_uri()
    database = sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        _create_sqlite_store(database, uri)
    saved = {name: os.environ.get(name) for name in (TRACKING_VARIABLE, SUPPRESS_RUN_LINKS)}
    if without_credentials(uri) != uri:  # MLflow's run links would print the password
        os.environ[SUPPRESS_RUN_LINKS] = "true"
    try:
        with _use_tracking_uri(uri):
            yield uri
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def store_failure(error: BaseException) -> str:
    """A failure of the tracking store or registry on one line, naming the store without
    the credentials its URI may carry (as ``srl models`` and ``srl evaluate`` do)."""
    return f"{error_summary(error)} (tracking store {without_credentials(tracking_uri())})"


def _create_sqlite_store(database: Path, uri: str) -> None:
    """Open the sqlite store, creating its tables, while no other process of this machine
    opens it through here.

    MLflow creates a fresh database's tables when its tracking or registry store is first
    made, outside any lock: two runs started at once against a new store (two scheduled
    trainings) then both migrate it, and one fails (``table ... already exists``, ``Online
    migration expected to match one row``). Made under an exclusive lock beside the
    database, the first creates the tables and the others find them. MLflow keeps the
    stores it made for the process, so later calls open nothing again.
    """
    lock = database.with_name(database.name + ".create-lock")
    try:  # read-only: flock needs no write access, so a shared store's users may all take it
        handle = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as error:  # a folder this user cannot write: MLflow says what it can
        logger.debug("no store creation lock at %s: %s", lock, error)
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not database.exists():
            _build_database(database)
        # one schema: the tracking store's migrations create the registry's tables too
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    finally:
        os.close(handle)  # releases the lock


def _build_database(database: Path) -> None:
    """Create a new store's tables in a file beside ``database``, then move it into place.

    MLflow's migrations take a second or two; a run stopped among them (Ctrl-C, a killed
    job) left a database whose tables were half made, which every later run then failed to
    migrate (``table logged_models already exists``). Built aside, the database appears
    whole or not at all; what a stopped build left aside is removed by the next one.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    building = database.with_name(database.name + ".building")
    building.unlink(missing_ok=True)
    # A store of its own (not MLflow's per-URI cache), closed before the file moves
    store = SqlAlchemyStore(f"sqlite:///{building}", artifact_root())
    store.engine.dispose()
    os.replace(building, database)


def experiment_id(name: str) -> str:
    """The id of experiment ``name`` in the current store, created when missing.

    In a local store the experiment's artifacts go to ``artifact_root()/<name>``; a tracking
    server keeps its own artifact root. The experiment is not made MLflow's active one:
    runs are started with this id explicitly.
    """
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    try:
        if is_local_store(mlflow.get_tracking_uri()):
            return str(mlflow.create_experiment(name, artifact_location=_artifact_location(name)))
        return str(mlflow.create_experiment(name))
    except MlflowException as error:  # another run created it since
        created = mlflow.get_experiment_by_name(name)
        if created is None:
            raise
        logger.info("experiment %s was created by another run: %s", name, error.error_code)
        return str(created.experiment_id)


def _artifact_location(experiment: str) -> str:
    root = Path(artifact_root())
    root.mkdir(parents=True, exist_ok=True)
    return (root / experiment).as_uri()


def flat_params(document: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: ``lightgbm.learning_rate`` -> ``"0.02"``."""
    params: dict[str, str] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            params.update(flat_params(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            params[name] = text[:MAX_PARAM_LENGTH]
    return params


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(export: Export) -> dict[str, str]:
    """Each table file's SHA-256, by table name."""
    return {name: file_digest(path) for name, path in sorted(export.files.items())}


def export_digest(files: dict[str, str]) -> str:
    """One digest of an export's files (``file_digests``): the run tag ``srl.data_digest``."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def data_fingerprint(export: Export, examples: ExampleSet) -> dict[str, Any]:
    """What data a run saw: file hashes, row counts, time span, example and censored counts,
    and the loader's warnings (a stale table, unknown activity types)."""
    files = file_digests(export)
    combined = export_digest(files)
    labels = examples.labels
    censored = int(labels.censored.sum()) if labels is not None else 0
    return {
        "digest": combined,
        "files": {
            name: {"file": export.files[name].name, "sha256": h} for name, h in files.items()
        },
        "rows": {name: len(frame) for name, frame in sorted(export.tables.items())},
        "time_span": _time_span(export),
        "snapshot_at": export.snapshot_at.isoformat(),
        "examples": len(examples),
        "censored": censored,
        "uncensored": len(examples) - censored,
        "export_warnings": list(export.warnings),
    }


def _time_span(export: Export) -> dict[str, list[str | None]]:
    """Each contract table's first and last event time (None, None for a table without)."""
    spans = table_spans(export.tables)
    return {
        table: [spans[table][0].isoformat(), spans[table][1].isoformat()]
        if table in spans
        else [None, None]
        for table in EVENT_TIME_COLUMN
    }


def code_version() -> dict[str, Any]:
    """The package version and, when run from a git checkout, its commit and dirty flag."""
    version: dict[str, Any] = {"package": PACKAGE, "version": _version(PACKAGE)}
    root = Path(__file__).resolve().parent.parent
    commit = _git(root, "rev-parse", "HEAD")
    if commit is not None:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        version.update({"git_commit": commit, "git_dirty": bool(status)})
    return version


def environment() -> dict[str, Any]:
    """Python, platform, cores and the versions of the packages that shape the model."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _version(name) for name in ENVIRONMENT_PACKAGES},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Only the finite values (MLflow refuses NaN in some stores)."""
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
