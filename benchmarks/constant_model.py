"""A pyfunc that answers 0.5 for every body: ``mlflow models serve``'s own floor.

``benchmarks/serve_bench.py`` registers it next to the real model, so that the table shows
how fast MLflow's scoring server answers when the model does no work at all. It takes the
same input as the real pyfunc (a list of request bodies).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class ConstantModel(PythonModel):
    """Returns 0.5 per body without looking at it."""

    def predict(  # type: ignore[override]
        self, model_input: list[dict[str, Any]], params: dict[str, Any] | None = None
    ) -> list[float]:
        """One constant per body."""
        return [0.5 for _ in model_input]


mlflow.models.set_model(ConstantModel())
