"""Fixtures for the notebook tests: a real registry to report on, and a notebook runner."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.trained_store import TrainedStore, trained_store

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "srl-rebound"
PROBE = "import sys; print(sys.prefix)"


@pytest.fixture(scope="session")
def store(small_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Two versions trained on the small export; version 2 is champion, replacing 1."""
    return trained_store(small_export_dir, tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def project_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernel spec that starts this interpreter, found first on ``JUPYTER_PATH``.

    Whatever kernels a user has installed, the notebooks then run in the project's
    environment (the probe cell of ``execute`` checks it).
    """
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    document = {"argv": argv, "display_name": "SRL Rebound (.venv)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        yield KERNEL


def execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    """Run a stored notebook top to bottom in a fresh kernel, working in ``workdir``.

    A first cell (not stored) prints the kernel's ``sys.prefix``, so a test can check the
    notebook ran in the project's environment. Any cell error raises ``CellExecutionError``.
    The executed notebook is written to ``workdir`` for inspection.
    """
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    nbformat.write(notebook, workdir / name)
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Every output of every code cell, in order."""
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG figures the notebook rendered."""
    return sum("image/png" in o.get("data", {}) for o in outputs(notebook))


def text(notebook: nbformat.NotebookNode) -> str:
    """All printed and displayed text (streams, plain text and HTML)."""
    parts = []
    for output in outputs(notebook):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


def kernel_prefix(notebook: nbformat.NotebookNode) -> str:
    """The environment (``sys.prefix``) the probe cell printed."""
    return str(notebook.cells[0].outputs[0]["text"]).strip()


def this_prefix() -> str:
    """The environment running the tests (the project's virtual environment)."""
    return sys.prefix
