"""Parquet files damaged as storage, a transfer or a wrong writer can damage them without
anything else noticing: a flipped byte in a checksummed page, text that is not UTF-8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def damage_a_page(path: Path, column: int = 0) -> None:
    """Rewrite ``path`` with page checksums, then flip a byte inside the pages of
    ``column`` in the first row group (its footer stays intact, so the file still opens)."""
    pq.write_table(pq.read_table(path), path, write_page_checksum=True)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(column)
    at = chunk.data_page_offset + chunk.total_compressed_size - 3
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def with_bytes_not_utf8(path: Path, column: str, rows: list[int]) -> None:
    """Rewrite ``path`` with the text of ``column`` at ``rows`` (0-based) holding bytes that
    are not UTF-8 (an encoded surrogate, as a writer in another encoding leaves), which
    pyarrow writes and reads back without a word."""
    table = pq.read_table(path)
    values = [str(v).encode() for v in table.column(column).to_pylist()]
    for row in rows:
        values[row] = b"L\xed\xa0\x80" + values[row]
    offsets = np.cumsum([0, *(len(v) for v in values)]).astype(np.int32)
    buffers = [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))]
    text = pa.Array.from_buffers(pa.string(), len(values), buffers)
    table = table.set_column(table.schema.get_field_index(column), column, text)
    pq.write_table(table, path)
