"""Split an export into chunks of leads on disk, so that each chunk is checked and scored alone.

Chunk ``c`` holds the leads at positions ``[c * chunk_leads, (c + 1) * chunk_leads)`` of the
leads file and every row of the other tables that points at one of them. Validating a
chunk with the loader's own checks (``features.loading.build_export``) then finds the same
bad rows as loading the whole export would, because rows that the loader judges together
are always put in the same chunk:

- rows whose ``lead_id`` is unknown (or missing) are spread over the chunks by row number;
  they fail the same reference check in whichever chunk they land, except that an id
  naming a lead once read loosely (``features.text.loose_id``: without surrounding spaces
  or invisible characters, full-width forms and capitals read as ASCII small letters)
  goes to that lead's chunk, where a fail-closed row withholds the lead
  (``chunk_scoring.LeadNames``);
- rows sharing a primary key (a duplicate, wherever in the file) all go to the chunk of
  the key's first row, so the duplicate check sees all of them. A row of a real lead that
  this takes away from its lead's chunk is marked (``MOVED_COLUMN``): its chunk does not
  know its lead, and the rejects file still names the lead (``chunk_scoring.FailClosed``).

Each table file is decoded once, in batches. A batch is staged as an Arrow IPC file while
its rows' chunks are worked out (leads by position, other rows by looking their
``lead_id`` up in the leads, ``serving.key_hashing.KeyIndex``); once the whole table is
known (repeated keys need it), every staged batch is memory-mapped and rewritten with one
record batch per chunk, so reading a chunk back maps only that chunk's rows. Memory holds
a batch plus 14 bytes per row (its chunk, whether its lead was found and whether the row
was moved, the hash of its primary key).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.config import FeatureConfig
from features.contract import TABLES, TABLES_BY_NAME
from features.text import arrow_loose_ids, arrow_texts
from features.timestamps import (
    MISSING_TIME,
    latest_believable_time,
    microseconds_up,
    parse_timestamps,
    to_microseconds,
)
from serving.export_reading import ExportFiles, available_cpus, iter_batches, timestamp_columns
from serving.key_hashing import KeyIndex, repeated, string_hashes

logger = logging.getLogger(__name__)

ROW_COLUMN = "_row"
#: Whether a row names a lead of the leads file but was routed to another chunk than its
#: lead's, because its primary key repeats (always false for the leads table's own rows).
MOVED_COLUMN = "_moved"
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
        warnings: notes on the export as a whole (``ExportFiles.warnings``), which every
            chunk reports with its own.
    """

    chunk_leads: int
    n_leads: int
    n_chunks: int
    rows: dict[str, int]
    latest_us: int | None
    spills: dict[str, tuple[SpillFile, ...]]
    warnings: tuple[str, ...] = ()

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
        warnings = tuple(data.pop("warnings", ()))
        return ChunkLayout(spills=spills, warnings=warnings, **data)


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
    names = [t.name for t in TABLES if t.name in export.files]
    leads = _stage(export, config, "leads", directory, _Positions(chunk_leads))
    router = _Router(_column(leads, "lead_id"), chunk_leads)
    staged = {"leads": leads} | {
        t: _stage(export, config, t, directory, router) for t in names if t != "leads"
    }
    spills = {t: _route(s, directory) for t, s in staged.items()}
    rows = {t: s.rows for t, s in staged.items()}
    latest = max((s.latest_us for s in staged.values() if s.latest_us is not None), default=None)
    layout = ChunkLayout(
        chunk_leads, leads.rows, router.n_chunks, rows, latest, spills, export.warnings
    )
    layout.save(directory)
    return layout


def read_chunk(directory: Path, layout: ChunkLayout, chunk: int) -> dict[str, pa.Table]:
    """The raw rows of one chunk per table, in file order, with their row number (``_row``)
    and whether they were moved away from their lead's chunk (``_moved``)."""
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


def first_lead_rows(directory: Path, layout: ChunkLayout, lead_ids: list[str]) -> dict[str, int]:
    """The first row (0-based) of each of ``lead_ids`` in the leads file; ids not there are
    left out (``chunk_scoring.LeadLocator``). Reads the spilled leads' ids, one file at a
    time."""
    found: dict[str, int] = {}
    if not lead_ids:
        return found
    wanted = pa.array(lead_ids, pa.string())
    for spill in layout.spills["leads"]:
        batch = _read_ipc(directory / spill.name)
        texts, _ = arrow_texts(batch.column("lead_id"))
        hits = pc.is_in(texts, value_set=wanted)
        rows = batch.column(ROW_COLUMN).filter(hits).to_pylist()
        for lead, row in zip(texts.filter(hits).to_pylist(), rows, strict=True):
            found[lead] = min(row, found.get(lead, row))
    return found


@dataclass
class _Staged:
    """A table decoded once into staged batch files, with every row's chunk.

    Attributes:
        found: whether each row's lead is in the leads file (false for the leads' rows).
        moved: whether each row was routed away from its lead's chunk (``MOVED_COLUMN``).
    """

    table: str
    files: list[Path]
    chunks: np.ndarray
    found: np.ndarray
    moved: np.ndarray
    rows: int = 0
    latest_us: int | None = None


class _Positions:
    """Chunks of the leads table: by position (its lead index is built after staging)."""

    def __init__(self, chunk_leads: int) -> None:
        self.chunk_leads = chunk_leads

    def chunks(self, batch: pa.Table, first_row: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's chunk, and whether it points at a lead (never: these are the leads)."""
        rows = np.arange(first_row, first_row + batch.num_rows)
        return (rows // self.chunk_leads).astype(np.int32), np.zeros(len(rows), dtype=bool)


class _Router:
    """Chunks of the other tables' rows: the chunk of the lead they point at."""

    def __init__(self, lead_ids: pa.ChunkedArray, chunk_leads: int) -> None:
        self.lead_ids = lead_ids.combine_chunks()
        self.index = KeyIndex(self.lead_ids)
        self._loose_index: KeyIndex | None = None
        self.chunk_leads = chunk_leads
        self.n_chunks = max(1, -(-len(lead_ids) // chunk_leads))

    def chunks(self, batch: pa.Table, first_row: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's chunk (rows of unknown leads are spread by row number), and whether
        its lead is in the leads file.

        A row whose ``lead_id`` names no lead as written, but names one read loosely
        (``features.text.loose_id``), goes to that lead's chunk: the loader sets it aside
        there, and the lead is withheld when the row would have decided its consent or its
        open rejection (``chunk_scoring.FAIL_CLOSED_TABLES``), in both engines.
        """
        texts = arrow_texts(batch.column("lead_id"))[0]
        position = self.index.positions_of(texts)
        unknown = np.flatnonzero((position < 0) & np.asarray(texts.is_valid()))
        if unknown.size:
            loose = arrow_loose_ids(texts.take(pa.array(unknown)))
            position[unknown] = self._loosely().positions_of(loose)
        spread = np.arange(first_row, first_row + batch.num_rows) % self.n_chunks
        found = position >= 0
        return np.where(found, position // self.chunk_leads, spread).astype(np.int32), found

    def _loosely(self) -> KeyIndex:
        """The leads' ids read loosely, indexed once they are first needed (most exports
        never need them)."""
        if self._loose_index is None:
            self._loose_index = KeyIndex(arrow_loose_ids(self.lead_ids))
        return self._loose_index


@dataclass(frozen=True)
class _StagedBatch:
    """One batch written to its staging file, with its rows' chunks, whether their lead was
    found, and their key hashes."""

    path: Path
    rows: int
    chunks: np.ndarray
    found: np.ndarray
    hashes: np.ndarray | None
    latest_us: list[int]


def _stage(
    export: ExportFiles,
    config: FeatureConfig,
    table: str,
    directory: Path,
    router: _Positions | _Router,
) -> _Staged:
    """Decode a table once: stage its batches, work out their chunks and key hashes.

    Batches are decoded in order and worked on by a few threads (Arrow and the hash
    look-ups release the GIL); at most a few batches are in memory at once.
    """
    key = TABLES_BY_NAME[table].primary_key
    columns = export.columns(table, config)
    stamps = timestamp_columns(table, columns)
    threads = available_cpus()
    batches: list[_StagedBatch] = []
    pending: deque[Future[_StagedBatch]] = deque()
    first = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for number, batch in enumerate(iter_batches(export.files[table], columns)):
            path = directory / f"staged-{table}-{number:05d}.arrow"
            pending.append(pool.submit(_stage_batch, batch, path, first, router, key, stamps))
            first += batch.num_rows
            while len(pending) > threads:
                batches.append(pending.popleft().result())
        batches += [future.result() for future in pending]
    return _collect(table, key, batches)


def _stage_batch(
    batch: pa.Table,
    path: Path,
    first_row: int,
    router: _Positions | _Router,
    key: str | None,
    stamps: list[str],
) -> _StagedBatch:
    _write_ipc(path, batch)
    hashes = None if key is None else _key_hashes(batch.column(key))
    latest = [t for c in stamps if (t := latest_timestamp_us(batch.column(c))) is not None]
    chunks, found = router.chunks(batch, first_row)
    return _StagedBatch(path, batch.num_rows, chunks, found, hashes, latest)


def _collect(table: str, key: str | None, batches: list[_StagedBatch]) -> _Staged:
    """The table's staged batches as one ``_Staged``, repeated keys gathered."""
    rows = sum(b.rows for b in batches)
    chunks = np.empty(rows, dtype=np.int32)
    found = np.empty(rows, dtype=bool)
    hashes = np.empty(rows, dtype=np.uint64)
    first = 0
    for batch in batches:
        chunks[first : first + batch.rows] = batch.chunks
        found[first : first + batch.rows] = batch.found
        if batch.hashes is not None:
            hashes[first : first + batch.rows] = batch.hashes
        first += batch.rows
    latest = [t for b in batches for t in b.latest_us]
    moved = np.zeros(rows, dtype=bool)
    files = [b.path for b in batches]
    staged = _Staged(table, files, chunks, found, moved, rows, max(latest, default=None))
    batches.clear()
    if key is not None:
        _gather_repeated_keys(staged, key, hashes)
    return staged


def _key_hashes(column: pa.ChunkedArray) -> np.ndarray:
    """Hashes of a key column as text (``features.text``), missing keys marked by a hash of 0."""
    text, _ = arrow_texts(column)
    hashes = string_hashes(text)
    hashes[~np.asarray(text.is_valid())] = 0
    return hashes


def _gather_repeated_keys(staged: _Staged, key: str, hashes: np.ndarray) -> None:
    """Move every row whose key repeats to the chunk of the key's first row (marking the
    rows of a found lead that leave their lead's chunk)."""
    suspects = repeated(hashes)
    suspects = suspects[suspects != 0]
    if suspects.size == 0:
        return
    rows = np.flatnonzero(np.isin(hashes, suspects))
    keys = _column(staged, key, rows)
    first_chunk: dict[str, int] = {}
    for row, value in zip(rows.tolist(), keys.to_pylist(), strict=True):
        if value is not None:
            chunk = first_chunk.setdefault(value, int(staged.chunks[row]))
            staged.moved[row] = bool(staged.found[row]) and chunk != staged.chunks[row]
            staged.chunks[row] = chunk


def _column(staged: _Staged, name: str, rows: np.ndarray | None = None) -> pa.ChunkedArray:
    """A column of a staged table as text (``features.text``; only ``rows``, file positions,
    when given)."""
    parts: list[pa.Array] = []
    first = 0
    for path in staged.files:
        batch = _read_ipc(path)
        column, _ = arrow_texts(batch.column(name))
        if rows is None:
            parts.append(column)
        else:
            mine = rows[(rows >= first) & (rows < first + batch.num_rows)] - first
            parts.append(column.take(pa.array(mine)))
        first += batch.num_rows
    return pa.chunked_array(parts, type=pa.string())


def _route(staged: _Staged, directory: Path) -> tuple[SpillFile, ...]:
    """Rewrite each staged batch with one record batch per chunk (in parallel threads)."""
    starts = np.cumsum([0] + [_rows(p) for p in staged.files])[:-1]
    jobs = list(zip(staged.files, starts.tolist(), strict=True))

    def route_one(job: tuple[Path, int]) -> SpillFile:
        path, first = job
        batch = _read_ipc(path)
        name = path.name.removeprefix("staged-")
        rows = slice(first, first + batch.num_rows)
        spill = _write_routed(
            batch, staged.chunks[rows], staged.moved[rows], first, directory / name
        )
        path.unlink()
        return spill

    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        spills = tuple(pool.map(route_one, jobs))
    logger.info("batch routed table=%s rows=%d files=%d", staged.table, staged.rows, len(spills))
    return spills


def _write_ipc(path: Path, batch: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_table(batch)


def _read_ipc(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _rows(path: Path) -> int:
    reader = pa.ipc.open_file(pa.memory_map(str(path)))
    return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _write_routed(
    batch: pa.Table, chunks: np.ndarray, moved: np.ndarray, first_row: int, path: Path
) -> SpillFile:
    rows = pa.array(np.arange(first_row, first_row + len(batch), dtype=np.int64))
    order = np.argsort(chunks, kind="stable")
    numbered = batch.append_column(ROW_COLUMN, rows).append_column(MOVED_COLUMN, pa.array(moved))
    routed = numbered.take(pa.array(order)).combine_chunks()
    present, starts = np.unique(chunks[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, routed.schema) as writer:
        for index in range(len(present)):
            part = routed.slice(bounds[index], bounds[index + 1] - bounds[index])
            writer.write_batch(part.combine_chunks().to_batches()[0])
    return SpillFile(path.name, tuple(int(c) for c in present))


def latest_timestamp_us(column: pa.ChunkedArray) -> int | None:
    """The latest value of a timestamp column that the loader accepts (µs, UTC).

    As in the loader, a value that does not parse, or lies ahead of this machine's clock by
    more than ``features.timestamps.CLOCK_SKEW_ALLOWED``, is no event (its row is set aside)
    and never marks the export's end.
    """
    believable = latest_believable_time().value // 1000
    if pa.types.is_timestamp(column.type):
        counts = pc.cast(pc.drop_null(column), pa.int64()).to_numpy()
        values = microseconds_up(counts, column.type.unit)
    else:
        parsed, _ = parse_timestamps(column.to_pandas())
        values = to_microseconds(parsed)
        values = values[values != MISSING_TIME]
    values = values[values <= believable]
    return int(values.max()) if values.size else None
