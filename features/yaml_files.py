"""YAML settings files (the training configuration, the routing policy), read strictly.

PyYAML's safe loader keeps the last of a key given twice in one mapping without a word, so
a second ``budget:`` rule or ``horizon_days:`` would replace the first unseen; and some
values it cannot build (``2024-02-30``, ``!!int abc``, a number of more than 4,300 digits,
nesting deeper than Python's recursion limit) escape as ``ValueError``, ``TypeError`` or
``RecursionError`` rather than as a YAML error. ``parse_yaml`` refuses the first and turns
the others into ``yaml.YAMLError``, so every reader reports them as it reports bad YAML.
"""

from __future__ import annotations

import errno
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


#: A settings file (a training configuration, a routing policy) is a few kilobytes; a larger
#: one is a wrong path, and YAML would take seconds per megabyte to refuse it.
MAX_SETTINGS_BYTES = 1 << 20


def read_settings_text(path: str | Path) -> str:
    """The text of a settings file.

    Raises:
        OSError: the file cannot be read, or is larger than ``MAX_SETTINGS_BYTES``.
        UnicodeDecodeError: the file is not UTF-8.
    """
    with Path(path).open("rb") as handle:
        data = handle.read(MAX_SETTINGS_BYTES + 1)
    if len(data) > MAX_SETTINGS_BYTES:
        limit = f"{MAX_SETTINGS_BYTES >> 20} MiB"
        raise OSError(errno.EFBIG, f"larger than {limit}, too large for a settings file")
    return data.decode("utf-8")


def parse_yaml(text: str) -> Any:
    """The YAML document in ``text``, read with the safe loader.

    Raises:
        yaml.YAMLError: the text is not YAML, repeats a key in a mapping (with its line), or
            holds a value YAML cannot build.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise yaml.YAMLError(f"a value YAML cannot read: {reason}") from error


def yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint and where it is (1-based line and column), without PyYAML's
    name for the text it was given (``"<unicode string>"``): the caller names the file."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(error)


def not_utf8(error: UnicodeDecodeError) -> str:
    """Where a settings file stops being UTF-8: ``not UTF-8 text (byte 0xe9 on line 12)``."""
    data = bytes(error.object)
    line = data[: error.start].count(b"\n") + 1
    return f"not UTF-8 text (byte 0x{data[error.start]:02x} on line {line})"


class YamlSettings(BaseModel):
    """Base of the frozen settings models read from YAML files: unknown keys are refused,
    and so are ``yes``, ``no``, ``on`` and ``off`` where a number is expected (YAML reads
    them as true and false, which a number field would otherwise take as 1 and 0:
    ``horizon_days: yes`` would be a one-day horizon)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _a_number_is_not_yes_or_no(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and _is_number(
            cls.model_fields[str(info.field_name)].annotation
        ):
            raise ValueError("should be a number, not true/false (YAML reads yes/no/on/off so)")
        return value


def _is_number(annotation: Any) -> bool:
    """Whether a field of this type takes numbers and not booleans (``int``, ``float``,
    ``int | None``...)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        return bool not in members and any(_is_number(m) for m in members)
    return annotation in (int, float)
