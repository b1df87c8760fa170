"""A Parquet file written with page checksums, then one byte of a data page flipped: what
storage or a transfer can do to a file without anything else noticing."""

from __future__ import annotations

from pathlib import Path

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
