"""Finding the first byte of a file that is not UTF-8, by line and character."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.problems import ContractError
from features.utf8 import InvalidUtf8, first_invalid_utf8, require_utf8

#: Block sizes that cut characters, "\r\n" pairs and lines anywhere, and the default.
BLOCKS = [1, 2, 3, 5, 1 << 20]


def written(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "table.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_utf8_text_cut_anywhere_by_the_blocks_is_valid(tmp_path: Path, block_bytes: int) -> None:
    path = written(tmp_path, "\ufeffid,name\r\n1,Zoë 😀\r2,Ærø\n".encode())

    assert first_invalid_utf8(path, block_bytes) is None


@pytest.mark.parametrize("block_bytes", BLOCKS)
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_the_bad_byte_is_named_by_line_and_character(
    tmp_path: Path, block_bytes: int, ending: str
) -> None:
    # Given a Latin-1 "é" on the third line, after multi-byte characters on the same line
    lines = ["id,name", "1,Zoë 😀", "2,"]
    data = ending.join(lines).encode() + b"Jos\xe9" + ending.encode() + b"3,x"

    found = first_invalid_utf8(written(tmp_path, data), block_bytes)

    assert found == InvalidUtf8(3, 6, 0xE9, "invalid continuation byte")


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_a_byte_order_mark_is_no_character(tmp_path: Path, block_bytes: int) -> None:
    path = written(tmp_path, b"\xef\xbb\xbfid,n\xe9\n")

    assert first_invalid_utf8(path, block_bytes) == InvalidUtf8(
        1, 5, 0xE9, "invalid continuation byte"
    )


def test_utf16_is_refused_at_its_first_byte(tmp_path: Path) -> None:
    path = written(tmp_path, "id,name\n".encode("utf-16"))

    assert first_invalid_utf8(path) == InvalidUtf8(1, 1, 0xFF, "invalid start byte")


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_a_character_cut_by_the_end_of_the_file_is_refused(
    tmp_path: Path, block_bytes: int
) -> None:
    path = written(tmp_path, "id\nZoë\n".encode() + "😀".encode()[:2])

    assert first_invalid_utf8(path, block_bytes) == InvalidUtf8(
        3, 1, 0xF0, "unexpected end of data"
    )


def test_require_utf8_names_the_file_and_where_never_the_text(tmp_path: Path) -> None:
    path = written(tmp_path, "email\nJosé@example.com\n".encode("cp1252"))

    with pytest.raises(ContractError) as raised:
        require_utf8(path)

    (problem,) = raised.value.problems
    assert problem.file == str(path)
    assert problem.message == (
        "not a readable UTF-8 CSV file: line 2, character 4 is the byte 0xE9, which is not "
        "UTF-8 (invalid continuation byte); save or export the file as UTF-8"
    )
    assert "Jos" not in str(problem)
