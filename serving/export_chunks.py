"""Split an export into chunks of leads on disk, so that each chunk is checked and scored alone.

Chunk ``c`` holds the leads at positions ``[c * chunk_leads, (c + 1) * chunk_leads)`` of the
leads file and every row of the other tables that points at one of them. Validating a
chunk with the loader's own checks (``features.loading.build_export``) then finds the same
bad rows as loading the whole export would, because rows that the loader judges together
are always put in the same chunk:

- rows whose ``lead_id`` is unknown (or missing) are spread over the chunks by row number;
  they fail the same reference check in whichever chunk they land;
- rows sharing a primary key (a duplicate, wherever in the file) all go to the chunk of
  the key's first row, so the duplicate check sees all of them.

Each table file is read once more to route its rows, in batches; each batch is written as
an Arrow IPC file holding one record batch per chunk, so reading a chunk back memory-maps
only that chunk's rows. Memory stays at a batch plus a few bytes per row of keys.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import FeatureConfig
from features.contract import TABLES, TABLES_BY_NAME
from serving.export_reading import ExportFiles, iter_batches, timestamp_columns
from serving.key_hashing import repeated, string_hashes

logger = logging.getLogger(__name__)

ROW_COLUMN = "_row"
LAYOUT_FILE = "layout.json"


@dataclass(frozen=True)
class SpillFile:
    """One routed input batch: record batch ``i`` of the file holds chunk ``chunks[i]``."""

    name: str
    chunks: tuple[int, ...]


@dataclass(frozen=True)
class ChunkLayout:
    """How an export was split into chunks, and where each table's rows went.

    Attributes:
        chunk_leads: leads per chunk.
        n_leads: rows of the leads file.
        n_chunks: number of chunks.
        rows: rows per table file.
        latest_us: the latest timestamp that parses anywhere in the export (int64 µs), an
            upper bound of the loader's snapshot (which counts valid rows only).
        spills: the routed batch files of each table, in file order.
    """

    chunk_leads: int
    n_leads: int
    n_chunks: int
    rows: dict[str, int]
    latest_us: int | None
    spills: dict[str, tuple[SpillFile, ...]]

    def save(self, directory: Path) -> None:
        """Write the layout as ``layout.json`` in the spill directory."""
        (directory / LAYOUT_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @staticmethod
    def load(directory: Path) -> ChunkLayout:
        """Read ``layout.json`` from a spill directory."""
        data: dict[str, Any] = json.loads((directory / LAYOUT_FILE).read_text(encoding="utf-8"))
        spills = {
            table: tuple(SpillFile(s["name"], tuple(s["chunks"])) for s in files)
            for table, files in data.pop("spills").items()
        }
        return ChunkLayout(spills=spills, **data)


def partition_export(
    export: ExportFiles, config: FeatureConfig, chunk_leads: int, directory: Path
) -> ChunkLayout:
    """Route every row of the export to its chunk and write the routed batches.

    Args:
        export: the located table files.
        config: the model's feature config (it names the custom lead columns to keep).
        chunk_leads: leads per chunk.
        directory: an empty directory for the routed batch files and the layout.
    """
    lead_ids = _key_column(export, "leads", "lead_id")
    n_chunks = max(1, -(-len(lead_ids) // chunk_leads))
    router = _Router(lead_ids, chunk_leads, n_chunks)
    rows: dict[str, int] = {}
    spills: dict[str, tuple[SpillFile, ...]] = {}
    latest: list[int] = []
    for table in (t.name for t in TABLES if t.name in export.files):
        chunks = router.chunks(export, table)
        files, newest = _spill_table(export, config, table, chunks, directory)
        rows[table], spills[table] = len(chunks), files
        latest += newest
        logger.info("batch partitioned table=%s rows=%d files=%d", table, len(chunks), len(files))
    layout = ChunkLayout(chunk_leads, len(lead_ids), n_chunks, rows, max(latest, default=None), spills)
    layout.save(directory)
    return layout


def read_chunk(directory: Path, layout: ChunkLayout, chunk: int) -> dict[str, pa.Table]:
    """The raw rows of one chunk per table, in file order, with their row number (``_row``)."""
    tables: dict[str, pa.Table] = {}
    for table, files in layout.spills.items():
        batches: list[pa.RecordBatch] = []
        schema: pa.Schema | None = None
        for spill in files:
            reader = pa.ipc.open_file(pa.memory_map(str(directory / spill.name)))
            schema = schema or reader.schema
            if chunk in spill.chunks:
                batches.append(reader.get_batch(spill.chunks.index(chunk)))
        assert schema is not None
        tables[table] = pa.Table.from_batches(batches, schema=schema)
    return tables


class _Router:
    """Decides the chunk of every row of every table."""

    def __init__(self, lead_ids: pa.ChunkedArray, chunk_leads: int, n_chunks: int) -> None:
        self.lead_ids = lead_ids.combine_chunks() if lead_ids.num_chunks else pa.array([], pa.string())
        self.chunk_leads = chunk_leads
        self.n_chunks = n_chunks

    def chunks(self, export: ExportFiles, table: str) -> np.ndarray:
        """The chunk of each row of ``table``, as int32."""
        if table == "leads":
            chunks = (np.arange(len(self.lead_ids)) // self.chunk_leads).astype(np.int32)
            keys = pa.chunked_array([self.lead_ids])
        else:
            chunks = self._by_lead(_key_column(export, table, "lead_id"))
            key = TABLES_BY_NAME[table].primary_key
            keys = _key_column(export, table, key) if key else None
        if keys is not None:
            _gather_repeated_keys(keys, chunks)
        return chunks

    def _by_lead(self, lead_id: pa.ChunkedArray) -> np.ndarray:
        position = pc.index_in(lead_id, value_set=self.lead_ids)
        known = np.asarray(position.is_valid())
        lead_position = np.asarray(position.fill_null(0), dtype=np.int64)
        orphan_chunk = np.arange(len(lead_position)) % self.n_chunks
        return np.where(known, lead_position // self.chunk_leads, orphan_chunk).astype(np.int32)


def _gather_repeated_keys(keys: pa.ChunkedArray, chunks: np.ndarray) -> None:
    """Move every row whose key repeats to the chunk of the key's first row."""
    present = np.asarray(keys.is_valid())
    hashes = string_hashes(keys)
    suspects = repeated(hashes[present])
    if suspects.size == 0:
        return
    rows = np.flatnonzero(present & np.isin(hashes, suspects))
    first_chunk: dict[str, int] = {}
    for row, key in zip(rows.tolist(), keys.take(pa.array(rows)).to_pylist(), strict=True):
        chunks[row] = first_chunk.setdefault(key, int(chunks[row]))


def _key_column(export: ExportFiles, table: str, column: str) -> pa.ChunkedArray:
    """A key column of a whole table file as strings (the loader compares keys as text)."""
    parts = [b.column(column) for b in iter_batches(export.files[table], [column])]
    return pc.cast(pa.chunked_array([c for p in parts for c in p.chunks], type=parts[0].type), pa.string())


def _spill_table(
    export: ExportFiles, config: FeatureConfig, table: str, chunks: np.ndarray, directory: Path
) -> tuple[tuple[SpillFile, ...], list[int]]:
    columns = export.columns(table, config)
    stamps = timestamp_columns(table, columns)
    files: list[SpillFile] = []
    latest: list[int] = []
    first = 0
    for number, batch in enumerate(iter_batches(export.files[table], columns)):
        name = f"{table}-{number:05d}.arrow"
        files.append(_write_routed(batch, chunks[first : first + len(batch)], first, directory / name))
        latest += [t for c in stamps if (t := latest_timestamp_us(batch.column(c))) is not None]
        first += len(batch)
    return tuple(files), latest


def _write_routed(batch: pa.Table, chunks: np.ndarray, first_row: int, path: Path) -> SpillFile:
    rows = pa.array(np.arange(first_row, first_row + len(batch), dtype=np.int64))
    order = np.argsort(chunks, kind="stable")
    routed = batch.append_column(ROW_COLUMN, rows).take(pa.array(order)).combine_chunks()
    present, starts = np.unique(chunks[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, routed.schema) as writer:
        for index in range(len(present)):
            part = routed.slice(bounds[index], bounds[index + 1] - bounds[index])
            writer.write_batch(part.combine_chunks().to_batches()[0])
    return SpillFile(path.name, tuple(int(c) for c in present))


def latest_timestamp_us(column: pa.ChunkedArray) -> int | None:
    """The latest value of a timestamp column that parses as the loader parses it (µs, UTC)."""
    if pa.types.is_timestamp(column.type):
        micros = pc.cast(column, pa.timestamp("us", tz=column.type.tz), safe=False)
        latest = pc.max(micros).value
        return None if latest is None else int(latest)
    text = column.to_pandas().astype(object)
    parsed = pd.to_datetime(text.where(text.notna(), None), utc=True, format="ISO8601", errors="coerce")
    latest = parsed.max()
    return None if pd.isna(latest) else int(latest.value // 1000)
