"""Property: the batch job never routes a lead that may not be contacted to a contact program."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import NO_CONTACT_CONSENT, NO_CONTACT_REASONS
from features.synthetic import DEFAULT_END, generate_tables, write_export
from serving.batch import run_batch
from serving.policy import load_policy
from serving.routing import SUPPRESSED_PROGRAM
from tests.serving.batch_support import read_output, request

pytestmark = pytest.mark.slow


def _with_opt_outs(tables: dict[str, pd.DataFrame], seed: int, share: float) -> None:
    """Give a share of the leads an opt-out at a random moment of their life."""
    rng = np.random.default_rng(seed)
    leads = tables["leads"]
    chosen = leads.loc[rng.random(len(leads)) < share]
    span = pd.Timestamp(DEFAULT_END) - chosen["created_at"]
    moments = chosen["created_at"] + span * rng.random(len(chosen))
    extra = pd.DataFrame(
        {
            "lead_id": chosen["lead_id"].to_numpy(),
            "changed_at": moments.dt.floor("s") + pd.Timedelta(microseconds=7),
            "status": rng.choice(sorted(NO_CONTACT_CONSENT), len(chosen)),
        }
    )
    consent = pd.concat([tables["consent"].astype({"status": str}), extra], ignore_index=True)
    tables["consent"] = consent.astype({"status": "category"})


def _forbidden(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.Series:
    """Per rejection id: the consent at ``as_of``, the latest consent in the export (an
    opt-out after ``as_of`` counts) or the reason forbids contact."""
    rejections = tables["rejections"].set_index("rejection_id")
    consent = tables["consent"]
    forbidden = rejections["reason_code"].astype(str).isin(NO_CONTACT_REASONS)
    for rows in (consent.loc[consent["changed_at"] <= as_of], consent):
        latest = rows.sort_values(["lead_id", "changed_at"]).groupby("lead_id")["status"].last()
        status = rejections["lead_id"].map(latest.astype(str)).fillna("subscribed")
        forbidden |= status.isin(NO_CONTACT_CONSENT)
    return forbidden


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 10_000), back_days=st.integers(0, 600), share=st.floats(0.05, 0.7))
def test_no_suppressed_lead_is_routed_to_a_contact_program(
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    back_days: int,
    share: float,
) -> None:
    tables = generate_tables(600, seed)
    _with_opt_outs(tables, seed, share)
    folder = tmp_path_factory.mktemp("property")
    write_export(tables, folder / "export", "parquet")
    as_of = pd.Timestamp(DEFAULT_END) - timedelta(days=back_days)

    run_batch(
        request(
            folder / "export", folder / "scores.parquet", model_dir, as_of=as_of.to_pydatetime()
        )
    )
    frame = read_output(folder / "scores.parquet")

    forbidden = _forbidden(tables, as_of).loc[frame["rejection_id"]].to_numpy()
    contact_programs = {r.program for r in load_policy().reasons.values()} | {
        load_policy().rebound.program,
        load_policy().low_touch.program,
    }
    assert (frame["suppressed"].to_numpy() == forbidden).all()
    held = frame.loc[frame["suppressed"]]
    assert set(held["program"]) <= {SUPPRESSED_PROGRAM}
    assert (held["priority"] == 0).all()
    assert held["next_action_date"].isna().all()
    assert held["suppression_reason"].notna().all()
    assert set(frame.loc[~frame["suppressed"], "program"]) <= contact_programs
