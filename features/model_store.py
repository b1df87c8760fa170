"""Load a ``ReconversionModel`` from the MLflow registry, a run or a local folder.

The API and the batch jobs call ``load_model`` with a URI and get the model together with
the version they got: an alias (``models:/srl-reconversion@champion``) is resolved once to
a version, and that exact version is downloaded, so a caller can always say which version
scored a lead even while people move the alias. Only the model's own files are read
(LightGBM text and JSON); nothing is unpickled and no pyfunc is built.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from features.error_text import error_summary, without_credentials
from features.predictor import METADATA_FILE, ReconversionModel
from features.tracking_store import registry_uri, sqlite_path, tracking_uri

MODEL_ARTIFACT = "reconversion_model"
"""Folder of the ``ReconversionModel`` files inside a logged pyfunc (under ``artifacts/``)."""
LOCAL_VERSION = "local"
MLMODEL_FILE = "MLmodel"
#: The registered model's name unless a training config says otherwise, and what a
#: service or a batch job loads unless told otherwise.
DEFAULT_MODEL_NAME = "srl-reconversion"
DEFAULT_MODEL_URI = f"models:/{DEFAULT_MODEL_NAME}@champion"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+?)/?$")


class ModelLoadError(RuntimeError):
    """A model could not be loaded: unknown alias or version, unreachable store, bad files."""


class UnreadableModelError(ModelLoadError):
    """The files were found but are not a usable re-conversion model (damaged, another
    format, missing a part): loading the same version again fails the same way."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model and where it came from.

    Attributes:
        model: the model, ready to predict.
        uri: the URI as asked.
        name: the registered model name, when loaded from the registry.
        version: the registry version, or ``"local"``.
        alias: the alias asked for, when the URI named one.
        run_id: the MLflow run that logged the model, when known.
    """

    model: ReconversionModel
    uri: str
    name: str | None
    version: str
    alias: str | None
    run_id: str | None


def load_model(uri: str, num_threads: int = 0) -> LoadedModel:
    """Load a model from ``uri``.

    Args:
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
            ``runs:/<run_id>/<path>``, another MLflow artifact URI of a logged model, or a
            local directory (an MLflow model folder or a ``ReconversionModel.save`` folder).
        num_threads: LightGBM threads for prediction (0: LightGBM's default).

    Returns:
        The model with its registry name, resolved version, alias and run.

    Raises:
        ModelLoadError: the store is unreachable, the name, alias or version does not
            exist, or the files are not a re-conversion model.
    """
    if is_local_uri(uri):
        local = local_path(uri)
        if not local.is_dir():
            raise ModelLoadError(f"{uri}: no such model directory")
        return _from_directory(uri, local, num_threads)
    registry = registry_reference(uri)
    if registry:
        return _from_registry(uri, registry.name, registry.alias, registry.version, num_threads)
    run = _RUN_URI.match(uri)
    if run:
        location = _run_location(uri, run["run_id"], run["path"])
        model = _download_and_load(uri, f"{location}/artifacts/{MODEL_ARTIFACT}", num_threads)
        return LoadedModel(model, uri, None, LOCAL_VERSION, None, run["run_id"])
    return _from_artifact_uri(uri, num_threads)


@dataclass(frozen=True)
class RegistryReference:
    """A ``models:/name@alias`` or ``models:/name/version`` URI, taken apart."""

    name: str
    alias: str | None
    version: str | None


def registry_reference(uri: str) -> RegistryReference | None:
    """The registered model, and its alias or version, that ``uri`` names (None for any
    other kind of URI)."""
    found = _REGISTRY_URI.match(uri)
    if found is None:
        return None
    return RegistryReference(found["name"], found["alias"], found["version"])


def is_local_uri(uri: str) -> bool:
    """Whether ``uri`` names a model directory (a path or ``file://``), not a store's model."""
    return uri.startswith("file://") or (
        "://" not in uri and not uri.startswith(("models:/", "runs:/"))
    )


def local_path(uri: str) -> Path:
    """The directory a local ``uri`` names."""
    return Path(uri.removeprefix("file://"))


def _from_registry(
    uri: str, name: str, alias: str | None, version: str | None, num_threads: int
) -> LoadedModel:
    details = _model_version(uri, name, alias, version)
    named = uri if version is not None else f"{uri} (version {details.version})"
    location = _model_location(named, str(details.source))
    model = _download_and_load(named, f"{location}/artifacts/{MODEL_ARTIFACT}", num_threads)
    return LoadedModel(model, uri, name, str(details.version), alias, details.run_id)


def _model_version(uri: str, name: str, alias: str | None, version: str | None) -> Any:
    """The registry's model version for an alias or a version number."""
    client = _client(uri)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except Exception as error:
        where = without_credentials(registry_uri())
        raise ModelLoadError(f"{uri}: {error_summary(error)} (registry {where})") from error


def _client(uri: str) -> Any:
    """A client of the project's stores (never MLflow's process-wide defaults)."""
    check_registry_exists(uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def _model_location(uri: str, source: str) -> str:
    """The concrete artifact location behind a ``models:/`` source.

    A registered version's source is a logged model (``models:/m-...``); its files live at
    the logged model's artifact location. Resolving that here, with an explicit client,
    keeps MLflow from consulting its process-wide registry URI while downloading.
    """
    if not source.startswith("models:/"):
        return source.rstrip("/")
    model_id = source.removeprefix("models:/").split("/")[0]
    try:
        location = _client(uri).get_logged_model(model_id).artifact_location
    except Exception as error:
        raise ModelLoadError(f"{uri}: logged model {model_id}: {error_summary(error)}") from error
    return str(location).rstrip("/")


def _run_location(uri: str, run_id: str, name: str) -> str:
    """Where the model ``name`` logged by a run keeps its files.

    A model logged by MLflow 3 is a logged model output of the run; an older one is a
    folder of the run's artifacts.
    """
    client = _client(uri)
    try:
        run = client.get_run(run_id)
        outputs = run.outputs.model_outputs if run.outputs is not None else []
        for output in outputs:
            logged = client.get_logged_model(output.model_id)
            if logged.name == name:
                return str(logged.artifact_location).rstrip("/")
    except Exception as error:
        where = without_credentials(tracking_uri())
        raise ModelLoadError(f"{uri}: {error_summary(error)} (store {where})") from error
    return f"{str(run.info.artifact_uri).rstrip('/')}/{name}"


def _from_artifact_uri(uri: str, num_threads: int) -> LoadedModel:
    """Any other artifact URI: download the whole model folder, then read it."""
    with tempfile.TemporaryDirectory(prefix="srl-load-") as scratch:
        local = _download(uri, _model_location(uri, uri), scratch)
        loaded = _from_directory(uri, local, num_threads)
    return loaded


def _download_and_load(uri: str, folder_uri: str, num_threads: int) -> ReconversionModel:
    with tempfile.TemporaryDirectory(prefix="srl-load-") as scratch:
        return _read_model(uri, _download(uri, folder_uri, scratch), num_threads)


def _download(uri: str, artifact_uri: str, destination: str) -> Path:
    check_registry_exists(uri)
    import mlflow.artifacts

    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri,
            dst_path=destination,
            tracking_uri=tracking_uri(),
            registry_uri=registry_uri(),
        )
    except Exception as error:
        reason = error_summary(error)
        raise ModelLoadError(f"{uri}: could not download the model: {reason}") from error
    return Path(path)


def _from_directory(uri: str, directory: Path, num_threads: int) -> LoadedModel:
    """A ``ReconversionModel.save`` folder, or an MLflow model folder holding one."""
    if (directory / METADATA_FILE).exists():
        return LoadedModel(
            _read_model(uri, directory, num_threads), uri, None, LOCAL_VERSION, None, None
        )
    mlmodel = directory / MLMODEL_FILE
    if not mlmodel.exists():
        raise UnreadableModelError(f"{uri}: neither {METADATA_FILE} nor {MLMODEL_FILE} found")
    description = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    model = _read_model(uri, directory / _artifact_folder(uri, description), num_threads)
    return LoadedModel(model, uri, None, LOCAL_VERSION, None, description.get("run_id"))


def _artifact_folder(uri: str, description: dict[str, Any]) -> str:
    """Where the MLmodel says the ReconversionModel files are."""
    artifacts = description.get("flavors", {}).get("python_function", {}).get("artifacts") or {}
    entry = artifacts.get(MODEL_ARTIFACT)
    if not entry:
        raise UnreadableModelError(f"{uri}: the MLflow model has no {MODEL_ARTIFACT!r} artifact")
    return str(entry["path"])


def _read_model(uri: str, directory: Path, num_threads: int) -> ReconversionModel:
    try:
        return ReconversionModel.load(directory, num_threads)
    except (OSError, MemoryError) as error:  # the machine's trouble, not the files': retried
        reason = f"could not read the model: {error_summary(error, with_kind=True)}"
        raise ModelLoadError(f"{uri}: {reason}") from error
    except Exception as error:  # damaged files fail in LightGBM's, JSON's or pandas' own words
        reason = f"not a readable re-conversion model: {error_summary(error, with_kind=True)}"
        raise UnreadableModelError(f"{uri}: {reason}") from error


def check_registry_exists(uri: str) -> None:
    """Refuse to create an empty sqlite store as a side effect of reading the registry.

    Args:
        uri: what is being looked up (a model URI or a registered name), for the message.

    Raises:
        ModelLoadError: the registry is a local sqlite file that does not exist yet.
    """
    database = sqlite_path(registry_uri())
    if database is not None and not database.exists():
        raise ModelLoadError(
            f"{uri}: no model registry at {database}; train a model first or set "
            "MLFLOW_TRACKING_URI"
        )
