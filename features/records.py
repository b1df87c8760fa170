"""Contract rows as JSON records: the scoring request body, validated field by field.

These models accept exactly what the file loader accepts (their field types, in
``features.record_fields``, follow the loader's rules), so a lead scores the same from an
export and from a request.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from features.contract import (
    AT_SIGNS,
    MAX_TEXT_LENGTH,
    PERSONAL_ID_RULE,
    REJECTED_BEFORE_LEAD_EXISTED,
)
from features.record_fields import (
    BLANK_IS_MISSING,
    ActivityType,
    BarrierSide,
    ConsentStatus,
    DateField,
    FiniteFloat,
    Identifier,
    JobLevel,
    LeadSource,
    OpportunityStatus,
    ProductFit,
    ReasonCode,
    RepPotential,
    Stage,
    Text,
    Timestamp,
    WholeNumber,
)
from features.timestamps import CLOCK_SKEW_ALLOWED

CONFLICT_ERROR = "conflict"


class _Record(BaseModel):
    """Extra fields (customers' own columns) are accepted and kept, as in files."""

    model_config = ConfigDict(extra="allow", frozen=True, str_max_length=MAX_TEXT_LENGTH)


class LeadRecord(_Record):
    """One row of ``leads``."""

    lead_id: Identifier
    account_id: Annotated[Identifier | None, BLANK_IS_MISSING] = None
    created_at: Timestamp
    lead_source: LeadSource
    industry: Annotated[Text | None, BLANK_IS_MISSING] = None
    employee_count: Annotated[WholeNumber | None, BLANK_IS_MISSING] = None
    annual_revenue: Annotated[FiniteFloat | None, BLANK_IS_MISSING] = None
    country: Annotated[Text | None, BLANK_IS_MISSING] = None
    job_title: Annotated[Text | None, BLANK_IS_MISSING] = None
    job_level: JobLevel | None = None
    product_fit: ProductFit | None = None
    email: Annotated[Text | None, BLANK_IS_MISSING] = Field(default=None, repr=False)
    first_name: Annotated[Text | None, BLANK_IS_MISSING] = Field(default=None, repr=False)
    last_name: Annotated[Text | None, BLANK_IS_MISSING] = Field(default=None, repr=False)

    def custom_value(self, name: str) -> Any:
        """The value of a custom (non-contract) column, or None."""
        extra = self.model_extra or {}
        return extra.get(name)


class ActivityRecord(_Record):
    """One row of ``activities``; an unknown type is kept as ``other``."""

    activity_id: Identifier
    lead_id: Identifier
    occurred_at: Timestamp
    activity_type: ActivityType


class RejectionRecord(_Record):
    """One row of ``rejections``."""

    rejection_id: Identifier
    lead_id: Identifier
    rejected_at: Timestamp
    stage_at_rejection: Stage
    reason_code: ReasonCode
    reason_detail: Annotated[Text | None, BLANK_IS_MISSING] = None
    barrier_side: BarrierSide | None = None
    rep_potential: RepPotential | None = None
    follow_up_date: Annotated[DateField | None, BLANK_IS_MISSING] = None
    lead_score_at_rejection: Annotated[FiniteFloat | None, BLANK_IS_MISSING] = None
    recommended_program: Annotated[Text | None, BLANK_IS_MISSING] = None
    rep_id: Annotated[Identifier | None, BLANK_IS_MISSING] = None


class OpportunityRecord(_Record):
    """One row of ``opportunities``."""

    opportunity_id: Identifier
    lead_id: Identifier
    created_at: Timestamp
    closed_at: Annotated[Timestamp | None, BLANK_IS_MISSING] = None
    status: OpportunityStatus
    amount: Annotated[FiniteFloat | None, BLANK_IS_MISSING] = None
    loss_reason: Annotated[Text | None, BLANK_IS_MISSING] = None


class ConsentRecord(_Record):
    """One row of ``consent``."""

    lead_id: Identifier
    changed_at: Timestamp
    status: ConsentStatus


MAX_ROWS_PER_LEAD = 5000
#: The names a model was given values for (``model_fields_set`` without a property call).
_FIELDS_SET = operator.attrgetter("__pydantic_fields_set__")
#: The models of one row of each contract table.
RECORD_MODELS = (LeadRecord, ActivityRecord, RejectionRecord, OpportunityRecord, ConsentRecord)


#: Each row model's own identifiers: its fields named ``*_id`` (the contract's rule,
#: ``features.contract.Column.is_identifier``) other than ``lead_id``.
_OWN_IDS: dict[type[_Record], tuple[str, ...]] = {
    model: tuple(n for n in model.model_fields if n.endswith("_id") and n != "lead_id")
    for model in RECORD_MODELS
}


def repeats(keys: Iterable[Hashable]) -> Iterator[tuple[int, int]]:
    """``(index, first)`` for each key that an earlier one, at ``first``, already is."""
    first_at: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        first = first_at.setdefault(key, index)
        if first != index:
            yield index, first


#: A validation context key: True when the JSON bytes validated hold no ``@`` in any form
#: (``ids_context``), so no identifier can, and ``ScoreRequest`` need not look at each.
NO_AT_SIGN = "no_at_sign"


def ids_context(body: bytes) -> dict[str, bool]:
    """The validation context for the JSON ``body`` (``NO_AT_SIGN``): an at sign
    (``AT_SIGNS``) reaches a string only as its UTF-8 bytes or as a ``\\u`` escape, so bytes
    without either hold none. Searching them costs about a microsecond for a body of 50
    activities (most bodies hold no backslash); reading every id costs about 15."""
    if any(sign.encode() in body for sign in AT_SIGNS):
        return {NO_AT_SIGN: False}
    escaped = b"\\" in body and _ESCAPED_AT_SIGN.search(body) is not None
    return {NO_AT_SIGN: not escaped}


#: A JSON escape of one of ``AT_SIGNS`` (hex digits in either case).
_ESCAPED_AT_SIGN = re.compile(
    rb"\\u(?:" + b"|".join(f"{ord(s):04x}".encode() for s in AT_SIGNS) + rb")", re.IGNORECASE
)


def _holds_at_sign(text: str) -> bool:
    """Whether ``text`` holds one of ``AT_SIGNS``."""
    return any(sign in text for sign in AT_SIGNS)


#: A rejection dated before ``lead.created_at``, refused as the loader sets its row aside
#: (``features.contract.REJECTED_BEFORE_CREATED``).
REJECTED_BEFORE_CREATED_HERE = f"is before lead.created_at: {REJECTED_BEFORE_LEAD_EXISTED}"


def conflict(location: tuple[str | int, ...], message: str) -> InitErrorDetails:
    """An error at ``location`` (within the request) for a value that contradicts another.

    Raised from a model validator inside a ``ValidationError``, it keeps its location, so the
    offending field is named (prefixed, in a batch, by the item's) rather than the whole body.
    The input is left empty: the message names the other field, never a value.
    """
    return InitErrorDetails(
        type=PydanticCustomError(CONFLICT_ERROR, message), loc=location, input=None
    )


class ScoreRequest(BaseModel):
    """Everything one prediction needs: one rejection of one lead and the lead's own rows.

    ``as_of`` defaults to now. Rows after ``as_of`` may be sent: they never reach a feature,
    but a consent row after ``as_of`` that forbids contact still suppresses the lead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead: LeadRecord
    rejection: RejectionRecord
    activities: Annotated[list[ActivityRecord], Field(max_length=MAX_ROWS_PER_LEAD)] = []
    opportunities: Annotated[list[OpportunityRecord], Field(max_length=MAX_ROWS_PER_LEAD)] = []
    consent: Annotated[list[ConsentRecord], Field(max_length=MAX_ROWS_PER_LEAD)] = []
    earlier_rejections: Annotated[list[RejectionRecord], Field(max_length=MAX_ROWS_PER_LEAD)] = []
    as_of: Timestamp | None = None

    @model_validator(mode="after")
    def _rows_agree_with_each_other(self, info: ValidationInfo) -> ScoreRequest:
        context = info.context if isinstance(info.context, dict) else {}
        problems = [
            *self._foreign_rows(),
            *([] if context.get(NO_AT_SIGN) else self._personal_ids()),
            *self._repeated_ids(),
            *self._misplaced_rejections(),
            *self._closing_opportunities(),
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def _foreign_rows(self) -> Iterator[InitErrorDetails]:
        """Rows of another lead, an ``as_of`` before the rejection, and a rejection in the
        future when the request is scored now."""
        lead_id = self.lead.lead_id
        if self.rejection.lead_id != lead_id:
            yield conflict(("rejection", "lead_id"), "does not match lead.lead_id")
        for field_name in ("activities", "opportunities", "consent", "earlier_rejections"):
            rows: list[Any] = getattr(self, field_name)
            for index, row in enumerate(rows):
                if row.lead_id != lead_id:
                    yield conflict((field_name, index, "lead_id"), "does not match lead.lead_id")
        if self.as_of is not None and self.as_of < self.rejection.rejected_at:
            yield conflict(("as_of",), "is before rejection.rejected_at")
        # Without as_of a request is scored now, never before its rejection: a rejection a
        # little ahead of the server's clock is scored at its own moment; one further ahead
        # is refused, since rows dated up to that future moment would count as known.
        if (
            self.as_of is None
            and self.rejection.rejected_at > datetime.now(UTC) + CLOCK_SKEW_ALLOWED
        ):
            message = "is in the future (no as_of was sent, so the request is scored now)"
            yield conflict(("rejection", "rejected_at"), message)

    def _personal_ids(self) -> Iterator[InitErrorDetails]:
        """Identifiers holding an at sign (``features.contract.AT_SIGNS``), as the loader sets
        them aside: an e-mail address is personal data, never an id. One join finds whether
        any does; only then are they named."""
        ids = list(self._identifiers())
        if not _holds_at_sign(" ".join(value or "" for _, value in ids)):
            return
        for location, value in ids:
            if value is not None and _holds_at_sign(value):
                yield conflict(location, PERSONAL_ID_RULE)

    def _identifiers(self) -> Iterator[tuple[tuple[str | int, ...], str | None]]:
        """``lead.lead_id`` and every row's own identifiers (``_OWN_IDS``), each with its
        location; a row's ``lead_id`` is ``lead.lead_id`` or refused by ``_foreign_rows``."""
        yield ("lead", "lead_id"), self.lead.lead_id
        sections: list[tuple[tuple[str | int, ...], _Record]] = [
            (("lead",), self.lead),
            (("rejection",), self.rejection),
        ]
        for field_name in ("activities", "opportunities", "consent", "earlier_rejections"):
            rows: list[_Record] = getattr(self, field_name)
            sections += [((field_name, index), row) for index, row in enumerate(rows)]
        for prefix, row in sections:
            for name in _OWN_IDS[type(row)]:
                yield (*prefix, name), getattr(row, name)

    def _repeated_ids(self) -> Iterator[InitErrorDetails]:
        """A row whose id an earlier row of the same table already has."""
        keyed = {
            ("activities", "activity_id"): [a.activity_id for a in self.activities],
            ("opportunities", "opportunity_id"): [o.opportunity_id for o in self.opportunities],
            ("earlier_rejections", "rejection_id"): [
                r.rejection_id for r in self.earlier_rejections
            ],
        }
        for (field_name, key_name), keys in keyed.items():
            for index, first in repeats(keys):
                message = f"repeats {field_name}.{first}.{key_name}"
                yield conflict((field_name, index, key_name), message)

    def _misplaced_rejections(self) -> Iterator[InitErrorDetails]:
        """Earlier rejections that are the scored one, or that come after it, and any
        rejection dated before the lead's creation (``REJECTED_BEFORE_CREATED_HERE``, as the
        loader sets it aside)."""
        scored = self.rejection
        created = self.lead.created_at
        if scored.rejected_at < created:
            yield conflict(("rejection", "rejected_at"), REJECTED_BEFORE_CREATED_HERE)
        for index, earlier in enumerate(self.earlier_rejections):
            if earlier.rejection_id == scored.rejection_id:
                message = "is rejection.rejection_id, the rejection being scored"
                yield conflict(("earlier_rejections", index, "rejection_id"), message)
            if earlier.rejected_at > scored.rejected_at:
                message = "is after rejection.rejected_at"
                yield conflict(("earlier_rejections", index, "rejected_at"), message)
            if earlier.rejected_at < created:
                location = ("earlier_rejections", index, "rejected_at")
                yield conflict(location, REJECTED_BEFORE_CREATED_HERE)

    def _closing_opportunities(self) -> Iterator[InitErrorDetails]:
        """Opportunities created after the rejection and by ``as_of``: the lead came back,
        the rejection is no longer open, and only an open rejection is scored (the data
        contract; the batch job leaves such a rejection out)."""
        rejected_at = self.rejection.rejected_at
        as_of = self.resolved_as_of()
        for index, opportunity in enumerate(self.opportunities):
            if rejected_at < opportunity.created_at <= as_of:
                message = (
                    "is after rejection.rejected_at and not after as_of: the lead has an "
                    "opportunity since the rejection, so the rejection is no longer open "
                    "and is not scored"
                )
                yield conflict(("opportunities", index, "created_at"), message)

    def keys_given(self) -> int:
        """How many JSON keys this request was given: its own and its rows' (a key sent
        twice in one object counts once, the value read being the last)."""
        rows: list[BaseModel] = [
            self.lead,
            self.rejection,
            *self.activities,
            *self.opportunities,
            *self.consent,
            *self.earlier_rejections,
        ]
        return len(self.model_fields_set) + sum(map(len, map(_FIELDS_SET, rows)))

    def resolved_as_of(self, now: datetime | None = None) -> datetime:
        """``as_of``, or ``now`` (UTC) when the request leaves it out."""
        if self.as_of is not None:
            return self.as_of
        return now or datetime.now(UTC)
