"""Where the serving model comes from, which version it is, and whether the source moved.

A registry URI names a version through an alias (``models:/srl-reconversion@champion``):
polling asks the registry which version the alias points at now. A local directory has no
registry version; its version is a fingerprint of its files, so a reload after the files
(or a symlink to them) changed names a new version, and an unchanged directory does not. A
run's model (``runs:/<id>/model``) is named by its run (``run-<id>``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.error_text import error_summary
from features.model_store import (
    LOCAL_VERSION,
    LoadedModel,
    ModelLoadError,
    check_registry_exists,
    is_local_uri,
    load_model,
    local_path,
    registry_reference,
)
from features.predictor import ReconversionModel

FINGERPRINT_CHARS = 12

Loader = Callable[[str, int], LoadedModel]


@dataclass(frozen=True)
class ModelIdentity:
    """Which model is serving.

    Attributes:
        uri: the URI it was loaded from.
        name: registered model name (None for a local directory).
        version: registry version, ``local-<fingerprint>`` for a directory (or an artifact
            URI outside any run), ``run-<run id>`` for a run's model.
        alias: the alias in the URI, if any.
        run_id: the MLflow run that logged it, when known.
        loaded_at: when this process loaded it.
    """

    uri: str
    name: str | None
    version: str
    alias: str | None
    run_id: str | None
    loaded_at: datetime


def load_serving_model(
    uri: str, num_threads: int, load: Loader = load_model
) -> tuple[ReconversionModel, ModelIdentity]:
    """Load the model behind ``uri`` with its identity.

    A local directory is fingerprinted before and after loading: files that changed in
    between (a copy finishing) may be half of either state, so the load is refused rather
    than served under a fingerprint its files may not match; the next reload or poll, once
    the files are settled, loads them.

    Args:
        uri: a registry or run URI, or a model directory.
        num_threads: LightGBM threads for prediction.
        load: reads the model (``features.model_store.load_model``).

    Raises:
        ModelLoadError: the store is unreachable, the files are not a usable model, or a
            local directory changed while it was loading.
    """
    before = _local_fingerprint(uri)
    loaded = load(uri, num_threads)
    version = loaded.version
    if before is not None:
        if _local_fingerprint(uri) != before:
            raise ModelLoadError(f"{uri}: the files changed while the model was loading")
        version = f"local-{before}"
    elif version == LOCAL_VERSION:  # a run's or an artifact's model: no registry version
        version = _unregistered_version(loaded)
    identity = ModelIdentity(
        uri, loaded.name, version, loaded.alias, loaded.run_id, datetime.now(UTC)
    )
    return loaded.model, identity


def _unregistered_version(loaded: LoadedModel) -> str:
    """The version of a model loaded from a run or an artifact URI, which is no folder to
    fingerprint: its run (``run-<id>``), else the fingerprint of its files as saved."""
    if loaded.run_id:
        return f"run-{loaded.run_id}"
    with tempfile.TemporaryDirectory(prefix="srl-model-") as folder:
        return f"local-{directory_fingerprint(loaded.model.save(Path(folder) / 'model'))}"


def _local_fingerprint(uri: str) -> str | None:
    """The fingerprint of a local directory's files; None for any other source."""
    return directory_fingerprint(_local_path(uri)) if is_local_uri(uri) else None


def current_version(uri: str) -> str | None:
    """What ``uri`` points at now, cheaply: the alias's version or the directory's state.

    Returns None when the URI names something fixed (a version number or a run), which
    never moves, so there is nothing to poll.

    Raises:
        ModelLoadError: the registry could not be asked.
    """
    registry = registry_reference(uri)
    if registry is not None and registry.alias is not None:
        return _alias_version(uri, registry.name, registry.alias)
    fingerprint = _local_fingerprint(uri)
    return None if fingerprint is None else f"local-{fingerprint}"


def directory_fingerprint(directory: Path) -> str:
    """A short hash of every file under ``directory`` (paths and contents)."""
    digest = hashlib.sha256()
    if not directory.is_dir():
        return "missing"
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def _alias_version(uri: str, name: str, alias: str) -> str:
    from mlflow import MlflowClient

    from features.tracking_store import registry_uri, tracking_uri

    check_registry_exists(uri)
    try:
        client = MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())
        details: Any = client.get_model_version_by_alias(name, alias)
    except Exception as error:
        message = error_summary(error)
        raise ModelLoadError(f"{uri}: could not resolve the alias: {message}") from error
    return str(details.version)


def _local_path(uri: str) -> Path:
    return local_path(uri).resolve()
