"""The commands the documentation shows are the commands the project has.

Every ``srl`` command line in a fenced block of the README and of ``docs/`` must name a
registered command and only options that command has. The quick-start blocks of the guides
(those marked ``<!-- quick-start: run by tests/test_docs_commands.py -->``) are run exactly
as written, one guide after the other, in a fresh folder laid out like a clone (its
``notebooks/``) with the default local MLflow store.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from serving.settings import Settings
from srl.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE_GUIDES = [ROOT / "docs" / "guide-data-scientists.md", ROOT / "docs" / "guide-operators.md"]
MARKER = "<!-- quick-start: run by tests/test_docs_commands.py -->"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "2>", "&"}
STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SRL_ARTIFACT_ROOT")


def fenced_blocks(text: str) -> list[str]:
    """The contents of every fenced code block."""
    return [match.group(1) for match in FENCE.finditer(text)]


def command_lines(block: str) -> list[list[str]]:
    """Each ``srl`` invocation of a block as tokens: the command, then its arguments."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        tokens = _tokens(line)
        for index, token in enumerate(tokens[:-1]):
            if token == "srl" or token.endswith("bin/srl"):
                found.append(_until_operator(tokens[index + 1 :]))
    return found


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def _until_operator(tokens: list[str]) -> list[str]:
    for index, token in enumerate(tokens):
        if token in SHELL_OPERATORS:
            return tokens[:index]
    return tokens


def documented_commands() -> list[tuple[str, list[str]]]:
    """(document name, tokens) for every ``srl`` command line in the documentation."""
    return [
        (path.name, tokens)
        for path in DOCUMENTS
        for block in fenced_blocks(path.read_text(encoding="utf-8"))
        for tokens in command_lines(block)
    ]


def cli_options() -> dict[str, set[str]]:
    """Every registered command and the option names it accepts."""
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    return {
        name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        | {"--help"}
        for name, command in commands.items()
    }


def runnable_blocks(path: Path) -> list[str]:
    """The fenced blocks right after a quick-start marker."""
    text = path.read_text(encoding="utf-8")
    return [fenced_blocks(part)[0] for part in text.split(MARKER)[1:]]


def test_the_guides_mark_their_quick_starts() -> None:
    assert [len(runnable_blocks(path)) for path in RUNNABLE_GUIDES] == [2, 1]
    assert documented_commands(), "no srl command found in the documentation"


@pytest.mark.parametrize(
    ("document", "tokens"),
    documented_commands(),
    ids=lambda value: value if isinstance(value, str) else " ".join(value[:1]),
)
def test_every_documented_command_and_option_exists(document: str, tokens: list[str]) -> None:
    options = cli_options()
    command = tokens[0] if tokens else ""

    assert command in options, f"{document} shows `srl {command}`, which the CLI does not have"
    used = {token.split("=", 1)[0] for token in tokens[1:] if token.startswith("--")}
    unknown = used - options[command]
    assert not unknown, f"{document}: `srl {command}` has no option {sorted(unknown)}"


def _environment() -> dict[str, str]:
    """The environment of an activated virtual environment, with the default local store."""
    environment = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    environment.pop("MLFLOW_EXPERIMENT_ID", None)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    environment["VIRTUAL_ENV"] = sys.prefix
    environment["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    environment["SRL_LOG_LEVEL"] = "WARNING"
    return environment


def _run(block: str, workdir: Path) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=workdir,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, (
        f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


@pytest.mark.slow
def test_the_quick_starts_run_as_written(tmp_path: Path) -> None:
    science_quick_start, notebook_run = runnable_blocks(RUNNABLE_GUIDES[0])
    (backup,) = runnable_blocks(RUNNABLE_GUIDES[1])

    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")  # laid out like a clone

    science = _run(science_quick_start, tmp_path)
    _run(notebook_run, tmp_path)
    restored = _run(backup, tmp_path)

    assert "wrote 5 tables for 5,000 leads to exports/2026-06" in science
    assert "registered srl-reconversion version 2 (alias challenger)" in science
    assert "champion is now version 2" in science
    assert "champion is now version 1 (was 2)" in science
    final_listing = science.rsplit("version  aliases", 1)[1]
    assert re.search(r"^\s+1\s+champion", final_listing, re.MULTILINE)
    assert (tmp_path / ".srl" / "mlflow.db").exists()
    assert (tmp_path / "challenger.parquet").exists()
    report = (tmp_path / ".srl" / "reports" / "02_model_report.ipynb").read_text(encoding="utf-8")
    assert "image/png" in report
    assert re.search(r"^\s+2\s+challenger", restored, re.MULTILINE)
    assert re.search(r"^\s+1\s+champion", restored, re.MULTILINE)
    assert (tmp_path / "backups" / "mlartifacts.tar.gz").stat().st_size > 0


ENVIRONMENT_NAME = re.compile(r"\bSRL_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
CODE_FILES = ("features/**/*.py", "serving/**/*.py", "training/**/*.py", "srl/**/*.py")
NOTEBOOKS = "notebooks/*.ipynb"


def test_every_srl_variable_the_documents_name_is_one_the_code_reads() -> None:
    """A mistyped variable in a pasted command (``$SRL_API_KEY`` for ``SRL_API_KEYS``) is
    empty, and the command fails for no reason the reader can see."""
    code = "\n".join(
        path.read_text(encoding="utf-8")
        for pattern in (*CODE_FILES, NOTEBOOKS)
        for path in sorted(ROOT.glob(pattern))
    )
    settings = {f"SRL_{name.upper()}" for name in Settings.model_fields}
    known = set(ENVIRONMENT_NAME.findall(code)) | settings
    for document in DOCUMENTS:
        named = set(ENVIRONMENT_NAME.findall(document.read_text(encoding="utf-8")))
        assert named <= known, f"{document.name}: {sorted(named - known)}"
