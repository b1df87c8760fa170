"""A ``do_not_contact`` rejection holds back the lead's other rejections until it opts back in.

Through ``/v1/score`` (the earlier rejections sent in the body), through the batch job (every
rejection of the export, those after ``as_of`` included), and the two agreeing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.contract import NO_CONTACT_CONSENT, NO_CONTACT_REASONS
from features.loading import load_export
from features.requests import request_body
from features.synthetic import DEFAULT_END, generate_tables, write_export
from serving.batch import run_batch
from serving.examples import EXAMPLE_REQUEST
from serving.routing import OTHER_REJECTION_CAUSE, SUPPRESSED_PROGRAM
from tests.serving.batch_support import appended, read_output, request
from tests.serving.conftest import TestClient

LEAD = EXAMPLE_REQUEST["lead"]["lead_id"]
#: Before the example's scored rejection (2025-06-01T09:30Z, scored at 2025-09-01).
ASKED_AT = "2025-04-01T10:00:00+00:00"
REQUEST = {
    "rejection_id": "R0000001",
    "lead_id": LEAD,
    "rejected_at": ASKED_AT,
    "stage_at_rejection": "mql",
    "reason_code": "do_not_contact",
}


def _body(*consent: tuple[str, str]) -> dict[str, Any]:
    """The example request with an earlier ``do_not_contact`` rejection and consent rows."""
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["earlier_rejections"] = [REQUEST]
    body["consent"] = [{"lead_id": LEAD, "changed_at": t, "status": s} for t, s in consent]
    return body


def _assert_held_back(result: dict[str, Any]) -> None:
    assert result["suppressed"] is True
    assert result["suppression_reason"] == OTHER_REJECTION_CAUSE
    assert result["program"] == SUPPRESSED_PROGRAM
    assert result["routing"]["priority"] == 0
    assert result["routing"]["next_action_date"] is None


def test_an_earlier_do_not_contact_rejection_suppresses_a_later_rejection(
    client: TestClient,
) -> None:
    # Given the example lead, routed to a program on its own
    alone = client.post("/v1/score", json=EXAMPLE_REQUEST).json()
    assert alone["suppressed"] is False

    # When an earlier rejection records that the person asked not to be contacted
    result = client.post("/v1/score", json=_body()).json()

    # Then the later rejection is held back too, and says why
    _assert_held_back(result)


def test_a_subscribed_row_after_the_request_lets_the_lead_be_contacted_again(
    client: TestClient,
) -> None:
    result = client.post("/v1/score", json=_body(("2025-05-01T00:00:00Z", "subscribed"))).json()

    assert result["suppressed"] is False
    assert result["suppression_reason"] is None
    assert result["program"] != SUPPRESSED_PROGRAM


@pytest.mark.parametrize(
    "opted_in_at",
    [
        pytest.param(ASKED_AT, id="same moment as the request"),
        pytest.param("2025-03-15T00:00:00Z", id="before the request"),
        pytest.param("2025-10-01T00:00:00Z", id="after as_of"),
    ],
)
def test_an_opt_in_not_after_the_request_or_after_as_of_does_not_lift_it(
    client: TestClient, opted_in_at: str
) -> None:
    result = client.post("/v1/score", json=_body((opted_in_at, "subscribed"))).json()

    _assert_held_back(result)


AS_OF = pd.Timestamp(DEFAULT_END) - pd.Timedelta(days=60)
DAY = pd.Timedelta(days=1)
#: Case name -> (when the do_not_contact rejection is recorded, when the lead opts back in,
#: the expected suppression reason). "before" is halfway between the lead's creation and its
#: first rejection; "between" halfway from there to the first rejection; "last" the very
#: moment of the lead's last rejection (the one scored: its id sorts after the request's).
CASES: dict[str, tuple[str | pd.Timestamp, str | pd.Timestamp | None, str | None]] = {
    "earlier": ("before", None, OTHER_REJECTION_CAUSE),
    "at the scored rejection's moment": ("last", None, OTHER_REJECTION_CAUSE),
    "earlier, opted in before as_of": ("before", "between", None),
    "earlier, opted in after as_of": ("before", AS_OF + 10 * DAY, OTHER_REJECTION_CAUSE),
    "after as_of": (AS_OF + 5 * DAY, None, OTHER_REJECTION_CAUSE),
    "after as_of, opted in later": (AS_OF + 5 * DAY, AS_OF + 20 * DAY, None),
}
#: Cases an API body can carry: its earlier rejections are at or before the scored one.
API_CASES = (
    "earlier",
    "at the scored rejection's moment",
    "earlier, opted in before as_of",
    "earlier, opted in after as_of",
)


def _quiet_leads(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Leads whose every rejection is open until ``AS_OF`` and nothing else forbids contact:
    rejected long before it, never for a no-contact reason, no opportunity, no opt-out.
    Their ``created_at`` and first ``rejected_at``."""
    rejections = tables["rejections"]
    consent = tables["consent"]
    first = rejections.groupby("lead_id")["rejected_at"].min()
    last = rejections.groupby("lead_id")["rejected_at"].max()
    refused = set(rejections.loc[rejections["reason_code"].isin(NO_CONTACT_REASONS), "lead_id"])
    refused |= set(consent.loc[consent["status"].isin(NO_CONTACT_CONSENT), "lead_id"])
    refused |= set(tables["opportunities"]["lead_id"])
    created = tables["leads"].set_index("lead_id")["created_at"]
    frame = pd.DataFrame({"created_at": created.loc[first.index], "first": first, "last": last})
    keep = (frame["last"] < AS_OF - 30 * DAY) & (frame["first"] - frame["created_at"] > 2 * DAY)
    return frame.loc[keep & ~frame.index.isin(list(refused))]


def _moment(when: str | pd.Timestamp, lead: pd.Series) -> pd.Timestamp:
    if when == "last":
        return pd.Timestamp(lead["last"])
    before = lead["created_at"] + (lead["first"] - lead["created_at"]) / 2
    named = {"before": before, "between": before + (lead["first"] - before) / 2}
    return (named[when] if isinstance(when, str) else when).floor("s")


@pytest.fixture(scope="module")
def export_with_requests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A generated export where one quiet lead per case got a ``do_not_contact`` rejection
    (and maybe an opt-in); the export folder and each case's lead id."""
    tables = generate_tables(400, 3)
    quiet = _quiet_leads(tables)
    assert len(quiet) >= len(CASES)
    leads = dict(zip(CASES, quiet.index, strict=False))
    requests, opt_ins = [], []
    for number, (case, (asked, opted_in, _)) in enumerate(CASES.items()):
        lead_id, lead = leads[case], quiet.loc[leads[case]]
        requests.append(
            {
                "rejection_id": f"ADNC{number}",  # before the generated ids ("R...")
                "lead_id": lead_id,
                "rejected_at": _moment(asked, lead),
                "stage_at_rejection": "mql",
                "reason_code": "do_not_contact",
            }
        )
        if opted_in is not None:
            opt_ins.append(
                {"lead_id": lead_id, "changed_at": _moment(opted_in, lead), "status": "subscribed"}
            )
    tables["rejections"] = appended(tables["rejections"], pd.DataFrame(requests))
    tables["consent"] = appended(tables["consent"], pd.DataFrame(opt_ins))
    folder = tmp_path_factory.mktemp("requests") / "export"
    write_export(tables, folder, "parquet")
    return folder, leads


@pytest.fixture(scope="module")
def batch_rows(
    export_with_requests: tuple[Path, dict[str, str]],
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> pd.DataFrame:
    """The batch job's rows at ``AS_OF``, one per case (its lead's open rejection)."""
    folder, leads = export_with_requests
    out = tmp_path_factory.mktemp("requests-scores") / "scores.parquet"
    run_batch(request(folder, out, model_dir, as_of=AS_OF.to_pydatetime()))
    frame = read_output(out).set_index("lead_id")
    return frame.loc[[leads[case] for case in CASES]].set_index(pd.Index(list(CASES)))


@pytest.mark.parametrize("case", list(CASES))
def test_the_batch_job_follows_a_do_not_contact_rejection_before_or_after_as_of(
    batch_rows: pd.DataFrame, case: str
) -> None:
    row = batch_rows.loc[case]
    expected = CASES[case][2]

    assert bool(row["suppressed"]) is (expected is not None)
    assert row["suppression_reason"] == expected
    assert (row["program"] == SUPPRESSED_PROGRAM) is (expected is not None)


def test_the_api_and_the_batch_job_agree(
    export_with_requests: tuple[Path, dict[str, str]],
    batch_rows: pd.DataFrame,
    client: TestClient,
) -> None:
    folder, _ = export_with_requests
    export = load_export(folder)

    for case in API_CASES:
        batch = batch_rows.loc[case]
        body = request_body(export, batch["rejection_id"], AS_OF)
        api = client.post("/v1/score", json=body).json()

        assert "do_not_contact" in [r["reason_code"] for r in body["earlier_rejections"]]
        assert api["probability"] == pytest.approx(batch["probability"], abs=1e-9)
        assert (api["suppressed"], api["suppression_reason"], api["program"]) == (
            batch["suppressed"],
            batch["suppression_reason"],
            batch["program"],
        )
        assert api["routing"]["priority"] == batch["priority"]


def _second_rejection(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Another rejection of the item's lead, sent as an item of its own (no shared rows)."""
    other = copy.deepcopy(item)
    other["rejection"] = {**other["rejection"], "rejection_id": "R-other", **changes}
    other["consent"] = []
    return other


@pytest.mark.parametrize(
    ("said", "cause"),
    [
        pytest.param({"consent": "do_not_contact"}, "consent:do_not_contact", id="consent row"),
        pytest.param({"reason_code": "do_not_contact"}, OTHER_REJECTION_CAUSE, id="its reason"),
    ],
)
def test_a_do_not_contact_in_one_batch_item_holds_back_the_leads_other_items(
    client: TestClient, said: dict[str, str], cause: str
) -> None:
    # Given two rejections of one lead sent as two items of one batch call, the person's
    # do_not_contact carried by the second item only
    first = copy.deepcopy(EXAMPLE_REQUEST)
    second = _second_rejection(first, rejected_at="2025-07-01T09:30:00Z")
    if "consent" in said:
        second["consent"] = [
            {"lead_id": LEAD, "changed_at": "2025-07-02T00:00:00Z", "status": said["consent"]}
        ]
    else:
        second["rejection"]["reason_code"] = said["reason_code"]
    alone = client.post("/v1/score", json=first).json()
    assert alone["suppressed"] is False

    results = client.post("/v1/score/batch", json={"items": [first, second]}).json()["results"]

    # Then neither item is routed to a contact program; the first says whose word holds it
    assert [r["program"] for r in results] == [SUPPRESSED_PROGRAM, SUPPRESSED_PROGRAM]
    assert results[0]["suppression_reason"] == cause
    # and its probability is its own, as scored alone (contact is no feature)
    assert results[0]["probability"] == alone["probability"]


def test_items_of_different_leads_in_one_batch_share_nothing(client: TestClient) -> None:
    first = copy.deepcopy(EXAMPLE_REQUEST)
    other_lead = _second_rejection(first)
    other_lead["lead"] = {**other_lead["lead"], "lead_id": "L-other"}
    for rows in ("activities", "opportunities", "earlier_rejections"):
        other_lead[rows] = [{**row, "lead_id": "L-other"} for row in other_lead.get(rows, [])]
    other_lead["rejection"] = {
        **other_lead["rejection"],
        "lead_id": "L-other",
        "reason_code": "do_not_contact",
    }

    results = client.post("/v1/score/batch", json={"items": [first, other_lead]}).json()["results"]

    assert results[0]["suppressed"] is False
    assert results[1]["suppression_reason"] == "reason:do_not_contact"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["refusing item first", "second"])
def test_a_do_not_contact_copy_holds_whichever_copy_of_the_rejection_comes_later(
    client: TestClient, order: tuple[int, int]
) -> None:
    # Given two items of one lead holding two copies of rejection R0000001: one says the
    # person asked not to be contacted, the other (an older export) says budget
    refusing = _body()
    stale = _second_rejection(EXAMPLE_REQUEST, rejected_at="2025-07-01T09:30:00Z")
    stale["earlier_rejections"] = [{**REQUEST, "reason_code": "budget"}]
    assert client.post("/v1/score", json=refusing).json()["suppressed"] is True
    items = [(refusing, stale)[i] for i in order]

    results = client.post("/v1/score/batch", json={"items": items}).json()["results"]

    # Then both items are held back, in either order
    assert [r["suppression_reason"] for r in results] == [OTHER_REJECTION_CAUSE] * 2
