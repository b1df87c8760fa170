"""The contract's field types for JSON records: timestamps, text, numbers and categories.

Each type accepts exactly what the file loader accepts for a column of its kind (same
vocabularies, same UTC rules, same case-insensitive categories, same number and text
readings), checked in pydantic's compiled core where it can be, so a lead scores the same
from an export and from a request. ``features.records`` builds the contract's rows from them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import AfterValidator, BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from features.contract import (
    ACTIVITY_TYPES,
    AT_SIGNS,
    BARRIER_SIDES,
    CONSENT_STATUSES,
    JOB_LEVELS,
    LEAD_SOURCES,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    OPPORTUNITY_STATUSES,
    OTHER_ACTIVITY,
    PRODUCT_FITS,
    REASON_CODES,
    REP_POTENTIALS,
    STAGES,
)
from features.numbers import number_from_text
from features.text import blank_class, is_blank, text_of
from features.timestamps import ISO_TIMESTAMP_PATTERN, NOT_ISO, iso_moment, parse_timestamp

TIMESTAMP_ERROR = "timestamp_format"


def _day_start(value: datetime) -> datetime:
    return datetime.combine(value.date(), time(), tzinfo=UTC)


class _ContractTimestamp:
    """A timestamp by the contract's rules (``features.timestamps.parse_timestamp``).

    From JSON, pydantic's core checks the string against ``ISO_TIMESTAMP_PATTERN`` itself
    and only the conversion to UTC runs in Python (a request carries dozens of
    timestamps); Python values (``datetime`` or string) go through ``parse_timestamp``.
    Both accept exactly the strings the file loader accepts, and every refusal is one
    ``timestamp_format`` error whichever path found it.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Pattern in the core, then ``iso_moment`` (JSON); ``parse_timestamp`` (Python)."""
        iso_text = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=ISO_TIMESTAMP_PATTERN),
            custom_error_type=TIMESTAMP_ERROR,
            custom_error_message=NOT_ISO,
        )
        return core_schema.json_or_python_schema(
            json_schema=core_schema.no_info_after_validator_function(
                _timestamp_error(iso_moment), iso_text
            ),
            python_schema=core_schema.no_info_plain_validator_function(
                _timestamp_error(parse_timestamp)
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                datetime.isoformat, when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A string in the contract's ISO 8601 form."""
        return {"type": "string", "pattern": ISO_TIMESTAMP_PATTERN}


def _timestamp_error(parse: Callable[[Any], datetime]) -> Callable[[Any], datetime]:
    """``parse`` with its ``ValueError`` raised as a ``timestamp_format`` error."""

    def parse_or_refuse(value: Any) -> datetime:
        try:
            return parse(value)
        except ValueError as error:
            raise PydanticCustomError(TIMESTAMP_ERROR, str(error)) from None

    return parse_or_refuse


Timestamp = Annotated[datetime, _ContractTimestamp]
DateField = Annotated[datetime, _ContractTimestamp, AfterValidator(_day_start)]


class _ContractText:
    """Text by the loader's rule (``features.text``): a JSON string as it is, a JSON number
    or boolean written as a file's text of it (``7`` and ``7.0`` are ``"7"``, ``true`` is
    ``"true"``), within the column's length limits, as in files.

    A string is checked by pydantic's core first, with no Python call (a request carries
    dozens of ids); only a number or a boolean goes through ``written``. Every refusal (a
    string too short or too long, another JSON type, a number that is not finite) is one
    ``text`` error naming the limits. Characters ``forbidden`` are refused by the request's
    own check (``features.records.ScoreRequest``: a pattern here would cost a regular
    expression per id); the JSON schema states them as a pattern. An identifier
    (``identifier``) must not be blank (``features.text.is_blank``), as the loader sets a
    blank id aside: pydantic's core looks for one character that is not blank (a compiled
    character class, about 10 ns an id).
    """

    def __init__(
        self, min_length: int, max_length: int, forbidden: str = "", identifier: bool = False
    ) -> None:
        self.min_length = min_length
        self.max_length = max_length
        self.identifier = identifier
        self.pattern = self._json_pattern(forbidden) if forbidden or identifier else None
        shortest = f"{min_length} to " if min_length else "at most "
        not_blank = ", not blank (only spaces or invisible characters)" if identifier else ""
        self.message = (
            f"must be text of {shortest}{max_length:,} characters{not_blank}, "
            "or a finite number or a boolean (read as text)"
        )

    def _json_pattern(self, forbidden: str) -> str:
        """The JSON schema's pattern: none of the ``forbidden`` characters and, for an
        identifier, one character that is not blank."""
        if not self.identifier:
            return f"^[^{re.escape(forbidden)}]*$"
        # Blanks, then the first character that is neither blank nor forbidden, then any
        # that is not forbidden: one way to match each string (no backtracking blow-up)
        blank, refused = blank_class("json"), re.escape(forbidden)
        return f"^[{blank}]*[^{refused}{blank}][^{refused}]*$"

    def written(self, value: float | int | bool) -> str:
        """A JSON number or boolean as text.

        Raises:
            ValueError: a number that is not finite, or text past the length limit.
        """
        text = text_of(value)
        if text is None or not self.min_length <= len(text) <= self.max_length:
            raise ValueError(self.message)
        return text

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """A strict string within the limits, or a strict boolean or number via ``written``."""
        scalar = core_schema.union_schema(
            [
                core_schema.bool_schema(strict=True),
                core_schema.int_schema(strict=True),
                core_schema.float_schema(strict=True),
            ],
            mode="left_to_right",
        )
        text = core_schema.str_schema(
            strict=True,
            min_length=self.min_length,
            max_length=self.max_length,
            pattern=f"[^{blank_class('rust')}]" if self.identifier else None,
        )
        return core_schema.union_schema(
            [text, core_schema.no_info_after_validator_function(self.written, scalar)],
            mode="left_to_right",
            custom_error_type="text",
            custom_error_message=self.message,
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A string within the limits, or a number or a boolean (read as text)."""
        text: JsonSchemaValue = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            text["minLength"] = self.min_length
        if self.pattern:
            text["pattern"] = self.pattern
        return {"anyOf": [text, {"type": "number"}, {"type": "boolean"}]}


if TYPE_CHECKING:  # plain strings to a type checker
    Identifier: TypeAlias = str
    Text: TypeAlias = str
else:
    Identifier = Annotated[
        str,
        _ContractText(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            forbidden="".join(AT_SIGNS),
            identifier=True,
        ),
    ]
    Text = Annotated[str, _ContractText(min_length=0, max_length=MAX_TEXT_LENGTH)]


def _blank_is_missing(value: Any) -> Any:
    """A blank string (empty once trimmed) as a missing value, as an empty field of a file:
    marketing-automation platforms send an unset property as ``""``."""
    return None if isinstance(value, str) and is_blank(value) else value


#: On an optional field: a blank string is a missing value (required fields refuse it).
BLANK_IS_MISSING = BeforeValidator(_blank_is_missing)


class _ContractNumber:
    """A number by the loader's rules (``features.numbers``): a JSON number, or a string
    the loader's parser reads as one; never a boolean, never NaN or infinite. Every
    refusal is one ``number`` error.
    """

    def __init__(self, whole: bool) -> None:
        self.whole = whole
        self.message = "must be a whole number" if whole else "must be a finite number"

    def check(self, value: float) -> float:
        """``value`` when finite (and whole, for a whole number; then as an ``int``).

        Raises:
            ValueError: not finite, or not whole when it must be.
        """
        if not math.isfinite(value) or (self.whole and value != math.floor(value)):
            raise ValueError(self.message)
        return int(value) if self.whole else value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """A strict number (no booleans), or text read by ``number_from_text``; then ``check``."""
        native = core_schema.float_schema(strict=True)
        text = core_schema.no_info_after_validator_function(
            number_from_text, core_schema.str_schema(strict=True)
        )
        either = core_schema.union_schema([native, text], mode="left_to_right")
        return core_schema.custom_error_schema(
            core_schema.no_info_after_validator_function(self.check, either),
            custom_error_type="number",
            custom_error_message=self.message,
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """An integer or a number."""
        return {"type": "integer" if self.whole else "number"}


if TYPE_CHECKING:  # plain numbers to a type checker
    FiniteFloat: TypeAlias = float
    WholeNumber: TypeAlias = int
else:
    FiniteFloat = Annotated[float, _ContractNumber(whole=False)]
    WholeNumber = Annotated[int, _ContractNumber(whole=True)]


class _Vocabulary:
    """A contract category: matched case-insensitively after trimming, as in files.

    A value already in canonical form (the usual case) is matched by pydantic's core
    against the vocabulary, with no Python call; any other value goes through ``check``
    (trim, lower case, look up; ``fallback`` for an unknown value when given). Either way a
    refusal is one error: "must be one of: ...".
    """

    def __init__(
        self, values: tuple[str, ...], fallback: str | None = None, optional: bool = False
    ) -> None:
        self.values = values
        self.allowed = frozenset(values)
        self.fallback = fallback
        self.optional = optional

    def check(self, value: Any) -> str | None:
        """The canonical value of ``value`` (None for a blank value of an optional field).

        A blank value is a missing one, as an empty field of a file: None where the field
        is optional, refused where it is required (never the fallback).

        Raises:
            ValueError: not a string, blank where required, or unknown without a fallback.
        """
        if not isinstance(value, str):
            raise ValueError(self.message)
        normalised = value.strip().lower()
        if normalised in self.allowed:
            return normalised
        if is_blank(normalised):
            if self.optional:
                return None
            raise ValueError(self.message)
        if self.fallback is not None:
            return self.fallback
        raise ValueError(self.message)

    @property
    def message(self) -> str:
        """The error every refusal carries."""
        return f"must be one of: {', '.join(self.values)}"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """The vocabulary itself first, then ``check``; one error when both refuse."""
        exact = core_schema.literal_schema(list(self.values))
        normalised = core_schema.no_info_plain_validator_function(self.check)
        return core_schema.custom_error_schema(
            core_schema.union_schema([exact, normalised], mode="left_to_right"),
            custom_error_type="vocabulary",
            custom_error_message=self.message,
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A string from the vocabulary, matched case-insensitively after trimming; with a
        fallback, any other string that is not blank (kept as the fallback), the
        vocabulary then in the description and the examples."""
        values = ", ".join(self.values)
        if self.fallback is None:
            return {
                "type": "string",
                "enum": list(self.values),
                "description": "matched case-insensitively after trimming",
            }
        return {
            "type": "string",
            "pattern": f"[^{blank_class('json')}]",
            "description": (
                f"one of: {values} (matched case-insensitively after trimming); any other "
                f"value is kept as `{self.fallback}`"
            ),
            "examples": list(self.values[:3]),
        }


def _vocabulary(
    values: tuple[str, ...], fallback: str | None = None, optional: bool = False
) -> Any:
    return Annotated[str, _Vocabulary(values, fallback, optional)]


if TYPE_CHECKING:  # the validators below are plain strings to a type checker
    LeadSource: TypeAlias = str
    JobLevel: TypeAlias = str
    ProductFit: TypeAlias = str
    ActivityType: TypeAlias = str
    Stage: TypeAlias = str
    ReasonCode: TypeAlias = str
    BarrierSide: TypeAlias = str
    RepPotential: TypeAlias = str
    OpportunityStatus: TypeAlias = str
    ConsentStatus: TypeAlias = str
else:
    LeadSource = _vocabulary(LEAD_SOURCES)
    JobLevel = _vocabulary(JOB_LEVELS, optional=True)
    ProductFit = _vocabulary(PRODUCT_FITS, optional=True)
    ActivityType = _vocabulary(ACTIVITY_TYPES, fallback=OTHER_ACTIVITY)
    Stage = _vocabulary(STAGES)
    ReasonCode = _vocabulary(REASON_CODES)
    BarrierSide = _vocabulary(BARRIER_SIDES, optional=True)
    RepPotential = _vocabulary(REP_POTENTIALS, optional=True)
    OpportunityStatus = _vocabulary(OPPORTUNITY_STATUSES)
    ConsentStatus = _vocabulary(CONSENT_STATUSES)
