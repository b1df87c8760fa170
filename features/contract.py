"""The data contract in code: the five tables of a CRM / marketing-automation export.

Every loader, validator, generator and API model reads its column names, types and
vocabularies from here, so the contract has exactly one executable form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """The logical type of a contract column."""

    STRING = "string"
    TIMESTAMP = "timestamp"
    DATE = "date"
    INTEGER = "integer"
    FLOAT = "float"
    CATEGORY = "category"


#: Most characters of an identifier (a ``*_id`` column, never empty) and of free text, in
#: files and requests alike.
MAX_ID_LENGTH = 200
MAX_TEXT_LENGTH = 2000
#: A character no identifier holds: an id that is an e-mail address (some tools key
#: contacts by it) is personal data, and ids are written to every output.
NOT_IN_IDS = "@"
#: ``NOT_IN_IDS`` and its look-alikes (full-width and small forms, which loose id matching
#: reads as ``@``): an identifier holds none of them.
AT_SIGNS = ("@", "\uff20", "\ufe6b")
#: Why an identifier holding one of ``AT_SIGNS`` is refused, in files and requests alike.
PERSONAL_ID_RULE = (
    f"holds '{NOT_IN_IDS}' (or a look-alike): an identifier is never an e-mail address "
    "(personal data)"
)


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    required: bool = False
    vocabulary: tuple[str, ...] = ()
    personal: bool = False
    description: str = ""

    @property
    def is_identifier(self) -> bool:
        """A key or a reference to one (a string column named ``*_id``)."""
        return self.kind is Kind.STRING and self.name.endswith("_id")

    @property
    def max_length(self) -> int | None:
        """Most characters a value may hold (None: not a string column)."""
        if self.kind is not Kind.STRING:
            return None
        return MAX_ID_LENGTH if self.is_identifier else MAX_TEXT_LENGTH


@dataclass(frozen=True)
class Table:
    """One table of the export: its file stem, primary key and columns."""

    name: str
    columns: tuple[Column, ...]
    primary_key: str | None
    optional: bool = False

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Names of the columns every file of this table must have."""
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of all contract columns, in contract order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """The contract column called ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no contract column {name!r}")


LEAD_SOURCES = (
    "web_form",
    "content_download",
    "webinar",
    "trade_show",
    "paid_search",
    "paid_social",
    "organic_search",
    "email_campaign",
    "referral",
    "partner",
    "outbound",
    "other",
)
JOB_LEVELS = (
    "c_level",
    "vp",
    "director",
    "manager",
    "individual_contributor",
    "student",
    "unknown",
)
PRODUCT_FITS = ("ideal", "customization", "major_investment")

MARKETING_ACTIVITIES = (
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page_visit",
    "content_download",
    "webinar_registered",
    "webinar_attended",
    "event_attended",
    "form_submit",
    "demo_request",
    "chat_conversation",
)
SALES_ACTIVITIES = (
    "sales_call",
    "sales_email_reply",
    "meeting_decision_maker",
    "meeting_recommender",
    "meeting_influencer",
    "online_demo",
    "onsite_demo",
    "spec_provided",
    "funding_confirmed",
    "budget_approved",
    "references_requested",
    "references_contacted",
)
OTHER_ACTIVITY = "other"
ACTIVITY_TYPES = (*MARKETING_ACTIVITIES, *SALES_ACTIVITIES, OTHER_ACTIVITY)

STAGES = ("mql", "sal", "sql", "opportunity")
REASON_CODES = (
    "budget",
    "timing",
    "competitor_won",
    "not_decision_maker",
    "no_need",
    "wrong_solution",
    "needs_nurturing",
    "unresponsive",
    "do_not_contact",
    "bad_data",
    "other",
)
BARRIER_SIDES = ("prospect", "product", "process", "rep", "unknown")
REP_POTENTIALS = ("high", "medium", "low", "none")
OPPORTUNITY_STATUSES = ("open", "won", "lost")
CONSENT_STATUSES = ("subscribed", "unsubscribed", "do_not_contact")
NO_CONTACT_CONSENT = frozenset({"unsubscribed", "do_not_contact"})
NO_CONTACT_REASONS = frozenset({"do_not_contact", "bad_data"})

LEADS = Table(
    name="leads",
    primary_key="lead_id",
    columns=(
        Column("lead_id", Kind.STRING, required=True, description="primary key"),
        Column("account_id", Kind.STRING, description="the company; several leads can share it"),
        Column("created_at", Kind.TIMESTAMP, required=True),
        Column("lead_source", Kind.CATEGORY, required=True, vocabulary=LEAD_SOURCES),
        Column(
            "industry",
            Kind.STRING,
            description="free text from the CRM picklist; high cardinality is normal",
        ),
        Column("employee_count", Kind.INTEGER),
        Column("annual_revenue", Kind.FLOAT, description="USD"),
        Column("country", Kind.STRING, description="ISO 3166-1 alpha-2"),
        Column("job_title", Kind.STRING, description="free text"),
        Column("job_level", Kind.CATEGORY, vocabulary=JOB_LEVELS),
        Column(
            "product_fit",
            Kind.CATEGORY,
            vocabulary=PRODUCT_FITS,
            description="the rep's or marketing's fit judgement",
        ),
        Column("email", Kind.STRING, personal=True),
        Column("first_name", Kind.STRING, personal=True),
        Column("last_name", Kind.STRING, personal=True),
    ),
)

ACTIVITIES = Table(
    name="activities",
    primary_key="activity_id",
    columns=(
        Column("activity_id", Kind.STRING, required=True, description="primary key"),
        Column("lead_id", Kind.STRING, required=True),
        Column("occurred_at", Kind.TIMESTAMP, required=True),
        Column(
            "activity_type",
            Kind.CATEGORY,
            required=True,
            vocabulary=ACTIVITY_TYPES,
            description="unknown types are kept as 'other' and counted in a warning",
        ),
    ),
)

REJECTIONS = Table(
    name="rejections",
    primary_key="rejection_id",
    columns=(
        Column("rejection_id", Kind.STRING, required=True, description="primary key"),
        Column(
            "lead_id",
            Kind.STRING,
            required=True,
            description="a lead can be rejected several times",
        ),
        Column("rejected_at", Kind.TIMESTAMP, required=True),
        Column("stage_at_rejection", Kind.CATEGORY, required=True, vocabulary=STAGES),
        Column("reason_code", Kind.CATEGORY, required=True, vocabulary=REASON_CODES),
        Column("reason_detail", Kind.STRING, description="the rep's free-text note"),
        Column(
            "barrier_side",
            Kind.CATEGORY,
            vocabulary=BARRIER_SIDES,
            description="where the barrier really was",
        ),
        Column(
            "rep_potential",
            Kind.CATEGORY,
            vocabulary=REP_POTENTIALS,
            description="the rep's view of future potential",
        ),
        Column("follow_up_date", Kind.DATE, description="the rep's suggested next contact"),
        Column(
            "lead_score_at_rejection",
            Kind.FLOAT,
            description="the marketing platform's point score at the time",
        ),
        Column(
            "recommended_program",
            Kind.STRING,
            description="the nurture program the rep picked, if any",
        ),
        Column("rep_id", Kind.STRING),
    ),
)

OPPORTUNITIES = Table(
    name="opportunities",
    primary_key="opportunity_id",
    optional=True,
    columns=(
        Column("opportunity_id", Kind.STRING, required=True, description="primary key"),
        Column("lead_id", Kind.STRING, required=True),
        Column(
            "created_at",
            Kind.TIMESTAMP,
            required=True,
            description="sales accepted the lead and opened a deal",
        ),
        Column("closed_at", Kind.TIMESTAMP),
        Column("status", Kind.CATEGORY, required=True, vocabulary=OPPORTUNITY_STATUSES),
        Column("amount", Kind.FLOAT, description="USD"),
        Column("loss_reason", Kind.STRING),
    ),
)

CONSENT = Table(
    name="consent",
    primary_key=None,
    optional=True,
    columns=(
        Column("lead_id", Kind.STRING, required=True),
        Column("changed_at", Kind.TIMESTAMP, required=True),
        Column("status", Kind.CATEGORY, required=True, vocabulary=CONSENT_STATUSES),
    ),
)

TABLES: tuple[Table, ...] = (LEADS, ACTIVITIES, REJECTIONS, OPPORTUNITIES, CONSENT)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}

#: Columns that hold personal data: loaded for the CRM's sake, never a feature,
#: never logged, never written into a model artifact.
PERSONAL_COLUMNS: frozenset[str] = frozenset(
    c.name for table in TABLES for c in table.columns if c.personal
)

#: Parts of a custom column's name that mark it as personal data (a name, a phone number,
#: a postal address, a birth date, an identity number, a social profile), besides the
#: contract's own personal columns; matched with separators and case ignored
#: (``FirstName``, ``first-name`` and ``first_name`` alike).
PERSONAL_NAME_PARTS: tuple[str, ...] = (
    *sorted(PERSONAL_COLUMNS),
    "full_name",
    "surname",
    "given_name",
    "phone",
    "mobile",
    "address",
    "street",
    "postal",
    "postcode",
    "zipcode",
    "birth",
    "social_security",
    "passport",
    "linkedin",
    "twitter",
    "whatsapp",
    "telephone",
    "national_id",
    "tax_id",
    "gender",
    "ethnicity",
    "religion",
    "sexual_orientation",
    "marital_status",
    "nationality",
    "salary",
)
#: Short marks of personal data, matched as whole words of a name only (``dob`` is not in
#: ``adobe``, ``mail`` not in ``mailing``).
PERSONAL_NAME_WORDS: frozenset[str] = frozenset(
    {"dob", "ssn", "zip", "ip", "mail", "tel", "cell", "fax", "iban", "sex", "race"}
)
#: What a ``name`` column may name other than a person (``company_name``, ``CampaignName``):
#: any other ``name`` (``Name`` alone, as Salesforce's full name of a lead, ``contact_name``,
#: ``display_name``, ``username``, ``nickname``) is taken for a person's.
THING_NAMES: frozenset[str] = frozenset(
    {
        "account",
        "app",
        "brand",
        "business",
        "campaign",
        "category",
        "channel",
        "city",
        "company",
        "competitor",
        "country",
        "currency",
        "deal",
        "department",
        "division",
        "domain",
        "event",
        "file",
        "form",
        "group",
        "industry",
        "language",
        "level",
        "list",
        "opportunity",
        "org",
        "organisation",
        "organization",
        "package",
        "page",
        "partner",
        "plan",
        "platform",
        "product",
        "program",
        "programme",
        "project",
        "province",
        "region",
        "role",
        "segment",
        "site",
        "source",
        "stage",
        "state",
        "status",
        "tag",
        "team",
        "template",
        "territory",
        "tier",
        "type",
        "vendor",
    }
)


#: An e-mail address inside any text: a character, ``@``, a domain with a dot inside it.
#: Each ``@`` starts one scan that stops at the next ``@`` or space, so a search is linear
#: in the text's length (the obvious ``[^@\s]+@[^@\s]+\.[^@\s]+`` backtracks
#: quadratically on long text without a match).
_EMBEDDED_EMAIL = re.compile(r"[^@\s]@[^@\s]+\.[^@\s]")
_SPACE = re.compile(r"\s")


def is_email_address(text: str) -> bool:
    """Whether ``text`` (spaces around it aside) is one e-mail address and nothing else."""
    local, at, domain = text.strip().partition("@")
    return (
        bool(local)
        and bool(at)
        and "@" not in domain
        and "." in domain[1:-1]
        and _SPACE.search(local + domain) is None
    )


def holds_email_address(text: str) -> bool:
    """Whether ``text`` contains an e-mail address anywhere (``Ann <ann@example.com>``)."""
    return _EMBEDDED_EMAIL.search(text) is not None


def is_personal_name(name: str) -> bool:
    """Whether a column named ``name`` holds personal data by its name."""
    words = _name_words(name)
    compact = "".join(words)
    return (
        any(part in compact for part in _COMPACT_PARTS)
        or bool(PERSONAL_NAME_WORDS & set(words))
        or _names_a_person(words)
    )


def _names_a_person(words: list[str]) -> bool:
    """Whether a word is ``name`` (or ends with it) and what it names is not a thing of
    ``THING_NAMES``: the word before ``name``, or the rest of the word (``companyname``)."""
    for index, word in enumerate(words):
        if word == "name":
            qualifier = words[index - 1] if index else ""
        elif word.endswith("name"):
            qualifier = word.removesuffix("name")
        else:
            continue
        if qualifier not in THING_NAMES:
            return True
    return False


def _name_words(name: str) -> list[str]:
    """The words of a column name, lower case (``WorkEmail-2`` is ``work``, ``email``,
    ``2``)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return re.findall(r"[a-z0-9]+", spaced.lower())


def _compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


#: ``PERSONAL_NAME_PARTS`` as matched: ``first_name`` also finds ``FirstName``, ``email``
#: also finds ``e-mail``.
_COMPACT_PARTS: frozenset[str] = frozenset(_compact(part) for part in PERSONAL_NAME_PARTS)


#: Tables whose rows reference a lead and so must point at a known ``lead_id``.
LEAD_CHILD_TABLES: tuple[str, ...] = ("activities", "rejections", "opportunities", "consent")

#: Timestamp column of each table, the one point-in-time filtering uses.
EVENT_TIME_COLUMN: dict[str, str] = {
    "leads": "created_at",
    "activities": "occurred_at",
    "rejections": "rejected_at",
    "opportunities": "created_at",
    "consent": "changed_at",
}


#: Why a rejection dated before its lead's creation is refused: a lead is rejected only
#: once it exists, and scoring it would put the lead's creation after ``as_of`` (a
#: negative age, known only later).
REJECTED_BEFORE_LEAD_EXISTED = (
    "a lead is rejected only once it exists (for a lead merged or imported again, export "
    "its first creation time)"
)
#: The loader's problem for such a rejection row (the API's names ``lead.created_at``).
REJECTED_BEFORE_CREATED = f"before its lead's created_at: {REJECTED_BEFORE_LEAD_EXISTED}"
