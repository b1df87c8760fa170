"""Plain-words phrases for feature values, written for a marketer rather than a data scientist.

Every feature of the engine gets a phrase built from its name, kind, window and vocabulary
(``features.engine.FeatureSpec``): ``pricing_page_visit_30d = 3`` reads "3 pricing-page
visits in the 30 days before scoring", ``reason_code = budget`` reads "rejected for
budget", ``follow_up_days = 12`` reads "follow-up date is in 12 days". A feature the
phrasebook does not know (a customer's own column) falls back to its name and value.

A free-text feature (``industry``, ``country``, ``recommended_program``, a custom
categorical column) shows only categories the model learned in training, seen at least
``min_category_count`` times: any other text, which may be personal ("call Jane on +1 555
0100"), reads as the model sees it, ``<other>``, and is never echoed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from features.contract import ACTIVITY_TYPES, REASON_CODES
from features.encoding import CategoryVocabulary
from features.engine import ACTIVITY_GROUPS, FeatureSpec

Phrase = Callable[[Any], str]
"""Turns a feature's display value (a number, a label or None when missing) into words."""

MAX_SHOWN_TEXT = 60

#: The value shown for free text outside the model's vocabulary (new, or too rare in
#: training): the model reads it as missing, and the caller's text is never shown.
OTHER_VALUE = "<other>"
#: How such a value reads after the feature's name.
OTHER_WORDS = "other (a value the model has not learned)"

#: Singular and plural nouns of each activity type and activity group.
ACTIVITY_NOUNS: dict[str, tuple[str, str]] = {
    "email_open": ("email open", "email opens"),
    "email_click": ("email click", "email clicks"),
    "web_visit": ("website visit", "website visits"),
    "pricing_page_visit": ("pricing-page visit", "pricing-page visits"),
    "content_download": ("content download", "content downloads"),
    "webinar_registered": ("webinar registration", "webinar registrations"),
    "webinar_attended": ("webinar attended", "webinars attended"),
    "event_attended": ("event attended", "events attended"),
    "form_submit": ("form submission", "form submissions"),
    "demo_request": ("demo request", "demo requests"),
    "chat_conversation": ("chat conversation", "chat conversations"),
    "sales_call": ("sales call", "sales calls"),
    "sales_email_reply": ("reply to a sales email", "replies to sales emails"),
    "meeting_decision_maker": (
        "meeting with the decision maker",
        "meetings with the decision maker",
    ),
    "meeting_recommender": ("meeting with a recommender", "meetings with a recommender"),
    "meeting_influencer": ("meeting with an influencer", "meetings with an influencer"),
    "online_demo": ("online demo", "online demos"),
    "onsite_demo": ("on-site demo", "on-site demos"),
    "spec_provided": ("specification provided", "specifications provided"),
    "funding_confirmed": ("funding confirmation", "funding confirmations"),
    "budget_approved": ("budget approval", "budget approvals"),
    "references_requested": ("reference request", "reference requests"),
    "references_contacted": ("reference contacted", "references contacted"),
    "other": ("other activity", "other activities"),
    "marketing": ("marketing touch", "marketing touches"),
    "sales": ("sales touch", "sales touches"),
    "intent": ("buying signal", "buying signals"),
}

#: How each rejection reason reads after "rejected ..." (and "previous rejection ...").
REASON_WORDS: dict[str, str] = {
    "budget": "for budget",
    "timing": "for timing",
    "competitor_won": "because a competitor won",
    "not_decision_maker": "as not the decision maker",
    "no_need": "for no need",
    "wrong_solution": "as the wrong solution",
    "needs_nurturing": "as needing more nurturing",
    "unresponsive": "as unresponsive",
    "do_not_contact": "with a do-not-contact request",
    "bad_data": "for bad data",
    "other": "for another reason",
}

CATEGORY_LABELS: dict[str, str] = {
    "lead_source": "lead source",
    "product_fit": "product fit",
    "job_level": "job level",
    "stage_at_rejection": "stage at rejection",
    "barrier_side": "barrier side",
    "rep_potential": "rep's view of potential",
    "consent_status": "consent",
    "industry": "industry",
    "country": "country",
    "recommended_program": "program the rep picked",
}

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_ACTIVITY = "|".join(sorted((*ACTIVITY_TYPES, *ACTIVITY_GROUPS), key=len, reverse=True))
_REASON = "|".join(sorted(REASON_CODES, key=len, reverse=True))
_COUNTED = rf"({_ACTIVITY})_(\d+d|since_rejection|total|pre_rejection_\d+d)"


#: From this size on a number is shown in scientific notation (``1.8e+308``): its digits
#: would mean nothing to a reader, and valid input reaches a float's limit.
SCIENTIFIC_FROM = 1e15


def _number(value: float) -> str:
    if abs(value) >= SCIENTIFIC_FROM:
        return f"{value:.1e}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def count(value: float | None, nouns: tuple[str, str]) -> str:
    """``"no demo requests"``, ``"1 demo request"``, ``"3 demo requests"``."""
    if value is None or value == 0:
        return f"no {nouns[1]}"
    return f"{_number(value)} {nouns[0] if value == 1 else nouns[1]}"


def days(value: float) -> str:
    """A whole number of days: ``"1 day"``, ``"12 days"``."""
    whole = round(abs(value))
    return f"{whole:,} day" if whole == 1 else f"{whole:,} days"


def money(value: float) -> str:
    """US dollars, rounded for reading: ``"$950"``, ``"$48,000"``, ``"$12.5M"``, ``"$3.2B"``."""
    sign, size = ("-" if value < 0 else ""), abs(value)
    if size >= SCIENTIFIC_FROM:
        return f"{sign}${size:.1e}"
    if size >= 1_000_000_000:
        return f"{sign}${size / 1_000_000_000:,.1f}B"
    if size >= 1_000_000:
        return f"{sign}${size / 1_000_000:,.1f}M"
    return f"{sign}${size:,.0f}"


def label(value: str) -> str:
    """A vocabulary code as words (``"paid_search"`` -> ``"paid search"``)."""
    shown = str(value).replace("_", " ")
    if len(shown) > MAX_SHOWN_TEXT:
        return shown[: MAX_SHOWN_TEXT - 1] + "…"
    return {"c level": "C-level", "mql": "MQL", "sal": "SAL", "sql": "SQL", "vp": "VP"}.get(
        shown, shown
    )


def _window_words(spec: FeatureSpec) -> str:
    return spec.window.replace("as_of", "scoring")


def _activity_count(spec: FeatureSpec, nouns: tuple[str, str]) -> Phrase:
    window = _window_words(spec)
    if window == "since the rejection":
        return lambda v: f"{count(v, nouns)} since the rejection"
    if window.startswith("all history"):
        return lambda v: f"{count(v, nouns)} over the lead's history"
    return lambda v: f"{count(v, nouns)} in the {window}"


def _days_since_activity(nouns: tuple[str, str]) -> Phrase:
    return lambda v: f"no {nouns[0]} on record" if v is None else f"last {nouns[0]} {_ago(v)}"


def _ago(value: float) -> str:
    # Days since a moment, from the scoring moment: under one day is not "today", as a
    # moment late the day before may be.
    return "within the last day" if value < 1 else f"{days(value)} ago"


def _trend(nouns: tuple[str, str]) -> Phrase:
    def phrase(value: Any) -> str:
        if value is None or abs(value) < 1e-9:
            return f"{nouns[1]} steady over the last 30 days"
        direction = "rising" if value > 0 else "falling"
        return f"{nouns[1]} {direction} over the last 30 days"

    return phrase


def _follow_up(value: Any) -> str:
    if value is None:
        return "no follow-up date set"
    # ``value`` runs from the scoring moment to the date's midnight (UTC), so the days
    # between the scoring day and the date, as routing counts them, are its ceiling: a
    # date on the scoring day is today until the day ends (``serving.routing``).
    calendar_days = math.ceil(value - 1e-9)
    if calendar_days == 0:
        return "follow-up date is today"
    if calendar_days > 0:
        return f"follow-up date is in {days(calendar_days)}"
    return f"follow-up date passed {days(calendar_days)} ago"


def _flag(yes: str, no: str, missing: str | None = None) -> Phrase:
    def phrase(value: Any) -> str:
        if value is None:
            return missing or no
        return yes if value >= 0.5 else no

    return phrase


def _numeric(template: str, missing: str, shown: Callable[[float], str] = _number) -> Phrase:
    return lambda v: missing if v is None else template.format(shown(v))


def _points(template: str, none: str) -> Phrase:
    """``template`` holds ``{}`` for the number and ``{points}`` for "point" or "points"."""
    return lambda v: (
        none if not v else template.format(_number(v), points="point" if v == 1 else "points")
    )


def _times(value: Any, template: str, none: str) -> str:
    if value is None or value == 0:
        return none
    return template.format(_number(value), "time" if value == 1 else "times")


NAMED_PHRASES: dict[str, Phrase] = {
    "follow_up_days": _follow_up,
    "follow_up_overdue": _flag(
        "follow-up date has come", "follow-up date not reached yet", "no follow-up date set"
    ),
    "days_since_rejection": lambda v: f"rejected {_ago(v or 0)}",
    "lead_age_days": lambda v: f"lead created {_ago(v or 0)}",
    "as_of_month": lambda v: (
        "scored in an unknown month" if v is None else f"scored in {MONTHS[int(v) - 1]}"
    ),
    "days_to_next_year": _numeric(
        "{} to the next calendar year", "next calendar year unknown", days
    ),
    "earlier_rejections": lambda v: _times(
        v, "rejected {} {} before", "first rejection of the lead"
    ),
    "days_since_previous_rejection": _numeric(
        "previous rejection {} before this one", "no previous rejection", days
    ),
    "lead_score_at_rejection": _numeric("marketing score {} at rejection", "no marketing score"),
    "employee_count": lambda v: (
        "employee count not recorded" if v is None else count(v, ("employee", "employees"))
    ),
    "annual_revenue": _numeric("annual revenue {}", "annual revenue not recorded", money),
    "job_level_from_title": _flag(
        "job level inferred from the job title", "job level given in the CRM"
    ),
    "opportunities_before": lambda v: count(v, ("earlier opportunity", "earlier opportunities")),
    "opportunities_open": lambda v: count(v, ("open opportunity", "open opportunities")),
    "opportunities_won": lambda v: count(v, ("opportunity won", "opportunities won")),
    "opportunities_lost": lambda v: count(v, ("opportunity lost", "opportunities lost")),
    "amount_won": lambda v: "nothing won before" if not v else f"{money(v)} won before",
    "amount_lost": lambda v: "nothing lost before" if not v else f"{money(v)} lost before",
    "days_since_last_opportunity": _numeric(
        "last opportunity opened {} ago", "no opportunity on record", days
    ),
    "days_since_last_close": _numeric(
        "last opportunity closed {} ago", "no closed opportunity on record", days
    ),
    "days_since_last_activity": lambda v: (
        "no activity on record" if v is None else f"last activity {_ago(v)}"
    ),
    "consent_opt_outs": lambda v: _times(v, "opted out {} {}", "never opted out"),
    "target_vertical": _flag("in a target vertical", "not in a target vertical"),
    "vertical_expertise": _flag(
        "target vertical with domain expertise", "no domain expertise in its vertical"
    ),
    "fit_points": _points(
        "{} fit {points} in the classic score", "no fit points in the classic score"
    ),
    "behaviour_points": _points(
        "{} behaviour {points} in the classic score", "no behaviour points in the classic score"
    ),
    "points_score": _points("classic points score of {}", "classic points score of 0"),
    "points_qualified": _flag(
        "passes the classic qualification rule", "fails the classic qualification rule"
    ),
}


def _reason_phrase(prefix: str, missing: str) -> Phrase:
    return lambda v: missing if v is None else f"{prefix} {REASON_WORDS.get(v, label(v))}"


def _category(spec: FeatureSpec) -> Phrase:
    if spec.name == "reason_code":
        return _reason_phrase("rejected", "rejection reason not recorded")
    if spec.name == "previous_reason_code":
        return _reason_phrase("previous rejection", "no previous rejection")
    if spec.name == "rep_potential":
        return _rep_potential
    name = CATEGORY_LABELS.get(spec.name, label(spec.name))
    if spec.name == "country":
        return lambda v: f"{name} not recorded" if v is None else f"{name}: {label(v).upper()}"
    return lambda v: f"{name} not recorded" if v is None else f"{name}: {label(v)}"


def _rep_potential(value: Any) -> str:
    if value is None:
        return "rep gave no view of potential"
    if value == "none":  # a rating of its own, which "rated potential none" read as missing
        return "rep sees no future potential"
    return f"rep rated future potential {label(value)}"


def _pattern(spec: FeatureSpec) -> Phrase | None:
    if match := re.fullmatch(_COUNTED, spec.name):
        return _activity_count(spec, ACTIVITY_NOUNS[match.group(1)])
    if match := re.fullmatch(rf"days_since_({_ACTIVITY})", spec.name):
        return _days_since_activity(ACTIVITY_NOUNS[match.group(1)])
    if match := re.fullmatch(rf"({_ACTIVITY})_trend", spec.name):
        return _trend(ACTIVITY_NOUNS[match.group(1)])
    if match := re.fullmatch(rf"earlier_rejections_({_REASON})", spec.name):
        reason = REASON_WORDS[match.group(1)]
        nouns = (f"earlier rejection {reason}", f"earlier rejections {reason}")
        return lambda v: count(v, nouns)
    return None


def _fallback(spec: FeatureSpec) -> Phrase:
    name = label(spec.name)
    if spec.kind == "numeric":
        return lambda v: f"{name} not recorded" if v is None else f"{name}: {_number(v)}"
    return lambda v: f"{name} not recorded" if v is None else f"{name}: {label(v)}"


@lru_cache(maxsize=4096)
def phrase_for(spec: FeatureSpec) -> Phrase:
    """The phrase of one feature (cached: specs are immutable and shared by every row)."""
    if spec.name in NAMED_PHRASES:
        return NAMED_PHRASES[spec.name]
    if spec.kind == "text":
        return _free_text(spec)
    if spec.kind == "category" or spec.name in CATEGORY_LABELS:
        return _category(spec)
    return _pattern(spec) or _fallback(spec)


def _free_text(spec: FeatureSpec) -> Phrase:
    learned = _category(spec) if spec.name in CATEGORY_LABELS else _fallback(spec)
    other = f"{CATEGORY_LABELS.get(spec.name, label(spec.name))}: {OTHER_WORDS}"
    return lambda v: other if v == OTHER_VALUE else learned(v)


def display_value(
    spec: FeatureSpec, raw: Any, vocabulary: CategoryVocabulary
) -> float | str | None:
    """A feature's value as shown to people: the label of a category, None when missing.

    Free text is shown only when ``vocabulary`` (the model's) learned it as a category of
    the feature; any other text is ``OTHER_VALUE``, never the text itself.
    """
    if raw is None:
        return None
    if spec.kind == "category":
        return None if math.isnan(raw) else spec.vocabulary[int(raw)]
    if spec.kind == "text":
        return str(raw) if vocabulary.knows(spec.name, str(raw)) else OTHER_VALUE
    value = float(raw)
    return None if math.isnan(value) else value
