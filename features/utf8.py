"""Whether a text file is UTF-8, and if not, the line and character of its first bad byte.

A decoding error from pandas or the ``csv`` module gives a byte position inside whatever
buffer was being decoded, which points nowhere in the file. The loader and the batch job
check a CSV file with ``require_utf8`` before parsing it, so both name the same place.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from features.problems import ContractError, Problem

BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class InvalidUtf8:
    """The first byte of a file that UTF-8 does not allow where it stands.

    Attributes:
        line: 1-based line of the file (``\\n``, ``\\r\\n`` and ``\\r`` end a line, as for
            the CSV readers); a CSV header is line 1.
        character: 1-based character of that line at which the byte stands (a byte-order
            mark is not counted).
        byte: the byte's value.
        reason: the decoder's reason, e.g. ``invalid continuation byte``.
    """

    line: int
    character: int
    byte: int
    reason: str

    def describe(self) -> str:
        """The problem in plain words (the byte is shown, never the text around it)."""
        return (
            f"not a readable UTF-8 CSV file: line {self.line}, character {self.character} "
            f"is the byte 0x{self.byte:02X}, which is not UTF-8 ({self.reason}); "
            "save or export the file as UTF-8"
        )


def require_utf8(path: Path) -> None:
    """Refuse a file that is not all UTF-8.

    Raises:
        ContractError: naming the file, and the line and character of the first bad byte.
    """
    problem = utf8_problem(path)
    if problem is not None:
        raise ContractError([problem])


def utf8_problem(path: Path) -> Problem | None:
    """The problem with ``path`` if it is not all UTF-8, else ``None``."""
    found = first_invalid_utf8(path)
    return None if found is None else Problem(str(path), found.describe())


def first_invalid_utf8(path: Path, block_bytes: int = BLOCK_BYTES) -> InvalidUtf8 | None:
    """The first byte of ``path`` that is not UTF-8, or ``None`` when all of it is.

    The file is read in blocks (memory stays bounded); a character cut by the end of a
    block is completed by the next one. Only when a bad byte is found is the file read a
    second time, up to that byte, to count its lines.
    """
    found = _first_invalid_byte(path, block_bytes)
    if found is None:
        return None
    offset, byte, reason = found
    position = _LinePosition()
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # drops a byte-order mark
    with path.open("rb") as handle:
        while offset > 0 and (block := handle.read(min(block_bytes, offset))):
            offset -= len(block)
            position.advance(decoder.decode(block))
    return InvalidUtf8(position.line_breaks + 1, position.characters + 1, byte, reason)


def _first_invalid_byte(path: Path, block_bytes: int) -> tuple[int, int, str] | None:
    """The offset, value and decoder's reason of the first byte that is not UTF-8."""
    pending = b""  # the start of a character cut by the end of the previous block
    start = 0  # the file offset of ``pending``
    with path.open("rb") as handle:
        while True:
            block = handle.read(block_bytes)
            data = pending + block
            try:
                if not data.isascii():
                    data.decode("utf-8")
            except UnicodeDecodeError as error:
                if block and error.reason == "unexpected end of data":
                    pending, start = data[error.start :], start + error.start
                    continue
                return start + error.start, data[error.start], error.reason
            if not block:
                return None
            pending, start = b"", start + len(data)


class _LinePosition:
    """Counts the lines, and the characters of the last line, of consecutive texts."""

    def __init__(self) -> None:
        self.line_breaks = 0
        self.characters = 0
        self.ends_with_cr = False

    def advance(self, text: str) -> None:
        """Move past ``text``, the next part of the file."""
        if not text:
            return
        breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
        if self.ends_with_cr and text.startswith("\n"):
            breaks -= 1  # one "\r\n" cut in two by the end of a block
        self.line_breaks += breaks
        last_break = max(text.rfind("\n"), text.rfind("\r"))
        if last_break < 0:
            self.characters += len(text)
        else:
            self.characters = len(text) - last_break - 1
        self.ends_with_cr = text.endswith("\r")
