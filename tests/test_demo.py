"""The quick-start demo runs end to end (without blocking on the server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.records import ScoreRequest
from srl.cli import app


@pytest.mark.slow
def test_demo_generates_trains_registers_and_prints_a_curl(
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty working directory and a fresh tracking store
    monkeypatch.chdir(tmp_path)
    # When the demo runs without starting the server
    result = CliRunner().invoke(app, ["demo", "--leads", "3000", "--no-serve", "--port", "8123"])
    # Then every step ran and the printed curl scores a valid request body
    assert result.exit_code == 0, result.output
    for step in ("1/5", "2/5", "3/5 trained and registered", "4/5", "5/5"):
        assert step in result.output
    assert "curl -s -X POST http://127.0.0.1:8123/v1/score" in result.output
    body = json.loads((tmp_path / ".srl/demo/request.json").read_text())
    request = ScoreRequest.model_validate(body)
    assert request.as_of is not None
    assert "email" not in body["lead"]
    assert (tmp_path / ".srl/demo/features.parquet").exists()
