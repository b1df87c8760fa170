"""Developer and CI tasks. Runs inside the project's virtual environment (.venv).

.venv/bin/nox -s check    # lint, types and the whole test suite (what CI runs)
.venv/bin/nox -s tests    # the test suite only
.venv/bin/nox -s demo     # the end-to-end demo (generate, train, register, serve)
.venv/bin/nox -s lock     # re-pin every dependency into constraints.txt
"""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["check"]

PYTHON = sys.executable


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.run(PYTHON, "-m", "ruff", "check", ".")
    session.run(PYTHON, "-m", "ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """Mypy over the packages."""
    session.run(PYTHON, "-m", "mypy")


#: One pytest worker per logical core (``PYTEST_XDIST_AUTO_NUM_WORKERS`` caps it), each
#: running whole files, so a module's fixtures are built once. Most of the suite's time is
#: spent in subprocesses, servers and Spark waiting on each other, so two workers on two
#: cores take about 12 minutes where one takes 18.
PARALLEL = ("--numprocesses=logical", "--dist=loadfile")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite with branch coverage (floor in pyproject.toml), on every core;
    ``nox -s tests -- -n 0`` runs it in one process, other arguments go to pytest."""
    session.run(PYTHON, "-m", "pytest", *PARALLEL, "--cov", "--cov-report=term", *session.posargs)


@nox.session
def check(session: nox.Session) -> None:
    """Everything CI checks: lint, types, tests."""
    lint(session)
    types(session)
    tests(session)


@nox.session
def demo(session: nox.Session) -> None:
    """Generate a demo export, train and register a model, and serve it on 127.0.0.1:8000."""
    session.run(PYTHON, "-m", "srl", "demo", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Re-resolve the newest allowed versions and pin them all into constraints.txt."""
    session.run(PYTHON, "-m", "pip", "install", "--upgrade", "-e", ".[dev,spark]")
    frozen = session.run(PYTHON, "-m", "pip", "freeze", "--exclude-editable", silent=True)
    header = "# Pinned versions of every dependency (direct and transitive).\n"
    with open("constraints.txt", "w", encoding="utf-8") as handle:
        handle.write(header + "# Regenerate with: .venv/bin/nox -s lock\n" + str(frozen))
