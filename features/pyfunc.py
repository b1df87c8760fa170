"""The re-conversion model as an MLflow pyfunc: scoring request bodies in, probabilities out.

The logged model is built "from code": MLflow stores ``pyfunc_code.py`` (a two-line script
that names ``ReconversionPyfunc``) and the model itself as plain artifacts, LightGBM's text
format and JSON written by ``ReconversionModel.save``. Nothing is pickled, so loading a
tampered artifact cannot run code hidden in it.

The input is a list of request bodies exactly as ``POST /v1/score`` takes them (see
``features.records.ScoreRequest``); the output is one calibrated probability per body. A
request to ``mlflow models serve`` is ``{"inputs": [body, body, ...]}`` and the answer is
``{"predictions": [p, p, ...]}``. The environment that loads the model needs this package
installed (``mlflow models serve --env-manager local`` from the project's environment).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel

from features.model_store import MODEL_ARTIFACT
from features.predictor import ReconversionModel
from features.records import ScoreRequest
from features.requests import artifact_example

MODEL_CODE_FILE = Path(__file__).with_name("pyfunc_code.py")
THREADS_VARIABLE = "SRL_MODEL_THREADS"
RUNTIME_PACKAGES = ("mlflow", "lightgbm", "numpy", "pandas", "pydantic", "pyyaml")


@contextmanager
def _bodies_are_free_form() -> Iterator[None]:
    """Silence MLflow's note that ``dict[str, Any]`` is not validated: the contract is.

    Request bodies are validated by ``ScoreRequest`` (vocabularies, UTC times, ids), which
    says more than MLflow's schema could; MLflow only checks that each item is an object.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Any type hint is inferred", category=UserWarning
        )
        yield


with _bodies_are_free_form():

    class ReconversionPyfunc(PythonModel):
        """MLflow's view of a ``ReconversionModel``: raw contract rows to probabilities."""

        def __init__(self) -> None:
            self.model: ReconversionModel | None = None

        def load_context(self, context: Any) -> None:
            """Read the model from the artifact MLflow downloaded beside the code."""
            threads = int(os.environ.get(THREADS_VARIABLE, "0"))
            self.model = ReconversionModel.load(context.artifacts[MODEL_ARTIFACT], threads)

        def predict(  # type: ignore[override]
            self, model_input: list[dict[str, Any]], params: dict[str, Any] | None = None
        ) -> list[float]:
            """Calibrated probabilities, one per request body, in order.

            Args:
                model_input: request bodies (``lead``, ``rejection``, ``activities``, ...).
                params: unused; accepted for MLflow's interface.

            Raises:
                pydantic.ValidationError: a body breaks the data contract.
            """
            if self.model is None:
                raise RuntimeError("the model is not loaded (load_context was not called)")
            requests = [ScoreRequest.model_validate(_plain(body)) for body in model_input]
            return [float(p) for p in self.model.predict_requests(requests)]


def log_pyfunc(
    model: ReconversionModel,
    input_example: dict[str, Any],
    name: str = "model",
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Log ``model`` as a pyfunc in the active run (models from code, no pickle).

    Args:
        model: the trained model.
        input_example: one request body; stored with the model as its input example
            through ``features.requests.artifact_example``, so no text of the export (free
            text, references to people or companies, personal data) reaches the artifact.
        name: the logged model's name within the run.
        registered_model_name: also register the model under this name when given.

    Returns:
        MLflow's description of the logged model (``model_uri``, ``signature``, ...).
    """
    with tempfile.TemporaryDirectory(prefix="srl-model-") as scratch:
        directory = model.save(Path(scratch) / MODEL_ARTIFACT)
        with _bodies_are_free_form():
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(MODEL_CODE_FILE),
                artifacts={MODEL_ARTIFACT: str(directory)},
                input_example=[artifact_example(input_example)],
                pip_requirements=runtime_requirements(),
                registered_model_name=registered_model_name,
            )


def runtime_requirements() -> list[str]:
    """Pinned requirements of the packages the pyfunc imports at prediction time."""
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def _plain(body: Any) -> Any:
    """A request body with numpy and pandas leftovers of MLflow's parsing made plain."""
    if isinstance(body, dict):
        return {key: _plain(value) for key, value in body.items()}
    if isinstance(body, list | tuple):
        return [_plain(value) for value in body]
    if hasattr(body, "tolist"):
        return _plain(body.tolist())
    return body
