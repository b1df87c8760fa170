"""Routing decisions of the default policy, and the policy file's validation."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from features.config import FeatureConfig
from features.dataset import ExampleSet
from features.history import DAY_US
from features.predictor import ReconversionModel
from features.profile_features import days_to_year_start
from serving.policy import (
    DEFAULT_POLICY,
    PolicyError,
    RoutingPolicy,
    check_policy_features,
    idle_rules,
    load_policy,
    read_policy,
    recent_activity_counts,
    since_rejection_count,
)
from serving.routing import (
    NO_DATE,
    SUPPRESSED_PROGRAM,
    Routes,
    RoutingInputs,
    route,
)
from srl.cli import app

AS_OF = 1_756_684_800_000_000  # 2025-09-01T00:00:00Z
POLICY = load_policy()


def _inputs(**columns: Any) -> RoutingInputs:
    values: dict[str, Any] = {
        "probability": [0.15],
        "reason_code": ["needs_nurturing"],
        "consent_status": ["subscribed"],
        "stage": ["sql"],
        "follow_up_days": [np.nan],
        "days_since_rejection": [10.0],
        "recent_intent": [0.0],
        "as_of": [AS_OF],
    }
    values.update(columns)
    return RoutingInputs(
        **{
            name: np.asarray(
                v,
                dtype=object
                if name in ("reason_code", "consent_status", "stage")
                else np.int64
                if name == "as_of"
                else bool
                if name == "beyond_trained_age"
                else np.float64,
            )
            for name, v in values.items()
        }
    )


def _one(routes: Routes) -> dict[str, Any]:
    row = routes.row(0)
    when = row["next_action_at"]
    row["days"] = None if when is None else (when - AS_OF) / DAY_US
    return row


@pytest.mark.parametrize("consent", ["unsubscribed", "do_not_contact"])
def test_consent_suppresses_even_a_hot_lead(consent: str) -> None:
    row = _one(
        route(_inputs(probability=[0.99], consent_status=[consent], recent_intent=[9]), POLICY)
    )

    assert row["suppressed"] is True
    assert row["program"] == SUPPRESSED_PROGRAM
    assert row["suppression_reason"] == f"consent:{consent}"
    assert (row["priority"], row["next_action_at"], row["re_entry_stage"]) == (0, None, None)


@pytest.mark.parametrize("reason", ["do_not_contact", "bad_data"])
def test_a_no_contact_reason_suppresses(reason: str) -> None:
    inputs = _inputs(probability=[0.9], reason_code=[reason], follow_up_days=[1.0])
    row = _one(route(inputs, POLICY))

    assert (row["program"], row["suppression_reason"]) == (SUPPRESSED_PROGRAM, f"reason:{reason}")


def test_high_odds_with_recent_intent_rebound_to_sales_today() -> None:
    row = _one(route(_inputs(probability=[0.45], recent_intent=[2]), POLICY))

    assert (row["program"], row["priority"], row["days"], row["tier"]) == (
        "rebound_to_sales",
        1,
        0.0,
        "hot",
    )


def test_a_due_follow_up_with_good_odds_rebounds() -> None:
    due = _one(route(_inputs(probability=[0.3], follow_up_days=[5.0]), POLICY))
    too_far = _one(route(_inputs(probability=[0.3], follow_up_days=[40.0]), POLICY))
    poor_odds = _one(route(_inputs(probability=[0.1], follow_up_days=[5.0]), POLICY))

    assert due["program"] == "rebound_to_sales"
    assert too_far["program"] == poor_odds["program"] == "education_track"


def test_a_stale_follow_up_no_longer_rebounds() -> None:
    overdue = _one(route(_inputs(probability=[0.3], follow_up_days=[-10.0]), POLICY))
    at_the_limit = _one(route(_inputs(probability=[0.3], follow_up_days=[-90.0]), POLICY))
    stale = _one(route(_inputs(probability=[0.3], follow_up_days=[-700.0]), POLICY))

    assert overdue["program"] == at_the_limit["program"] == "rebound_to_sales"
    assert (stale["program"], stale["days"]) == ("education_track", 21.0)


@pytest.mark.parametrize(
    ("days_since_rejection", "days"),
    [
        (10.0, 365.0 - 60 - 10),  # the first renewal ahead
        (305.0, 0.0),  # today is lead_days before the first renewal
        (320.0, 0.0),  # the first renewal 45 days ahead, within lead_days: now
        (365.0, 0.0),  # the renewal is today
        (400.0, 365.0 * 2 - 60 - 400),  # first renewal passed: the next one
        (1100.0, 365.0 * 4 - 60 - 1100),  # three renewals passed
    ],
)
def test_competitive_nurture_is_timed_to_the_next_renewal_still_ahead(
    days_since_rejection: float, days: float
) -> None:
    inputs = _inputs(reason_code=["competitor_won"], days_since_rejection=[days_since_rejection])

    assert _one(route(inputs, POLICY))["days"] == days


def test_the_lowest_scores_go_low_touch() -> None:
    row = _one(route(_inputs(probability=[0.01], reason_code=["budget"]), POLICY))

    assert (row["program"], row["days"], row["tier"], row["priority"]) == (
        "low_touch_nurture",
        90.0,
        "cold",
        4,
    )


@pytest.mark.parametrize(
    ("columns", "program"),
    [
        # a score the model cannot vouch for, with nothing else to speak for the lead
        ({"probability": [0.3]}, "low_touch_nurture"),
        ({"probability": [0.6]}, "low_touch_nurture"),  # past the rebound's cut-off too
        # recent intent is the lead's own signal: routed as any lead
        ({"probability": [0.3], "recent_intent": [1.0]}, "education_track"),
        ({"probability": [0.6], "recent_intent": [2.0]}, "rebound_to_sales"),
        # and so is the rep's follow-up date, once due, whatever the probability
        ({"probability": [0.3], "follow_up_days": [3.0]}, "rebound_to_sales"),
        ({"probability": [0.1], "follow_up_days": [3.0]}, "education_track"),
        ({"probability": [0.1], "follow_up_days": [-90.0]}, "education_track"),
        ({"probability": [0.3], "follow_up_days": [60.0]}, "low_touch_nurture"),
        ({"probability": [0.3], "follow_up_days": [-91.0]}, "low_touch_nurture"),  # stale
    ],
)
def test_a_rejection_older_than_the_model_knows_goes_low_touch_unless_the_lead_shows_up(
    columns: dict[str, Any], program: str
) -> None:
    # Given a lead whose rejection is older than any the model was trained on
    row = _one(route(_inputs(beyond_trained_age=[True], **columns), POLICY))

    # Then its probability alone never sends it to sales or a campaign, nor ranks it: in
    # low touch it takes the lowest tier and its priority
    assert row["program"] == program
    if program == "low_touch_nurture":
        lowest = POLICY.tiers[-1]
        assert (row["days"], row["tier"], row["priority"]) == (
            POLICY.low_touch.cadence_days,
            lowest.name,
            lowest.priority,
        )


@pytest.mark.parametrize(
    ("recent", "since_rejection", "program"),
    [
        (3.0, 0.0, "education_track"),  # scored at its rejection: the visits came before it
        (3.0, 1.0, "rebound_to_sales"),  # one of them after the rejection
        (1.0, 5.0, "rebound_to_sales"),  # rejected long ago: the last 30 days all count
        (0.0, 5.0, "education_track"),  # came back, but not lately
    ],
)
def test_only_intent_after_the_rejection_sends_a_lead_back_to_sales(
    recent: float, since_rejection: float, program: str
) -> None:
    inputs = _inputs(
        probability=[0.6], recent_intent=[recent], intent_since_rejection=[since_rejection]
    )

    assert _one(route(inputs, POLICY))["program"] == program


@pytest.mark.parametrize(
    ("reason", "follow_up", "program", "days"),
    [
        ("competitor_won", np.nan, "competitive_nurture", 365.0 * 2 - 60 - 400),
        ("budget", np.nan, "budget_nurture", 122.0 - 45),
        ("timing", 60.0, "timing_nurture", 60.0),
        ("timing", -120.0, "low_touch_nurture", 90.0),  # its date is stale: nothing dated left
        ("no_need", np.nan, "low_touch_nurture", 90.0),  # a cadence is no date
    ],
)
def test_a_lead_the_model_cannot_vouch_for_keeps_the_dated_contact_of_its_reason(
    reason: str, follow_up: float, program: str, days: float
) -> None:
    # Given a rejection 400 days old, older than any the model was trained on, no intent
    inputs = _inputs(
        probability=[0.6],
        reason_code=[reason],
        follow_up_days=[follow_up],
        days_since_rejection=[400.0],
        beyond_trained_age=[True],
    )

    row = _one(route(inputs, POLICY))

    # Then a rival's renewal, a fiscal year or the rep's date still times its contact, in
    # its reason's program; only its rank comes down
    assert (row["program"], row["days"]) == (program, days)
    assert (row["tier"], row["priority"]) == (POLICY.tiers[-1].name, POLICY.tiers[-1].priority)


@pytest.mark.parametrize(("follow_up", "days"), [(100.0, 100.0), (400.0, 365.0 - 60 - 10)])
def test_the_reps_follow_up_times_competitive_nurture_when_it_comes_first(
    follow_up: float, days: float
) -> None:
    inputs = _inputs(reason_code=["competitor_won"], follow_up_days=[follow_up])

    assert _one(route(inputs, POLICY))["days"] == days


def test_a_lead_sent_back_for_its_follow_up_is_due_on_that_date_and_one_that_came_back_now() -> (
    None
):
    ahead = _one(route(_inputs(probability=[0.3], follow_up_days=[9.0]), POLICY))
    passed = _one(route(_inputs(probability=[0.3], follow_up_days=[-9.0]), POLICY))
    came_back = _one(
        route(_inputs(probability=[0.6], follow_up_days=[9.0], recent_intent=[2.0]), POLICY)
    )

    assert (ahead["program"], ahead["days"]) == ("rebound_to_sales", 9.0)
    assert (passed["program"], passed["days"]) == ("rebound_to_sales", 0.0)
    assert (came_back["program"], came_back["days"]) == ("rebound_to_sales", 0.0)


def test_the_trained_age_rule_is_the_policys_and_never_lifts_suppression() -> None:
    beyond = {"probability": [0.3], "beyond_trained_age": [True]}
    without_rule = POLICY.model_copy(
        update={"low_touch": POLICY.low_touch.model_copy(update={"beyond_trained_age": False})}
    )

    assert _one(route(_inputs(**beyond), without_rule))["program"] == "education_track"
    assert _one(route(_inputs(probability=[0.3]), POLICY))["program"] == "education_track"
    refused = _one(route(_inputs(**beyond, consent_status=["unsubscribed"]), POLICY))
    assert (refused["program"], refused["suppressed"]) == (SUPPRESSED_PROGRAM, True)


@pytest.mark.parametrize(
    ("reason", "follow_up", "program", "days"),
    [
        ("budget", np.nan, "budget_nurture", 122.0 - 45),  # 45 days before the new fiscal year
        ("budget", 20.0, "budget_nurture", 20.0),  # the rep's follow-up comes first
        ("timing", 60.0, "timing_nurture", 60.0),  # re-entry at the follow-up date
        ("timing", -3.0, "timing_nurture", 30.0),  # passed follow-up: the cadence
        ("competitor_won", np.nan, "competitive_nurture", 365.0 - 60 - 10),  # before renewal
        ("not_decision_maker", np.nan, "find_decision_maker", 14.0),
        ("wrong_solution", np.nan, "solution_nurture", 45.0),
        ("no_need", np.nan, "solution_nurture", 60.0),
        ("needs_nurturing", np.nan, "education_track", 21.0),
        ("unresponsive", np.nan, "education_track", 30.0),
        ("other", np.nan, "general_nurture", 30.0),
    ],
)
def test_each_reason_has_its_program_and_timing(
    reason: str, follow_up: float, program: str, days: float
) -> None:
    row = _one(route(_inputs(reason_code=[reason], follow_up_days=[follow_up]), POLICY))

    assert (row["program"], row["days"]) == (program, days)


@pytest.mark.parametrize(
    ("start", "days"),
    [
        ("01-01", 122.0 - 45),  # 2026-01-01, the default: the calendar year
        ("04-01", 212.0 - 45),  # 2026-04-01
        ("10-01", 30.0),  # 2025-10-01 is 30 days off, within lead_days: the cadence
        ("09-01", 365.0 - 45),  # as_of is the very start of a fiscal year: the next one
    ],
)
def test_the_budget_nurture_is_timed_to_the_policys_fiscal_year(start: str, days: float) -> None:
    policy = POLICY.model_copy(update={"fiscal_year_start": start})

    row = _one(route(_inputs(reason_code=["budget"]), policy))

    assert (row["program"], row["days"]) == ("budget_nurture", days)


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(datetime(1980, 1, 1), datetime(2100, 1, 1)),
    month_day=st.dates(date(2001, 1, 1), date(2001, 12, 31)),
)
def test_days_to_the_fiscal_year_count_to_its_next_start(moment: datetime, month_day: date) -> None:
    as_of = np.array([int(moment.replace(tzinfo=UTC).timestamp()) * 1_000_000], dtype=np.int64)
    as_of += moment.microsecond

    days = days_to_year_start(as_of, month_day.month, month_day.day)[0]

    start = datetime(moment.year, month_day.month, month_day.day)
    if start <= moment:
        start = datetime(moment.year + 1, month_day.month, month_day.day)
    assert days == (start - moment) / timedelta(days=1)
    if (month_day.month, month_day.day) == (1, 1):  # whole years in datetime64
        features = np.array([moment], dtype="datetime64[us]")
        next_year = (features.astype("datetime64[Y]") + 1).astype("datetime64[us]")
        assert days == ((next_year.astype(np.int64) - as_of) / DAY_US)[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4-1", "MM-DD"),
        ("13-01", "not a day of every year"),
        ("02-29", "02-29 comes once in four years"),
        ("04-31", "not a day of every year"),
        (date(2025, 4, 1), "MM-DD"),  # unquoted in YAML: a date, with its year
    ],
)
def test_a_fiscal_year_start_that_is_not_a_day_of_every_year_is_refused(
    value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RoutingPolicy.model_validate({**_policy_document(), "fiscal_year_start": value})


def test_next_action_dates_fall_on_a_day_start() -> None:
    late_in_day = AS_OF + 15 * 3600 * 1_000_000
    row = route(
        _inputs(reason_code=["timing"], follow_up_days=[2.3], as_of=[late_in_day]), POLICY
    ).row(0)

    assert row["next_action_at"] % DAY_US == 0


@pytest.mark.parametrize("hours", [0, 15])
@pytest.mark.parametrize("reason", ["timing", "budget"])
def test_a_follow_up_date_that_is_today_has_not_passed(hours: int, reason: str) -> None:
    # Given a follow-up date of as_of's own day, at midnight or later in that day
    as_of = AS_OF + hours * 3600 * 1_000_000
    today = (AS_OF - as_of) / DAY_US  # the date's midnight, in days from as_of

    row = route(_inputs(reason_code=[reason], follow_up_days=[today], as_of=[as_of]), POLICY).row(0)

    # Then the next touch is that day, not the cadence's 30 days later
    assert row["next_action_at"] == AS_OF


@pytest.mark.parametrize("stage", ["mql", "sal", "sql", "opportunity"])
def test_leads_resume_at_the_stage_they_reached(stage: str) -> None:
    assert route(_inputs(stage=[stage]), POLICY).row(0)["re_entry_stage"] == stage


@pytest.mark.parametrize(
    ("probability", "tier"),
    [(0.0, "cold"), (0.0799, "cold"), (0.08, "cool"), (0.2, "warm"), (0.4, "hot"), (1.0, "hot")],
)
def test_tiers_follow_the_cut_offs(probability: float, tier: str) -> None:
    assert route(_inputs(probability=[probability]), POLICY).row(0)["tier"] == tier


def test_routing_is_vectorised_and_keeps_row_order() -> None:
    n = 5
    inputs = _inputs(
        probability=[0.01, 0.5, 0.2, 0.9, 0.3],
        reason_code=["budget", "timing", "bad_data", "other", "no_need"],
        consent_status=["subscribed"] * 3 + ["unsubscribed", "subscribed"],
        stage=["mql"] * n,
        follow_up_days=[np.nan] * n,
        days_since_rejection=[1.0] * n,
        recent_intent=[0.0, 3.0, 0.0, 5.0, 0.0],
        as_of=[AS_OF] * n,
    )

    routes = route(inputs, POLICY)

    assert list(routes.program) == [
        "low_touch_nurture",
        "rebound_to_sales",
        SUPPRESSED_PROGRAM,
        SUPPRESSED_PROGRAM,
        "solution_nurture",
    ]
    assert (routes.next_action_at[[2, 3]] == NO_DATE).all()


def _policy_document() -> dict[str, Any]:
    return POLICY.model_dump(mode="json")


def test_the_default_policy_is_versioned() -> None:
    assert POLICY.label == "default@v5"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "suppression": {
                    "consent": ["unsubscribed"],
                    "reasons": ["do_not_contact", "bad_data"],
                }
            },
            "suppression must always include",
        ),
        (
            {
                "tiers": [
                    {"name": "a", "min_probability": 0.1, "priority": 1},
                    {"name": "b", "min_probability": 0.5, "priority": 2},
                ]
            },
            r"highest to lowest distinct min_probability: \['a 0.1', 'b 0.5'\]",
        ),
        (
            {
                "suppression": {
                    "consent": ["unsubscribed", "do_not_contact", "subscribed"],
                    "reasons": ["do_not_contact", "bad_data"],
                }
            },
            "consent 'subscribed' cannot be suppressed",
        ),
        (
            {"rebound": {**POLICY.rebound.model_dump(), "min_recent_intent": 0}},
            "min_recent_intent",
        ),
        (
            {
                "reasons": {
                    **POLICY.model_dump(mode="json")["reasons"],
                    "no_need": {"program": "solution_nurture", "lead_days": 10},
                }
            },
            r"next_action 'cadence' does not use \['lead_days'\]",
        ),
        (
            {
                "reasons": {
                    **POLICY.model_dump(mode="json")["reasons"],
                    "timing": {"program": "t", "next_action": "follow_up", "renewal_days": 200},
                }
            },
            r"next_action 'follow_up' does not use \['renewal_days'\]",
        ),
        ({"tiers": [{"name": "a", "min_probability": 0.1, "priority": 1}]}, "must start at"),
        ({"version": 0}, "version"),
        (
            {"low_touch": {"program": "suppressed", "max_probability": 0.05, "cadence_days": 90}},
            "reserved for suppressed leads",
        ),
    ],
)
def test_an_invalid_policy_is_refused(change: dict[str, Any], message: str) -> None:
    document = {**_policy_document(), **change}

    with pytest.raises(ValidationError, match=message):
        RoutingPolicy.model_validate(document)


def test_every_reason_must_be_routed_or_suppressed() -> None:
    document = _policy_document()
    del document["reasons"]["timing"]

    with pytest.raises(ValidationError, match="timing"):
        RoutingPolicy.model_validate(document)


def test_a_policy_file_round_trips(tmp_path: Any) -> None:
    document = {**_policy_document(), "version": 7, "name": "spring"}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")

    assert load_policy(path).label == "spring@v7"


DEFAULT_TEXT = resources.files("serving.policies").joinpath(DEFAULT_POLICY).read_text("utf-8")
HOT_TIER = "{name: hot, min_probability: 0.40, priority: 1}"
COMPETITOR = "renewal_days: 365, lead_days: 60"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # values YAML itself cannot build
        ("name: default", "name: 2024-02-30", "could not be read: a value YAML cannot read"),
        ("version: 5", "version: !!timestamp x", "could not be read: a value YAML cannot read"),
        ("version: 5", "version: " + "9" * 5000, "could not be read: a value YAML cannot read"),
        ("name: default", "name: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        # a key given twice, the second silently winning before
        ("version: 5\n", "version: 5\nversion: 1\n", "key 'version' appears twice"),
        (
            "  timing: {",
            "  budget: {program: other_nurture}\n  timing: {",
            "key 'budget' appears twice",
        ),
        # waits that would carry a next-action date out of the calendar
        ("cadence_days: 90", "cadence_days: 9999999", "low_touch.cadence_days: Input should"),
        (
            "other: {program: general_nurture, next_action: cadence, cadence_days: 30}",
            "other: {program: general_nurture, next_action: cadence, cadence_days: 9999999}",
            "reasons.other.cadence_days: Input should",
        ),
        (COMPETITOR, "renewal_days: 10000000000, lead_days: 60", "renewal_days: Input should"),
        (COMPETITOR, "renewal_days: 365, lead_days: 400", "more than lead_days (400)"),
        ("follow_up_due_within_days: 14", "follow_up_due_within_days: .inf", "within_days"),
        # YAML's yes/no/on/off where a number is expected
        (HOT_TIER, HOT_TIER.replace("0.40", "on"), "tiers.0.min_probability: Value error"),
        ("cadence_days: 90", "cadence_days: yes", "low_touch.cadence_days: Value error"),
        ("version: 5", "version: yes", "version: Value error, should be a number"),
        # program names a CRM would not tell from another, or from the suppressed one
        ("program: rebound_to_sales", "program: ''", "rebound.program: String should"),
        ("program: timing_nurture", "program: '   '", "reasons.timing.program: String should"),
        ("program: low_touch_nurture", "program: 'suppressed '", "low_touch.program: String"),
        ("program: rebound_to_sales", "program: Suppressed", "rebound.program: Value error"),
        ("  timing: {", "  gone_fishing: {program: x}\n  timing: {", "reasons: Value error"),
        ("{name: warm,", "{name: Hot,", "tiers: Value error, tier names must differ"),
        # rules that contradict each other: accepted and silently overruled before
        (
            "  timing: {",
            "  do_not_contact: {program: rebound_to_sales}\n  timing: {",
            "reasons ['do_not_contact'] are suppressed (suppression.reasons), so no program",
        ),
        (
            "reasons: [do_not_contact, bad_data]",
            "reasons: [do_not_contact, bad_data, timing]",
            "reasons ['timing'] are suppressed",
        ),
        ("max_probability: 0.05", "max_probability: 0.9", "above rebound.min_probability (0.4)"),
        ("program: low_touch_nurture", "program: rebound_to_sales", "must differ"),
        (
            "program: budget_nurture",
            "program: Rebound_To_Sales",
            "rebound.program 'rebound_to_sales' is also a reason's program",
        ),
        (
            "program: timing_nurture",
            "program: low_touch_nurture",
            "low_touch.program 'low_touch_nurture' is also a reason's program",
        ),
        (HOT_TIER, HOT_TIER.replace("priority: 1", "priority: 4"), "must not decrease"),
        # YAML faults point into the file, not into "<unicode string>"
        ("name: default", "name: [default", "could not be read: expected ',' or ']'"),
    ],
)
def test_a_bad_policy_file_is_refused_naming_the_file_and_the_place(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    assert old in DEFAULT_TEXT
    path.write_text(DEFAULT_TEXT.replace(old, new, 1), encoding="utf-8")

    with pytest.raises(PolicyError) as refused:
        read_policy(path)

    assert str(refused.value).startswith(f"routing policy {path} ")
    assert expected in str(refused.value)
    assert "<unicode string>" not in str(refused.value)


def test_a_policy_that_is_not_utf8_is_refused_with_the_line_of_the_first_bad_byte(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(DEFAULT_TEXT.replace("name: default", "name: d\xe9faut").encode("latin-1"))
    line = DEFAULT_TEXT.split("name: default")[0].count("\n") + 1

    with pytest.raises(PolicyError) as refused:
        read_policy(path)

    assert str(refused.value) == (
        f"routing policy {path} is not UTF-8 text (byte 0xe9 on line {line})"
    )


def test_a_policy_error_stays_one_readable_line_however_large_the_file(tmp_path: Path) -> None:
    # Given 4,000 tiers sharing one long name, and 4,000 tiers each with a bad priority
    document = load_policy().model_dump(mode="json")
    tiers = [
        {"name": "N" * 100, "min_probability": round(1 - i / 4000, 6), "priority": 1}
        for i in range(1, 4001)
    ]
    same_name = tmp_path / "same_name.yaml"
    same_name.write_text(yaml.safe_dump({**document, "tiers": tiers}), "utf-8")
    bad_priorities = tmp_path / "bad_priorities.yaml"
    zero = [{**tier, "priority": 0} for tier in tiers]
    bad_priorities.write_text(yaml.safe_dump({**document, "tiers": zero}), "utf-8")

    for path, more in ((same_name, "and 3990 more"), (bad_priorities, "and 3990 more")):
        with pytest.raises(PolicyError) as refused:
            read_policy(path)

        # Then the message names the first ten and counts the rest
        assert len(str(refused.value)) < 2_000, path
        assert more in str(refused.value), path


def test_a_repeated_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_TEXT.replace("version: 5\n", "version: 5\nversion: 1\n"), "utf-8")
    line = DEFAULT_TEXT.split("version: 5\n")[0].count("\n") + 2

    with pytest.raises(PolicyError, match=f"line {line}, column 1"):
        read_policy(path)


def test_a_file_too_large_for_a_policy_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    # Given a 2 MiB file at the policy's path: a wrong path, or a data file
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_TEXT + "#" * (2 << 20), encoding="utf-8")

    with pytest.raises(PolicyError) as refused:
        read_policy(path)

    assert str(refused.value) == (
        f"routing policy {path} could not be read: larger than 1 MiB, too large for a settings file"
    )


def test_srl_check_policy_prints_the_label_or_the_problem(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(DEFAULT_TEXT, encoding="utf-8")
    bad.write_text(DEFAULT_TEXT.replace("version: 5\n", "version: 5\nversion: 6\n"), "utf-8")

    passed = CliRunner().invoke(app, ["check-policy", str(good)])
    refused = CliRunner().invoke(app, ["check-policy", str(bad)])

    assert (passed.exit_code, passed.stdout.strip()) == (0, "default@v5")
    assert refused.exit_code == 1
    assert f"error: routing policy {bad} could not be read" in refused.stderr
    assert "key 'version' appears twice" in refused.stderr
    assert "Traceback" not in refused.output


def test_srl_check_policy_refuses_an_intent_feature_no_model_computes(
    tmp_path: Path, model_dir: Path
) -> None:
    # Given a policy whose rebound reads a feature the service would refuse at start
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_TEXT.replace("intent_30d", "intent_3Od"), encoding="utf-8")

    # When it is checked against the default feature settings, and against a model
    by_default = CliRunner().invoke(app, ["check-policy", str(path)])
    by_model = CliRunner().invoke(app, ["check-policy", str(path), "--model", str(model_dir)])
    good = tmp_path / "good.yaml"
    good.write_text(DEFAULT_TEXT, encoding="utf-8")
    fine = CliRunner().invoke(app, ["check-policy", str(good), "--model", str(model_dir)])

    # Then both refuse it, naming the file, the setting and what it was checked against
    for result, against in (
        (by_default, "the default feature settings"),
        (by_model, str(model_dir)),
    ):
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(
            f"error: routing policy {path} (default@v5): rebound.recent_intent_feature "
            f"'intent_3Od' is not a count of activities over a window ending at as_of of {against}"
        )
    assert (fine.exit_code, fine.stdout.strip()) == (0, "default@v5")
    assert fine.stderr == ""


def test_a_model_that_records_no_trained_ages_leaves_the_age_rule_idle_and_says_so(
    tmp_path: Path, model: ReconversionModel, training_examples: ExampleSet
) -> None:
    # Given a model trained before it recorded the ages of the rejections it learnt from
    older = copy.copy(model)
    older.metadata = {k: v for k, v in model.metadata.items() if k != "rejection_age_days"}
    folder = older.save(tmp_path / "older")
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_TEXT, encoding="utf-8")

    # When the default policy is checked against it
    result = CliRunner().invoke(app, ["check-policy", str(policy), "--model", str(folder)])

    # Then the policy is usable but its age rule can route nothing, which is said; with
    # ages, or without the rule, nothing is
    assert (result.exit_code, result.stdout.strip()) == (0, "default@v5")
    assert result.stderr.startswith(
        "warning: default@v5: low_touch.beyond_trained_age routes nothing with this model"
    )
    without_rule = POLICY.model_copy(
        update={"low_touch": POLICY.low_touch.model_copy(update={"beyond_trained_age": False})}
    )
    assert idle_rules(POLICY, model.trained_age_days) == []
    assert idle_rules(without_rule, None) == []
    # and the older model marks no score, where the one that records its ages marks some
    assert not older.beyond_trained_age(training_examples.features).any()
    assert model.beyond_trained_age(training_examples.features).any()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # every lead whose follow-up is due goes back to sales, whatever its score
        ("follow_up_due_min_probability: 0.25", "follow_up_due_min_probability: 0.0"),
        # the low-touch track right up to the rebound cut-off
        ("max_probability: 0.05", "max_probability: 0.40"),
    ],
)
def test_policies_that_decide_in_order_are_not_taken_for_contradictions(
    tmp_path: Path, old: str, new: str
) -> None:
    path = tmp_path / "policy.yaml"
    assert old in DEFAULT_TEXT
    path.write_text(DEFAULT_TEXT.replace(old, new, 1), encoding="utf-8")

    assert read_policy(path).label == "default@v5"


@pytest.mark.parametrize(
    ("feature", "accepted"),
    [
        ("intent_7d", True),
        ("demo_request_90d", True),
        ("intent_total", True),
        ("intent_since_rejection", True),
        ("intent_trend", False),  # two windows compared: no count to bound
        ("days_since_demo_request", False),
        ("intent_pre_rejection_30d", False),  # ends at the rejection, not at as_of
        ("employee_count", False),
    ],
)
def test_recent_intent_is_read_from_a_count_of_activities_up_to_as_of(
    feature: str, accepted: bool
) -> None:
    document = _policy_document()
    document["rebound"]["recent_intent_feature"] = feature
    policy = RoutingPolicy.model_validate(document)

    if accepted:
        check_policy_features(policy, FeatureConfig(), None)
    else:
        with pytest.raises(PolicyError, match="is not a count of activities"):
            check_policy_features(policy, FeatureConfig(), None)


@pytest.mark.parametrize(
    ("feature", "since"),
    [
        ("intent_30d", "intent_since_rejection"),
        ("marketing_30d", "marketing_since_rejection"),
        ("demo_request_90d", "demo_request_since_rejection"),
        ("intent_total", "intent_since_rejection"),
        ("intent_since_rejection", "intent_since_rejection"),
    ],
)
def test_recent_intent_is_bounded_by_the_same_activities_since_the_rejection(
    feature: str, since: str
) -> None:
    # A demo request before the rejection and a pricing-page visit after it are not one
    # demo request after it: each count is bounded by its own activities' count
    assert since_rejection_count(feature) == since
    counts = recent_activity_counts(FeatureConfig())
    assert {feature, since} <= counts
