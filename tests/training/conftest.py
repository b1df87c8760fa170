"""Training fixtures: a larger generated export and an older cut of the same world."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.loading import load_export
from features.synthetic import write_export

TRAINING_LEADS = 40_000
TRAINING_SEED = 3
OLDER_BY_DAYS = 180


@pytest.fixture(scope="session")
def world_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated export large enough for stable test-window metrics (the newer export)."""
    from features.synthetic import generate_export

    out = tmp_path_factory.mktemp("world") / "newer"
    generate_export(out, TRAINING_LEADS, TRAINING_SEED, "parquet")
    return out


@pytest.fixture(scope="session")
def older_export_dir(world_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same world exported ``OLDER_BY_DAYS`` earlier: what the models are trained on."""
    export = load_export(world_export_dir)
    cutoff = export.snapshot_at - pd.Timedelta(days=OLDER_BY_DAYS)
    out = tmp_path_factory.mktemp("world") / "older"
    write_export(cut_tables(export.tables, cutoff), out, "parquet")
    return out


def cut_tables(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Every table as it stood at ``cutoff``: later rows dropped, later closes reopened."""
    times = {
        "leads": "created_at",
        "activities": "occurred_at",
        "rejections": "rejected_at",
        "opportunities": "created_at",
        "consent": "changed_at",
    }
    cut = {name: frame.loc[frame[times[name]] <= cutoff].copy() for name, frame in tables.items()}
    opportunities = cut["opportunities"]
    reopened = opportunities["closed_at"] > cutoff
    opportunities.loc[reopened, "closed_at"] = pd.NaT
    opportunities.loc[reopened, "status"] = "open"
    opportunities.loc[reopened, "loss_reason"] = None
    return cut
