"""Request records accept exactly what the loader accepts and refuse ambiguous bodies."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.coercion import check_table
from features.contract import AT_SIGNS, LEADS, MAX_ID_LENGTH, MAX_TEXT_LENGTH, TABLES
from features.numbers import number_from_text, numbers_from_text
from features.records import LeadRecord, ScoreRequest
from features.table_files import ARROW_STRING, arrow_to_pandas
from features.text import is_blank
from features.timestamps import parse_timestamp, parse_timestamps

BODY: dict[str, Any] = {
    "lead": {"lead_id": "L1", "created_at": "2025-03-02T10:00:00Z", "lead_source": "webinar"},
    "rejection": {
        "rejection_id": "R2",
        "lead_id": "L1",
        "rejected_at": "2025-06-01T09:30:00+02:00",
        "stage_at_rejection": "SQL",
        "reason_code": "budget",
    },
    "activities": [
        {
            "activity_id": "A1",
            "lead_id": "L1",
            "occurred_at": "2025-05-01T00:00:00",
            "activity_type": "telepathy",
        },
    ],
    "earlier_rejections": [
        {
            "rejection_id": "R1",
            "lead_id": "L1",
            "rejected_at": "2025-04-01",
            "stage_at_rejection": "mql",
            "reason_code": "timing",
        },
    ],
    "as_of": "2025-09-01T00:00:00Z",
}


def body_with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def test_a_valid_body_is_normalised_like_the_loader() -> None:
    request = ScoreRequest.model_validate(BODY)

    assert request.rejection.rejected_at.isoformat() == "2025-06-01T07:30:00+00:00"
    assert request.rejection.stage_at_rejection == "sql"
    assert request.activities[0].activity_type == "other"
    assert request.activities[0].occurred_at.isoformat() == "2025-05-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("as_of",), "1748772000", "ISO 8601"),
        (("as_of",), 1748772000, "ISO 8601"),
        (("rejection", "reason_code"), "bad_vibes", "must be one of"),
        (("activities", 0, "lead_id"), "L2", "does not match lead.lead_id"),
        (("earlier_rejections", 0, "rejected_at"), "2025-07-01", "is after rejection.rejected_at"),
        (("earlier_rejections", 0, "rejection_id"), "R2", "the rejection being scored"),
        (("as_of",), "2025-01-01T00:00:00Z", "is before rejection.rejected_at"),
        (("earlier_rejections", 0, "rejected_at"), "2025-03-01", "is before lead.created_at"),
    ],
)
def test_ambiguous_or_invalid_bodies_are_refused_at_the_field(
    path: tuple[str | int, ...], value: Any, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ScoreRequest.model_validate(body_with(path, value))

    [error] = refused.value.errors()
    assert error["loc"] == path
    assert message in error["msg"]


@pytest.mark.parametrize(
    "blank",
    [" ", "\t", "\u200b", "\u3000\ufeff", "\u3164", "\U000e0020\ufe0f", "\x00"],
    ids=repr,
)
@pytest.mark.parametrize(
    "path",
    [("lead", "lead_id"), ("rejection", "rejection_id"), ("activities", 0, "activity_id")],
    ids=str,
)
def test_a_blank_identifier_is_refused_at_the_field_as_the_loader_sets_it_aside(
    path: tuple[str | int, ...], blank: str
) -> None:
    body = body_with(path, blank)
    for validate in (ScoreRequest.model_validate, _validate_json):
        with pytest.raises(ValidationError) as refused:
            validate(body)

        [error] = refused.value.errors()
        assert error["loc"] == path
        assert "not blank" in error["msg"]


def test_rejections_before_the_lead_was_created_are_refused_each_by_its_field() -> None:
    with pytest.raises(ValidationError) as refused:
        ScoreRequest.model_validate(body_with(("lead", "created_at"), "2025-06-01T07:30:01Z"))

    errors = refused.value.errors()
    assert [e["loc"] for e in errors] == [
        ("rejection", "rejected_at"),
        ("earlier_rejections", 0, "rejected_at"),
    ]
    assert all(e["msg"].startswith("is before lead.created_at") for e in errors)


def test_a_rejection_at_the_moment_its_lead_was_created_is_scored() -> None:
    request = ScoreRequest.model_validate(body_with(("lead", "created_at"), "2025-04-01"))

    assert request.lead.created_at == request.earlier_rejections[0].rejected_at


ID_CHARACTERS = st.sampled_from(
    ["a", "7", "@", "\uff20", " ", "\t", "\u200b", "\u3164", "é", "\x00", "\x9f"]
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(ID_CHARACTERS, min_size=1, max_size=12))
def test_the_json_schema_pattern_of_an_id_refuses_what_the_api_refuses(text: str) -> None:
    schema = LeadRecord.model_json_schema()["properties"]["lead_id"]["anyOf"][0]
    refused = is_blank(text) or any(sign in text for sign in AT_SIGNS)

    assert (re.search(schema["pattern"], text) is None) == refused
    if is_blank(text):  # the request refuses an @ (ScoreRequest), the record a blank id
        with pytest.raises(ValidationError):
            LeadRecord.model_validate({**BODY["lead"], "lead_id": text})
    else:
        assert LeadRecord.model_validate({**BODY["lead"], "lead_id": text}).lead_id == text


def test_a_blank_optional_identifier_is_missing() -> None:
    request = ScoreRequest.model_validate(body_with(("lead", "account_id"), "\u200b "))

    assert request.lead.account_id is None


def _validate_json(body: dict[str, Any]) -> ScoreRequest:
    return ScoreRequest.model_validate_json(json.dumps(body))


def _opportunity_created(created_at: str) -> dict[str, Any]:
    return {
        "opportunity_id": "O1",
        "lead_id": "L1",
        "created_at": created_at,
        "status": "open",
    }


@pytest.mark.parametrize(
    "created_at",
    [
        "2025-06-01T07:30:00.000001Z",  # just after the rejection
        "2025-09-01T00:00:00Z",  # at as_of
    ],
)
def test_an_opportunity_since_the_rejection_closes_it_and_it_is_not_scored(
    created_at: str,
) -> None:
    """Only an open rejection is scored (the contract): the batch job leaves a closed one
    out, and a request for one is refused at the opportunity that closed it."""
    with pytest.raises(ValidationError) as refused:
        ScoreRequest.model_validate(
            body_with(("opportunities",), [_opportunity_created(created_at)])
        )

    [error] = refused.value.errors()
    assert error["loc"] == ("opportunities", 0, "created_at")
    assert "no longer open" in error["msg"]


@pytest.mark.parametrize(
    "created_at",
    [
        "2025-06-01T07:30:00Z",  # at the rejection: before it, as in examples and labels
        "2025-09-01T00:00:00.000001Z",  # after as_of: not known yet
        "2025-01-01T00:00:00Z",  # before the rejection
    ],
)
def test_an_opportunity_outside_the_open_span_leaves_the_rejection_open(created_at: str) -> None:
    request = ScoreRequest.model_validate(
        body_with(("opportunities",), [_opportunity_created(created_at)])
    )

    assert len(request.opportunities) == 1


def test_repeated_activity_ids_are_refused() -> None:
    body = copy.deepcopy(BODY)
    body["activities"].append(dict(body["activities"][0]))

    with pytest.raises(ValidationError) as refused:
        ScoreRequest.model_validate(body)

    [error] = refused.value.errors()
    assert error["loc"] == ("activities", 1, "activity_id")
    assert error["msg"] == "repeats activities.0.activity_id"


#: Near misses of the contract's form: space separator, lower-case ``z``, bare-hour offsets,
#: ten fraction digits, a trailing newline.
LOOSE_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,10})?)?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)?)?\n?"
)
TIMESTAMP_EDGES = [
    "2025-03-02",
    "2025-03-02T10:00",
    "2025-03-02T10:00:00.123456789+05:30",
    "2025-03-02T10:00:00-0230",
    "2025-03-02T10:00:00+00:60",
    "2025-03-02T10:00:00+24:00",
    "2025-03-02 10:00:00Z",
    "2025-02-29",
    "1677-09-21T00:12:43.145224Z",
    "1677-09-21T00:12:43.145225Z",
    "1677-09-21T01:12:43.145225+01:00",
    "1677-09-22T00:00:00.000001Z",
    "2262-04-11T23:47:16.854775Z",
    "2262-04-11T23:47:16.854776Z",
    "2262-04-11T23:47:16.8547759Z",
    "2262-04-11T23:47:16.8547741Z",
    "2025-12-31T23:59:59.9999999Z",
    "2025-03-02T10:00:00.000000001-05:30",
    "2262-04-11T23:47:16.854775807Z",
    "1677-09-21T00:12:43.1452249Z",
    "1677-09-21T00:12:43.145224192Z",
    "2025-01-01T10:00\n",
    "2025-01-01T10:00:00.12345678\u0669",
    "2025-01-0\u0661",
    "2025-01-01\n",
    "2262-04-11T00:00:00Z",
    "0001-01-01T00:00:00+00:01",
    "1748772000",
    "٢٠٢٥-03-02",
    "",
]


REFUSED = "refused"


def _read_by_json_and_python(lead: dict[str, Any], field: str) -> tuple[Any, Any]:
    """``field`` of ``lead`` validated from JSON bytes and from Python (``REFUSED``, or the
    value: None when missing)."""

    def value(validate: Any) -> Any:
        try:
            return getattr(validate(), field)
        except ValidationError:
            return REFUSED

    return (
        value(lambda: LeadRecord.model_validate_json(orjson.dumps(lead))),
        value(lambda: LeadRecord.model_validate(lead)),
    )


def _assert_read_alike(text: str) -> None:
    """The JSON path, the Python path and the file loader give the same moment, or all refuse."""
    lead = {"lead_id": "L1", "created_at": text, "lead_source": "webinar"}
    parsed, bad = parse_timestamps(pd.Series([text], dtype=object))
    from_loader = REFUSED if bad[0] or pd.isna(parsed.iloc[0]) else parsed.iloc[0].to_pydatetime()

    from_json, from_python = _read_by_json_and_python(lead, "created_at")

    assert from_json == from_python == from_loader


@pytest.mark.parametrize("text", TIMESTAMP_EDGES)
def test_edge_timestamps_read_alike_from_json_python_and_files(text: str) -> None:
    _assert_read_alike(text)


@st.composite
def _real_moments(draw: st.DrawFn) -> str:
    """Real calendar moments, many near the ends of the span, written in the contract's
    forms and their near misses (fraction digits 0 to 9, offsets, a trailing newline)."""
    moment = draw(
        st.one_of(
            st.datetimes(datetime(1677, 9, 20), datetime(1677, 9, 23)),
            st.datetimes(datetime(2262, 4, 10), datetime(2262, 4, 12, 23, 59)),
            st.datetimes(datetime(1677, 9, 20), datetime(2262, 4, 12)),
        )
    )
    digits = draw(st.integers(0, 9))
    fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "")
    return text + draw(st.sampled_from(["", "Z", "+00:00", "-05:30", "+2359", "+14:00", "\n"]))


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(_real_moments(), st.from_regex(LOOSE_TIMESTAMP, fullmatch=True), st.text(max_size=30))
)
def test_any_timestamp_reads_alike_from_json_python_and_files(text: str) -> None:
    _assert_read_alike(text)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-03-02T10:00:00.0000001Z", "2025-03-02T10:00:00.000001+00:00"),
        ("2025-03-02T10:00:00.123456000Z", "2025-03-02T10:00:00.123456+00:00"),
        ("2025-03-02T10:00:00.1234561Z", "2025-03-02T10:00:00.123457+00:00"),
        ("2025-12-31T23:59:59.999999001Z", "2026-01-01T00:00:00+00:00"),
        ("2025-03-02T10:00:00.0000001+05:30", "2025-03-02T04:30:00.000001+00:00"),
    ],
)
def test_a_fraction_past_microseconds_rounds_up_in_files_and_requests(
    text: str, moment: str
) -> None:
    """Cut, an event 0.9 µs after a scoring moment would fall on it and count as known."""
    parsed, bad = parse_timestamps(pd.Series([text], dtype=object))

    assert not bad[0]
    assert parsed.iloc[0].isoformat() == moment
    assert parse_timestamp(text).isoformat() == moment


def test_the_first_moment_pandas_holds_loads_as_itself() -> None:
    parsed, bad = parse_timestamps(pd.Series(["1677-09-21T00:12:43.145225Z"], dtype=object))

    assert not bad[0]
    assert parsed.iloc[0].isoformat() == "1677-09-21T00:12:43.145225+00:00"


@pytest.mark.parametrize(
    ("path", "longest"),
    [
        (("rejection", "rejection_id"), MAX_ID_LENGTH),
        (("rejection", "reason_detail"), MAX_TEXT_LENGTH),
    ],
)
def test_requests_take_exactly_the_lengths_files_take(
    path: tuple[str | int, ...], longest: int
) -> None:
    ScoreRequest.model_validate(body_with(path, "x" * longest))

    with pytest.raises(ValidationError, match=path[-1]):
        ScoreRequest.model_validate(body_with(path, "x" * (longest + 1)))


def test_an_empty_identifier_is_refused_as_in_files() -> None:
    with pytest.raises(ValidationError, match="rejection_id"):
        ScoreRequest.model_validate(body_with(("rejection", "rejection_id"), ""))


NUMBER_TEXTS = ["12", " 12 ", "12.0", "1e3", "-5", "20000000", "2.5", "1_000", "true", "0x10"]
NUMBER_TEXTS += ["", "  ", "nan", "inf", "-Infinity", "1e999", "+3", ".5", "5.", "1,000", "١٢"]


def _assert_number_read_alike(text: str) -> None:
    """A number sent as JSON text reads as the file's field does: same value, or refused."""
    lead = {"lead_id": "L1", "created_at": "2025-01-01", "lead_source": "webinar"}
    row = pd.DataFrame([{**lead, "employee_count": text}], dtype=ARROW_STRING)  # as CSV is read
    check = check_table(LEADS, row, "leads.csv")
    if check.problems:
        from_loader: Any = REFUSED
    else:
        read = check.clean_frame()["employee_count"].iloc[0]
        from_loader = None if pd.isna(read) else float(read)
    from_json, from_python = _read_by_json_and_python(
        {**lead, "employee_count": text}, "employee_count"
    )

    assert from_json == from_python == from_loader


@pytest.mark.parametrize("text", NUMBER_TEXTS)
def test_numbers_sent_as_text_read_alike_from_json_python_and_files(text: str) -> None:
    _assert_number_read_alike(text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.from_regex(r"\s?[-+]?[0-9_]{0,4}\.?[0-9]{0,3}(e[-+]?[0-9]{1,3})?\s?"),
        st.text(max_size=12),
    )
)
def test_any_number_text_reads_alike_from_json_python_and_files(text: str) -> None:
    _assert_number_read_alike(text)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.from_regex(r"\s{0,2}[-+]?[0-9]{0,40}\.?[0-9]{0,40}([eE][-+]?[0-9]{1,4})?\s{0,2}"),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.text(max_size=12),
    )
)
def test_one_number_reads_bit_for_bit_as_a_column_of_them_does(text: str) -> None:
    """The request path's one-value parser is the file loader's column parser, to the bit
    (pandas' parser is not correctly rounded for long mantissas, so Python's ``float`` is
    not a stand-in)."""
    column = numbers_from_text(pd.Series([text], dtype=ARROW_STRING))[0]
    one = number_from_text(text)

    assert np.array_equal([one], [column], equal_nan=True)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_never_a_number(value: bool) -> None:
    with pytest.raises(ValidationError, match="must be a finite number"):
        ScoreRequest.model_validate(body_with(("rejection", "lead_score_at_rejection"), value))


OPTIONAL_FIELDS = [
    ("lead", "account_id"),
    ("lead", "industry"),
    ("lead", "employee_count"),
    ("lead", "annual_revenue"),
    ("rejection", "follow_up_date"),
    ("rejection", "lead_score_at_rejection"),
    ("rejection", "recommended_program"),
    ("rejection", "rep_id"),
    ("opportunities", 0, "closed_at"),
    ("opportunities", 0, "amount"),
]


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize("path", OPTIONAL_FIELDS)
def test_a_blank_optional_value_is_a_missing_one_in_requests_and_files(
    path: tuple[str | int, ...], blank: str
) -> None:
    """Platforms send an unset property as ``""``; a file's empty field is missing too."""
    table = {"lead": "leads", "rejection": "rejections", "opportunities": "opportunities"}
    contract = next(t for t in TABLES if t.name == table[str(path[0])])
    column = str(path[-1])
    row: dict[str, str | None] = dict.fromkeys((c.name for c in contract.columns), None)
    row.update(_minimal_row(contract.name))
    row[column] = blank
    for frame in (
        pd.DataFrame([row], dtype=ARROW_STRING),  # text, as a CSV is read
        pd.DataFrame([row], dtype=object),  # Python strings, as Parquet text is read
    ):
        check = check_table(contract, frame, f"{contract.name}.csv")
        assert not check.problems
        assert pd.isna(check.clean_frame()[column].iloc[0])

    body = body_with(("opportunities",), [{**_minimal_row("opportunities")}])
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[column] = blank
    for record in (
        ScoreRequest.model_validate(body),
        ScoreRequest.model_validate_json(orjson.dumps(body)),
    ):
        holder: Any = {
            "lead": record.lead,
            "rejection": record.rejection,
            "opportunities": record.opportunities[0],
        }[str(path[0])]
        assert getattr(holder, column) is None


@pytest.mark.parametrize(
    ("path", "blank"),
    [
        (("activities", 0, "activity_type"), ""),
        (("activities", 0, "activity_type"), "  "),
        (("rejection", "reason_code"), " "),
        (("rejection", "barrier_side"), ""),
        (("lead", "job_level"), " "),
    ],
)
def test_a_blank_category_is_a_missing_one_as_in_files(
    path: tuple[str | int, ...], blank: str
) -> None:
    """Refused where the column is required, missing where it is optional, on both paths."""
    table, column = (
        {"activities": "activities", "rejection": "rejections", "lead": "leads"}[str(path[0])],
        str(path[-1]),
    )
    contract = next(t for t in TABLES if t.name == table)
    required = next(c for c in contract.columns if c.name == column).required
    row: dict[str, str | None] = dict.fromkeys((c.name for c in contract.columns), None)
    row.update(_minimal_row(table))
    row[column] = blank
    check = check_table(contract, pd.DataFrame([row], dtype=ARROW_STRING), f"{table}.csv")

    body = body_with(path, blank)
    if required:
        assert check.problems
        with pytest.raises(ValidationError, match=column):
            ScoreRequest.model_validate(body)
    else:
        assert not check.problems
        assert pd.isna(check.clean_frame()[column].iloc[0])
        record: Any = ScoreRequest.model_validate(body)
        holder = record.lead if path[0] == "lead" else record.rejection
        assert getattr(holder, column) is None


def _minimal_row(table: str) -> dict[str, str]:
    rows = {
        "activities": {
            "activity_id": "A1",
            "lead_id": "L1",
            "occurred_at": "2025-01-01",
            "activity_type": "email_open",
        },
        "rejections": {
            "rejection_id": "R1",
            "lead_id": "L1",
            "rejected_at": "2025-01-01",
            "stage_at_rejection": "sql",
            "reason_code": "budget",
        },
        "leads": {"lead_id": "L1", "created_at": "2025-01-01", "lead_source": "webinar"},
        "opportunities": {
            "opportunity_id": "O1",
            "lead_id": "L1",
            "created_at": "2025-01-01",
            "status": "lost",
        },
    }
    return rows[table]


def _parquet_text(values: pa.Array, column: str) -> str | None:
    """The first value of ``column`` as the loader reads it from a two-lead Parquet file."""
    leads = pa.table(
        {
            "lead_id": ["L1", "L2"],
            "created_at": ["2025-01-01", "2025-01-01"],
            "lead_source": ["webinar", "webinar"],
            column: values,
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(leads, sink)
    check = check_table(LEADS, arrow_to_pandas(pq.read_table(sink.getvalue())), "leads.parquet")
    if check.problems:
        return None
    value = check.clean_frame()[column].iloc[0]
    return None if pd.isna(value) else str(value)


def _assert_text_read_alike(value: Any, arrow_type: pa.DataType) -> None:
    """A number or boolean in a text column reads the same from JSON, Python and Parquet
    (a column with a gap, as CRM exports have), and as a CSV's text for integers."""
    lead = {"lead_id": "L1", "created_at": "2025-01-01", "lead_source": "webinar"}
    for column in ("industry", "account_id"):
        from_file = _parquet_text(pa.array([value, None], arrow_type), column)
        from_json, from_python = _read_by_json_and_python({**lead, column: value}, column)

        assert from_file is not None
        assert from_json == from_python == from_file, column
        if arrow_type == pa.int64():
            assert from_file == str(value)


TEXT_NUMBERS: list[tuple[Any, pa.DataType]] = [
    (7, pa.int64()),
    (7.0, pa.float64()),
    (-0.0, pa.float64()),
    (2.5, pa.float64()),
    (1e16, pa.float64()),
    (2**63 - 1, pa.int64()),
    (True, pa.bool_()),
    (False, pa.bool_()),
]


@pytest.mark.parametrize(("value", "arrow_type"), TEXT_NUMBERS)
def test_numbers_in_text_fields_read_alike_from_json_python_and_files(
    value: Any, arrow_type: pa.DataType
) -> None:
    _assert_text_read_alike(value, arrow_type)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.just(pa.int64())),
        st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.just(pa.float64())),
        st.tuples(st.integers(-(2**53), 2**53).map(float), st.just(pa.float64())),
        st.tuples(st.booleans(), st.just(pa.bool_())),
    )
)
def test_any_number_in_a_text_field_reads_alike_from_json_python_and_files(
    case: tuple[Any, pa.DataType],
) -> None:
    _assert_text_read_alike(*case)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_an_infinite_number_is_text_on_no_path(value: float) -> None:
    lead = {"lead_id": "L1", "created_at": "2025-01-01", "lead_source": "webinar"}

    with pytest.raises(ValidationError, match="industry"):
        LeadRecord.model_validate({**lead, "industry": value})
    with pytest.raises(ValidationError, match="industry"):
        LeadRecord.model_validate_json(orjson.dumps(lead)[:-1] + b', "industry": 1e999}')
    assert _parquet_text(pa.array([value, None]), "industry") is None


def test_a_json_number_is_the_same_id_as_its_text() -> None:
    body = body_with(("lead", "lead_id"), 123)
    body["rejection"]["lead_id"] = 123.0
    for row in (*body["activities"], *body["earlier_rejections"]):
        row["lead_id"] = "123"

    request = ScoreRequest.model_validate_json(orjson.dumps(body))

    assert request.lead.lead_id == request.rejection.lead_id == "123"
