"""One feature implementation: an export and a request for the same lead agree to 1e-9."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.config import CustomColumns, FeatureConfig
from features.dataset import ExampleSet, build_training_set
from features.engine import FeatureTable, compute_features
from features.examples import Examples
from features.history import history_from_export
from features.loading import Export, load_export
from features.records import ScoreRequest
from features.request_history import requests_history
from features.requests import request_body
from tests.features.conftest import write_tiny_export

CONFIG = FeatureConfig(
    custom_columns={
        "numeric": ("crm_custom_web_sessions_12m",),
        "categorical": ("crm_custom_tech_stack",),
    }
)


@pytest.fixture(scope="module")
def training_set(small_export: Export) -> ExampleSet:
    return build_training_set(small_export, CONFIG)


def request_features(export: Export, rejection_id: str, as_of: object) -> FeatureTable:
    """Features computed the API's way: a JSON body over the wire, one lead's rows only."""
    body = request_body(
        export,
        rejection_id,
        as_of,  # type: ignore[arg-type]
        custom_columns=("crm_custom_web_sessions_12m", "crm_custom_tech_stack"),
    )
    request = ScoreRequest.model_validate(json.loads(json.dumps(body)))
    history, examples = requests_history([request], CONFIG, datetime.now(UTC))
    return compute_features(history, examples, CONFIG)


def assert_row_equal(batch: FeatureTable, index: int, single: FeatureTable) -> None:
    for spec in batch.specs:
        expected, actual = batch.columns[spec.name][index], single.columns[spec.name][0]
        if spec.kind == "text":
            assert expected == actual, spec.name
        else:
            np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9, err_msg=spec.name)


def test_request_features_equal_export_features(
    small_export: Export, training_set: ExampleSet
) -> None:
    # Given examples sampled across reasons and re-scoring offsets
    rng = np.random.default_rng(3)
    sample = rng.choice(len(training_set), size=150, replace=False)
    for index in sample:
        keys = training_set.keys.iloc[index]
        # When the same lead is featurised from a request body
        single = request_features(small_export, keys["rejection_id"], keys["as_of"])
        # Then every feature matches the export's to 1e-9
        assert_row_equal(training_set.features, int(index), single)


def test_many_requests_in_one_history_equal_export_features(
    small_export: Export, training_set: ExampleSet
) -> None:
    # Given 120 request bodies of different leads (as a batch or coalesced calls bring them)
    rng = np.random.default_rng(5)
    keys = training_set.keys
    first_of_lead = keys.drop_duplicates("lead_id").index.to_numpy()
    sample = rng.choice(first_of_lead, size=120, replace=False)
    requests = [
        ScoreRequest.model_validate(
            json.loads(
                json.dumps(
                    request_body(
                        small_export,
                        keys.at[index, "rejection_id"],
                        keys.at[index, "as_of"],
                        custom_columns=("crm_custom_web_sessions_12m", "crm_custom_tech_stack"),
                    )
                )
            )
        )
        for index in sample
    ]
    # When they are featurised together in one history
    history, examples = requests_history(requests, CONFIG, datetime.now(UTC))
    together = compute_features(history, examples, CONFIG)
    # Then row i equals the export's features of request i, to 1e-9
    for row, index in enumerate(sample):
        assert_row_equal(training_set.features, int(index), together.take(np.array([row])))


def test_chunking_does_not_change_features(small_export: Export, training_set: ExampleSet) -> None:
    chunked = build_training_set(small_export, CONFIG, chunk_leads=97)

    assert chunked.keys.equals(training_set.keys)
    for name in training_set.features.names:
        np.testing.assert_array_equal(
            chunked.features.columns[name], training_set.features.columns[name], err_msg=name
        )


def test_a_custom_number_past_float_range_counts_as_missing_as_in_files() -> None:
    """JSON keeps a 400-digit integer exact; as a numeric custom feature it is missing (NaN),
    as a file's non-finite number is."""
    config = FeatureConfig(custom_columns=CustomColumns(numeric=("crm_score",)))
    body = b'{"lead": {"lead_id": "L1", "created_at": "2025-01-01", "lead_source": "webinar",'
    body += b' "crm_score": 1' + b"0" * 400 + b'}, "rejection": {"rejection_id": "R1",'
    body += b' "lead_id": "L1", "rejected_at": "2025-02-01", "stage_at_rejection": "sql",'
    body += b' "reason_code": "budget"}}'

    history, _ = requests_history(
        [ScoreRequest.model_validate_json(body)], config, datetime.now(UTC)
    )

    assert np.isnan(history.lead_numbers["crm_score"]).all()


LARGEST_FLOAT = float(np.finfo(np.float64).max)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_amounts_summing_past_float_range_saturate_without_warnings(sign: float) -> None:
    """Three won deals of 1.8e308 USD each are valid input; their total is the largest float
    of its sign (not inf), with no RuntimeWarning on the way, and the lead's other features
    are those it has without the deals' amounts."""
    deal = {"lead_id": "L1", "created_at": "2024-01-01", "closed_at": "2024-02-01"}
    deals = [
        {**deal, "opportunity_id": f"O{i}", "status": "won", "amount": sign * LARGEST_FLOAT}
        for i in range(3)
    ]
    body = {
        "lead": {"lead_id": "L1", "created_at": "2023-06-01", "lead_source": "webinar"},
        "rejection": {
            "rejection_id": "R1",
            "lead_id": "L1",
            "rejected_at": "2025-02-01",
            "stage_at_rejection": "sql",
            "reason_code": "budget",
        },
        "opportunities": deals,
    }
    without_amounts = {**body, "opportunities": [{**d, "amount": None} for d in deals]}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features = _features_of(body)
    plain = _features_of(without_amounts)

    assert features.columns["amount_won"][0] == sign * LARGEST_FLOAT
    assert features.columns["amount_lost"][0] == 0.0
    for spec in features.specs:
        if spec.kind != "text" and spec.name != "amount_won":
            np.testing.assert_array_equal(
                features.columns[spec.name], plain.columns[spec.name], err_msg=spec.name
            )


def _features_of(body: dict[str, object]) -> FeatureTable:
    request = ScoreRequest.model_validate_json(json.dumps(body))
    history, examples = requests_history([request], CONFIG, datetime(2025, 3, 1, tzinfo=UTC))
    return compute_features(history, examples, CONFIG)


ONE_LEAD_TABLES = {
    "rejections": "rejection_id,lead_id,rejected_at,stage_at_rejection,reason_code\n"
    "R1,L1,2024-04-01T00:00:00Z,sql,budget\n",
    "activities": "activity_id,lead_id,occurred_at,activity_type\n"
    "A1,L1,2024-02-01T00:00:00Z,email_open\n",
    "opportunities": "opportunity_id,lead_id,created_at,closed_at,status,amount\n",
    "consent": "lead_id,changed_at,status\n",
}


@pytest.mark.parametrize(
    ("file_text", "json_value"),
    [("7", b"7"), ("true", b"true"), ("Gold Plan", b'"gold_plan"'), ("2.5", b"2.5")],
)
def test_a_custom_category_sent_as_a_json_number_or_boolean_reads_as_the_files_text(
    tmp_path: Path, file_text: str, json_value: bytes
) -> None:
    """A categorical custom column is text: a JSON number or boolean is read by the text
    rule (``features.text``), which is the file's text whenever the file writes it so."""
    from_file, from_request = _custom_category_from_file_and_json(tmp_path, file_text, json_value)

    assert from_file is not None
    assert from_request == from_file


def test_an_email_address_in_a_custom_category_is_never_a_feature(tmp_path: Path) -> None:
    """Personal data is never a feature, whatever column holds it (an account owner's
    address in a custom field): it reads as missing from files as from requests."""
    address = "Owner.One@acme.example"

    from_file, from_request = _custom_category_from_file_and_json(
        tmp_path, f" {address} ", f'"{address}"'.encode()
    )

    assert from_file is None
    assert from_request is None


def _custom_category_from_file_and_json(
    tmp_path: Path, file_text: str, json_value: bytes
) -> tuple[object, object]:
    """The ``crm_plan`` feature of one lead at its rejection, from a CSV export holding
    ``file_text`` and from a JSON request body holding ``json_value``."""
    config = FeatureConfig(custom_columns=CustomColumns(categorical=("crm_plan",)))
    leads = f"lead_id,created_at,lead_source,crm_plan\nL1,2024-01-01,webinar,{file_text}\n"
    export = load_export(write_tiny_export(tmp_path, {**ONE_LEAD_TABLES, "leads": leads}))
    body = b'{"lead": {"lead_id": "L1", "created_at": "2024-01-01", "lead_source": "webinar",'
    body += b' "crm_plan": ' + json_value + b'}, "rejection": {"rejection_id": "R1",'
    body += b' "lead_id": "L1", "rejected_at": "2024-04-01T00:00:00Z", "stage_at_rejection":'
    body += b' "sql", "reason_code": "budget"}, "activities": [{"activity_id": "A1",'
    body += b' "lead_id": "L1", "occurred_at": "2024-02-01", "activity_type": "email_open"}]}'
    history = history_from_export(export, config)
    at_rejection = Examples.at(history, np.array([0]), history.rejections.time[:1])
    from_file = compute_features(history, at_rejection, config)
    request_history, examples = requests_history(
        [ScoreRequest.model_validate_json(body)], config, datetime.now(UTC)
    )
    from_request = compute_features(request_history, examples, config)
    return from_file.columns["crm_plan"][0], from_request.columns["crm_plan"][0]


def test_a_boolean_custom_number_reads_as_one_or_zero_from_parquet_and_json(
    tmp_path: Path,
) -> None:
    config = FeatureConfig(custom_columns=CustomColumns(numeric=("crm_is_partner",)))
    leads = pd.DataFrame(
        {"lead_id": ["L1"], "created_at": ["2024-01-01"], "lead_source": ["webinar"]}
    ).assign(crm_is_partner=[True])
    directory = write_tiny_export(tmp_path, {**ONE_LEAD_TABLES, "leads": "lead_id\nL0\n"})
    (directory / "leads.csv").unlink()
    leads.to_parquet(directory / "leads.parquet")
    body = b'{"lead": {"lead_id": "L1", "created_at": "2024-01-01", "lead_source": "webinar",'
    body += b' "crm_is_partner": true}, "rejection": {"rejection_id": "R1", "lead_id": "L1",'
    body += b' "rejected_at": "2024-04-01T00:00:00Z", "stage_at_rejection": "sql",'
    body += b' "reason_code": "budget"}}'

    from_file = history_from_export(load_export(directory), config)
    from_request, _ = requests_history(
        [ScoreRequest.model_validate_json(body)], config, datetime.now(UTC)
    )

    assert from_file.lead_numbers["crm_is_partner"].tolist() == [1.0]
    assert from_request.lead_numbers["crm_is_partner"].tolist() == [1.0]


@pytest.mark.parametrize("arrow_type", [pa.int64(), pa.float64()])
@pytest.mark.parametrize("json_number", [b"12", b"12.0"])
def test_codes_in_text_columns_read_alike_from_parquet_csv_and_json(
    tmp_path: Path, arrow_type: pa.DataType, json_number: bytes
) -> None:
    # Given an industry code and a custom category as Parquet numbers (with a gap), as CSV
    # text and as JSON numbers
    config = FeatureConfig(custom_columns=CustomColumns(categorical=("crm_plan",)))
    leads = "lead_id,created_at,lead_source,industry,crm_plan\n"
    leads += "L1,2024-01-01,webinar,12,12\nL2,2024-01-01,webinar,,\n"
    csv_dir = write_tiny_export(tmp_path / "csv", {**ONE_LEAD_TABLES, "leads": leads})
    parquet_dir = write_tiny_export(tmp_path / "parquet", {**ONE_LEAD_TABLES, "leads": leads})
    (parquet_dir / "leads.csv").unlink()
    codes = pa.array([12, None], arrow_type)
    table = pa.table(
        {
            "lead_id": ["L1", "L2"],
            "created_at": ["2024-01-01", "2024-01-01"],
            "lead_source": ["webinar", "webinar"],
            "industry": codes,
            "crm_plan": codes,
        }
    )
    pq.write_table(table, parquet_dir / "leads.parquet")
    body = b'{"lead": {"lead_id": "L1", "created_at": "2024-01-01", "lead_source": "webinar",'
    body += b' "industry": ' + json_number + b', "crm_plan": ' + json_number + b"},"
    body += b' "rejection": {"rejection_id": "R1", "lead_id": "L1",'
    body += b' "rejected_at": "2024-04-01T00:00:00Z", "stage_at_rejection": "sql",'
    body += b' "reason_code": "budget"}, "activities": [{"activity_id": "A1", "lead_id": "L1",'
    body += b' "occurred_at": "2024-02-01", "activity_type": "email_open"}],'
    body += b' "as_of": "2024-04-01T00:00:00Z"}'

    # When each is featurised at the rejection
    def file_features(directory: Path) -> FeatureTable:
        history = history_from_export(load_export(directory), config)
        at_rejection = Examples.at(history, np.array([0]), history.rejections.time[:1])
        return compute_features(history, at_rejection, config)

    from_csv, from_parquet = file_features(csv_dir), file_features(parquet_dir)
    history, examples = requests_history(
        [ScoreRequest.model_validate_json(body)], config, datetime.now(UTC)
    )
    from_json = compute_features(history, examples, config)

    # Then the code is the same text "12" on every path, and so is every feature
    for column in ("industry", "crm_plan"):
        assert from_csv.columns[column][0] == "12", column
    assert_row_equal(from_csv, 0, from_parquet)
    assert_row_equal(from_csv, 0, from_json)


#: Moments where the rules meet: rows exactly at ``as_of``, two rejections at one moment
#: (one written with an offset), contradictory consent rows at one moment, a close dated
#: before its creation, a won deal without a close date, a deal created exactly at the
#: rejection, and rows after ``as_of`` (which the request carries too).
EDGE_TABLES = {
    "leads": "lead_id,created_at,lead_source,industry,job_title,product_fit\n"
    "L1,2024-01-01T00:00:00+02:00,webinar,Software,VP Sales,ideal\n"
    "L2,2024-01-01,web_form,,,\n",
    "rejections": "rejection_id,lead_id,rejected_at,stage_at_rejection,reason_code,"
    "follow_up_date,lead_score_at_rejection,recommended_program\n"
    "R9,L1,2024-03-01T12:00:00+02:00,sql,budget,2024-06-01,40,Nurture A\n"
    "R10,L1,2024-03-01T10:00:00Z,sal,timing,,,\n"
    "R2,L1,2024-05-01T00:00:00Z,mql,no_need,,,\n"
    "R3,L2,2024-02-01T00:00:00Z,mql,budget,,,\n",
    "activities": "activity_id,lead_id,occurred_at,activity_type\n"
    "A1,L1,2024-03-01T10:00:00Z,pricing_page_visit\n"
    "A2,L1,2024-03-31T10:00:00Z,demo_request\n"
    "A3,L1,2024-03-31T12:00:00+02:00,email_open\n"
    "A4,L1,2024-04-01T00:00:00Z,web_visit\n"
    "A5,L1,2025-01-01T00:00:00Z,web_visit\n"
    "A6,L2,2024-02-01T00:00:00Z,onsite_demo\n",
    "opportunities": "opportunity_id,lead_id,created_at,closed_at,status,amount\n"
    "O1,L1,2024-02-01T00:00:00Z,2024-01-15T00:00:00Z,lost,100\n"
    "O2,L1,2024-02-10T00:00:00Z,,won,200\n"
    "O3,L1,2024-02-20T00:00:00Z,2024-03-01T10:00:00Z,lost,300\n"
    "O4,L1,2024-03-01T10:00:00Z,,open,50\n"
    "O5,L2,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,won,900\n",
    "consent": "lead_id,changed_at,status\n"
    "L1,2024-03-01T10:00:00Z,unsubscribed\n"
    "L1,2024-03-01T10:00:00Z,subscribed\n"
    "L1,2024-03-31T10:00:00Z,do_not_contact\n"
    "L1,2024-03-31T10:00:00Z,subscribed\n",
}


@pytest.mark.parametrize(
    ("rejection_id", "as_of"),
    [
        ("R9", "2024-03-01T10:00:00Z"),
        ("R10", "2024-03-01T10:00:00Z"),
        ("R9", "2024-03-31T10:00:00Z"),
        ("R2", "2024-05-01T00:00:00Z"),
        ("R2", "2024-12-31T00:00:00Z"),
        ("R3", "2024-02-01T00:00:00Z"),
    ],
)
def test_an_export_and_a_request_agree_where_the_rules_meet(
    tmp_path: Path, rejection_id: str, as_of: str
) -> None:
    for name, text in EDGE_TABLES.items():
        (tmp_path / f"{name}.csv").write_text(text)
    export = load_export(tmp_path)
    config = FeatureConfig()
    history = history_from_export(export, config)
    moment = pd.Timestamp(as_of)
    row = np.flatnonzero(history.rejections.rejection_id == rejection_id)
    from_export = compute_features(
        history, Examples.at(history, row, np.array([moment.value // 1000])), config
    )

    body = request_body(export, rejection_id, moment)
    request = ScoreRequest.model_validate(json.loads(json.dumps(body)))
    from_request = compute_features(*requests_history([request], config, datetime.now(UTC)), config)

    assert_row_equal(from_export, 0, from_request)


def test_the_edge_export_reads_as_the_rules_say(tmp_path: Path) -> None:
    for name, text in EDGE_TABLES.items():
        (tmp_path / f"{name}.csv").write_text(text)
    export = load_export(tmp_path)
    config = FeatureConfig()
    history = history_from_export(export, config)
    row = np.flatnonzero(history.rejections.rejection_id == "R9")
    at_rejection = pd.Timestamp("2024-03-01T10:00:00Z").value // 1000

    columns = compute_features(
        history, Examples.at(history, row, np.array([at_rejection])), config
    ).columns

    # R10, at the same moment, is not an earlier rejection; the unsubscription at the
    # rejection's moment wins over the subscription beside it; the four deals created up
    # to the rejection count, the won one without a close date and the one created at the
    # rejection among the open ones; a close at the rejection's moment is a close seen
    assert columns["earlier_rejections"][0] == 0
    assert columns["consent_status"][0] == 1  # unsubscribed
    assert (columns["opportunities_before"][0], columns["opportunities_open"][0]) == (4, 2)
    assert (columns["opportunities_lost"][0], columns["opportunities_won"][0]) == (2, 0)
    assert columns["days_since_last_close"][0] == 0
