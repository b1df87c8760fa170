"""Property: the batch job never routes a lead that may not be contacted to a contact program.

The generated exports get random opt-outs and random ``do_not_contact`` rejections (some
lifted by a later opt-in) on top of the generator's own consent rows.
"""

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
from serving.routing import OTHER_REJECTION_CAUSE, SUPPRESSED_PROGRAM
from tests.serving.batch_support import appended, read_output, request

pytestmark = pytest.mark.slow


def _with_opt_outs(tables: dict[str, pd.DataFrame], seed: int, share: float) -> None:
    """Give a share of the leads an opt-out at a random moment of their life."""
    rng = np.random.default_rng(seed)
    leads = tables["leads"]
    chosen = leads.loc[rng.random(len(leads)) < share]
    moments = _moments_between(chosen["created_at"], rng)
    extra = pd.DataFrame(
        {
            "lead_id": chosen["lead_id"].to_numpy(),
            "changed_at": moments + pd.Timedelta(microseconds=7),
            "status": rng.choice(sorted(NO_CONTACT_CONSENT), len(chosen)),
        }
    )
    tables["consent"] = appended(tables["consent"], extra)


def _with_do_not_contact_rejections(
    tables: dict[str, pd.DataFrame], seed: int, share: float
) -> None:
    """Give a share of the rejected leads a ``do_not_contact`` rejection at a random moment of
    their life (before, between or after their other rejections, before or after as_of),
    and half of those a ``subscribed`` row at a random moment from it on (ties included)."""
    rng = np.random.default_rng(seed + 1)
    rejected = tables["rejections"]["lead_id"].unique()
    chosen = rejected[rng.random(len(rejected)) < share]
    created = tables["leads"].set_index("lead_id").loc[chosen, "created_at"].reset_index(drop=True)
    asked = _moments_between(created, rng) + pd.Timedelta(microseconds=3)
    requests = pd.DataFrame(
        {
            "rejection_id": [f"RDNC{i}" for i in range(len(chosen))],
            "lead_id": chosen,
            "rejected_at": asked,
            "stage_at_rejection": "mql",
            "reason_code": "do_not_contact",
        }
    )
    tables["rejections"] = appended(tables["rejections"], requests)
    opted = rng.random(len(chosen)) < 0.5
    later = _moments_between(asked[opted], rng) + pd.Timedelta(microseconds=3)
    opt_ins = pd.DataFrame(
        {
            "lead_id": chosen[opted],
            "changed_at": np.where(rng.random(len(later)) < 0.2, asked[opted], later),
            "status": "subscribed",
        }
    )
    tables["consent"] = appended(tables["consent"], opt_ins)


def _moments_between(start: pd.Series, rng: np.random.Generator) -> pd.Series:
    """A random whole second between each start and the end of the generated data."""
    span = pd.Timestamp(DEFAULT_END) - start
    return (start + span * rng.random(len(start))).dt.floor("s").reset_index(drop=True)


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


def _refused_by_rejection(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.Series:
    """Per rejection id: a ``do_not_contact`` rejection of its lead stands, at ``as_of`` (no
    ``subscribed`` row after it up to ``as_of``) or in the whole export (none after it)."""
    rejections = tables["rejections"]
    consent = tables["consent"]
    opt_ins = consent.loc[consent["status"].astype(str) == "subscribed"]
    opt_in_times = opt_ins.groupby("lead_id")["changed_at"].apply(list).to_dict()
    asked = rejections.loc[rejections["reason_code"].astype(str) == "do_not_contact"]
    refused: set[str] = set()
    for lead, moment in zip(asked["lead_id"], asked["rejected_at"], strict=True):
        after = [t for t in opt_in_times.get(lead, []) if t > moment]
        standing_at_as_of = moment <= as_of and not any(t <= as_of for t in after)
        if standing_at_as_of or not after:
            refused.add(lead)
    return rejections.set_index("rejection_id")["lead_id"].isin(refused)


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
    _with_do_not_contact_rejections(tables, seed, share)
    folder = tmp_path_factory.mktemp("property")
    write_export(tables, folder / "export", "parquet")
    as_of = pd.Timestamp(DEFAULT_END) - timedelta(days=back_days)

    run_batch(
        request(
            folder / "export", folder / "scores.parquet", model_dir, as_of=as_of.to_pydatetime()
        )
    )
    frame = read_output(folder / "scores.parquet")

    by_consent_or_reason = _forbidden(tables, as_of).loc[frame["rejection_id"]].to_numpy()
    by_other = _refused_by_rejection(tables, as_of).loc[frame["rejection_id"]].to_numpy()
    forbidden = by_consent_or_reason | by_other
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
    only_other = (by_other & ~by_consent_or_reason)[frame["suppressed"].to_numpy()]
    assert (held["suppression_reason"][only_other] == OTHER_REJECTION_CAUSE).all()
    assert set(frame.loc[~frame["suppressed"], "program"]) <= contact_programs
