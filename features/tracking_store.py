"""Where MLflow runs and registered models live, shared by training, the API and batch jobs.

By default the tracking store and model registry is an embedded sqlite database under
``.srl/`` in the working directory (created by the first training run), with artifacts in
``.srl/mlartifacts``. ``MLFLOW_TRACKING_URI`` points everything at any other store, such as
a ``mlflow server``; ``MLFLOW_REGISTRY_URI`` separates the registry when needed and
``SRL_ARTIFACT_ROOT`` moves the artifacts of experiments this project creates. Nothing is
read or created when this module is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

STORE_DIRECTORY = ".srl"
DATABASE_FILE = "mlflow.db"
ARTIFACT_DIRECTORY = "mlartifacts"
TRACKING_VARIABLE = "MLFLOW_TRACKING_URI"
REGISTRY_VARIABLE = "MLFLOW_REGISTRY_URI"
ARTIFACT_VARIABLE = "SRL_ARTIFACT_ROOT"


def default_tracking_uri() -> str:
    """The embedded store: ``sqlite:///<cwd>/.srl/mlflow.db``."""
    return f"sqlite:///{Path.cwd() / STORE_DIRECTORY / DATABASE_FILE}"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded sqlite store."""
    return os.environ.get(TRACKING_VARIABLE) or default_tracking_uri()


def registry_uri() -> str:
    """``MLFLOW_REGISTRY_URI`` when set, else the tracking URI."""
    return os.environ.get(REGISTRY_VARIABLE) or tracking_uri()


def artifact_root() -> str:
    """Where new experiments keep artifacts in a local store.

    ``SRL_ARTIFACT_ROOT`` when set, else ``mlartifacts`` beside the sqlite database (for the
    embedded store, ``.srl/mlartifacts``). A tracking server chooses its own artifact root.
    """
    configured = os.environ.get(ARTIFACT_VARIABLE)
    if configured:
        return str(Path(configured).resolve())
    database = sqlite_path(tracking_uri())
    if database is not None:
        return str(database.resolve().parent / ARTIFACT_DIRECTORY)
    return str(Path.cwd() / STORE_DIRECTORY / ARTIFACT_DIRECTORY)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def is_local_store(uri: str) -> bool:
    """Whether the store keeps its artifacts on this machine (sqlite or a plain folder)."""
    return urlparse(uri).scheme in ("sqlite", "file", "")
