"""The notebooks run top to bottom on a generated export and a real registry, figures rendered.

Each notebook is executed in a fresh kernel of the project's environment with its parameters
taken from the environment variables its first cell reads; a failing cell fails the test.
The stored files must carry no outputs, so that results never land in version control.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from serving.policy import load_policy
from tests.notebooks.conftest import (
    NOTEBOOKS,
    execute,
    images,
    kernel_prefix,
    text,
    this_prefix,
)
from tests.trained_store import TrainedStore

PARAMETERS = {
    "01_rejected_lead_history.ipynb": ("EXPORT_DIR", "MLFLOW_TRACKING_URI"),
    "02_model_report.ipynb": ("EXPORT_DIR", "MLFLOW_TRACKING_URI", "MODEL_URI"),
    "03_routing_and_capacity.ipynb": (
        "EXPORT_DIR",
        "MLFLOW_TRACKING_URI",
        "MODEL_URI",
        "SALES_CAPACITY_PER_MONTH",
        "NURTURE_CAPACITY_PER_MONTH",
        "CAPACITY_STATISTIC",
    ),
}


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_stored_notebooks_have_no_outputs_and_a_parameters_cell(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] for cell in code)
    assert all(cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(f"{parameter} =" in code[0].source for parameter in PARAMETERS[name])
    assert notebook.nbformat == 4


@pytest.fixture
def export_env(small_export_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the notebooks' parameters at the small export (and nowhere in the repository)."""
    monkeypatch.setenv("SRL_EXPORT_DIR", str(small_export_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'unused.db'}")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return tmp_path


@pytest.fixture
def registry_env(export_env: Path, store: TrainedStore, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Also point them at the trained registry's champion."""
    for variable, value in store.environment().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("SRL_MODEL_URI", f"models:/{store.name}@champion")
    monkeypatch.delenv("SRL_POLICY", raising=False)
    return export_env


@pytest.mark.slow
def test_rejected_lead_history_runs_and_draws(export_env: Path) -> None:
    notebook = execute("01_rejected_lead_history.ipynb", export_env)

    assert kernel_prefix(notebook) == this_prefix()
    assert images(notebook) >= 5
    shown = text(notebook)
    assert "km_365d" in shown
    assert "re-conversion rate among observed" in shown


@pytest.mark.slow
def test_model_report_runs_and_draws(registry_env: Path, store: TrainedStore) -> None:
    notebook = execute("02_model_report.ipynb", registry_env)

    assert kernel_prefix(notebook) == this_prefix()
    assert images(notebook) >= 5
    shown = text(notebook)
    assert "points_score" in shown
    assert "logistic" in shown
    assert f"v{store.champion}" in shown
    assert f"v{store.previous}" in shown
    assert "no earlier champion" not in shown
    assert "examples: the run's test window (the export it was trained on)" in shown
    assert "examples scored by both" in shown
    assert "comeback scored lowest" in shown
    assert "trained and calibrated on rejections up to 90.0 days old" in shown
    assert "mean_p_with_curve" in shown


@pytest.mark.slow
@pytest.mark.parametrize(
    ("statistic", "month"), [("mean", "the average month"), ("max", "the busiest month")]
)
def test_routing_notebook_runs_draws_and_exports_a_valid_policy(
    registry_env: Path, monkeypatch: pytest.MonkeyPatch, statistic: str, month: str
) -> None:
    policy_file = registry_env / "policies" / "tuned.yaml"
    monkeypatch.setenv("SRL_POLICY_OUT", str(policy_file))
    monkeypatch.setenv("SRL_CAPACITY_STATISTIC", statistic)
    for default in ("SRL_SALES_CAPACITY", "SRL_NURTURE_CAPACITY"):
        monkeypatch.delenv(default, raising=False)  # the defaults: 10 and 25 a month

    notebook = execute("03_routing_and_capacity.ipynb", registry_env)

    assert kernel_prefix(notebook) == this_prefix()
    assert images(notebook) >= 5
    tuned = load_policy(policy_file)
    assert (tuned.name, tuned.version) == ("capacity-tuned", load_policy().version + 1)
    shown = text(notebook)
    assert f"wrote {policy_file}" in shown
    assert f"tuned to 10 sales and 25 nurture leads a month, in {month} of last quarter" in shown
    assert (
        f"# Tuned by notebooks/03_routing_and_capacity.ipynb for 10 sales and 25 nurture "
        f"leads a month, in {month}," in policy_file.read_text(encoding="utf-8")
    )
