"""The batch job's work directory: a manifest, the routed export and one part per finished chunk.

The work directory sits beside the output (``<out>.work``). Its manifest names everything
the output depends on (input files, model, policy, ``as_of``, chunk size, reasons), the
time stamp fixed when the job first started and the checkpoint format (``MANIFEST_FORMAT``).
A job started again with the same inputs by the same code finds the same manifest and only
scores the chunks that have no part yet; any difference, the format included, starts over
with an empty directory. Every file is written under a temporary name and renamed,
so a job killed at any moment leaves finished files or nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.export_end import StrayCut
from features.output import OutputPathError, atomic_write, write_text
from serving.export_chunks import LAYOUT_FILE, ChunkLayout

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
# What a checkpoint holds and means. Bump it with every change to the parts, the rejects
# beside them or the manifest, so that a work directory left by other code starts over
# instead of being resumed. 2: a lead with a set-aside consent, rejection or opportunity
# row is withheld (left out of its part; its rejects rows have an empty rejection_id).
# 3: the rejects carry whether their lead_id names a lead of the chunk (``lead_known``).
# 4: the spilled rows and the rejects carry whether the row was moved away from its lead's
# chunk (``lead_moved``); a rejects row keeps its lead_id only when it is either.
# 5: a row whose lead_id names a lead once stripped of its surrounding spaces reaches that
# lead's chunk and withholds it; its rejects row keeps the id as written.
# 6: the parts carry ``beyond_trained_age``, and the default policy (``default@v3``) routes by it.
# 7: a row whose lead_id names a lead read loosely (``features.text.loose_id``: invisible
# characters, full-width forms and letter case too) reaches that lead's chunk and withholds it.
# 8: routing counts only intent after the rejection, keeps a dated contact of a lead beyond
# the trained age in its reason's program, and times a follow-up rebound to its date
# (``default@v4``).
# 9: a job without ``--as-of`` sets aside the rows dated after a quiet spell of the whole
# export (``features.export_end``), recorded as the manifest's ``stray_cut``; the parts
# carry their day summary of event times; the manifest keeps the first start's clock, which
# decides what is dated in the future in every chunk.
# 10: the parts carry the loader's row notes as counts (``features.row_notes``), which the
# job adds up over its chunks.
MANIFEST_FORMAT = 10
SPILL_DIRECTORY = "spill"
MODEL_DIRECTORY = "model"
_PART = "part-{:06d}.arrow"
_REJECTS = "rejects-{:06d}.arrow"


@dataclass(frozen=True)
class JobIdentity:
    """Everything the output depends on; a resumed job must match it exactly.

    Attributes:
        input_fingerprint: SHA-256 of the export's files.
        model_uri: the model reference as given.
        model_version: the version it resolved to.
        model_fingerprint: SHA-256 of the model's saved files.
        as_of: the requested scoring moment (ISO 8601), or None for the export's end.
        chunk_leads: leads per chunk.
        policy: the routing policy's ``name@version``.
        policy_fingerprint: SHA-256 of the policy's validated content.
        reasons: ``none``, ``top`` or ``all``.
        engine: ``local`` or ``spark``.
    """

    input_fingerprint: str
    model_uri: str
    model_version: str
    model_fingerprint: str
    as_of: str | None
    chunk_leads: int
    policy: str
    policy_fingerprint: str
    reasons: str
    engine: str


@dataclass(frozen=True)
class Manifest:
    """The work directory's identity and the run's fixed facts.

    Attributes:
        identity: what the output depends on.
        scored_at_us: the job's time stamp (µs, UTC), fixed at the first start.
        as_of_us: the resolved scoring moment, once known.
        format: the checkpoint format of the code that wrote it (``MANIFEST_FORMAT``).
        stray_cut: the export's rows dated after a quiet spell, set aside once found (the
            job then scores at the end before them).
        clock_us: this machine's clock at the job's first start, which decides what is
            dated in the future in every chunk, resumed or not.
    """

    identity: JobIdentity
    scored_at_us: int
    as_of_us: int | None = None
    format: int = MANIFEST_FORMAT
    stray_cut: StrayCut | None = None
    clock_us: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Manifest:
        """Rebuild from ``to_dict`` output."""
        identity = JobIdentity(**data["identity"])
        stray = data.get("stray_cut")
        return Manifest(
            identity,
            int(data["scored_at_us"]),
            data.get("as_of_us"),
            data["format"],
            None if stray is None else StrayCut(**stray),
            data.get("clock_us"),
        )


class WorkDirectory:
    """Checkpoints of one batch job, beside its output."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def beside(out: Path) -> WorkDirectory:
        """The work directory of the output file ``out`` (``<out>.work``)."""
        return WorkDirectory(out.with_name(out.name + ".work"))

    def open(self, identity: JobIdentity, scored_at_us: int, clock_us: int) -> Manifest:
        """Resume a matching job, or start over when anything differs.

        Args:
            identity: this run's identity.
            scored_at_us: the time stamp to use if the job starts now.
            clock_us: this machine's clock now, kept if the job starts now.

        Returns:
            The manifest in force (its ``scored_at_us`` is the first start's on a resume).
        """
        existing = self.manifest()
        if (
            existing is not None
            and existing.identity == identity
            and existing.format == MANIFEST_FORMAT
        ):
            logger.info(
                "batch resuming work_dir=%s finished_chunks=%d", self.path, len(self.finished())
            )
            return existing
        if self.path.exists():
            self._check_ours()
            logger.info("batch starting over work_dir=%s (inputs or format changed)", self.path)
            self.remove()
        # Owner only: the routed export it will hold keeps ids and every column read
        self.path.mkdir(mode=0o700, parents=True)
        manifest = Manifest(identity, scored_at_us, clock_us=clock_us)
        self.save(manifest)
        return manifest

    def check_usable(self) -> None:
        """Check, before any work, that the path is free or holds a batch work directory.

        Raises:
            OutputPathError: something else is there (it is never deleted).
        """
        if self.path.exists():
            self._check_ours()

    def _check_ours(self) -> None:
        """Refuse to delete a directory that is not a batch work directory.

        Ours holds only the job's own entries; a temporary ``.<name>.partial`` left by an
        interrupted write counts as ours too, any other name (``.git``, a photo) does not.
        """
        refusal = OutputPathError(
            f"{self.path}: exists and is not a batch work directory; move it away"
        )
        if not self.path.is_dir():
            raise refusal
        known = {MANIFEST_FILE, SPILL_DIRECTORY, MODEL_DIRECTORY}
        strangers = [
            p.name
            for p in self.path.iterdir()
            if p.name not in known
            and not p.name.startswith("parts-")
            and not (p.name.startswith(".") and p.name.endswith(".partial"))
        ]
        if strangers:
            raise refusal

    def manifest(self) -> Manifest | None:
        """The manifest on disk, or None when there is none or it is unreadable."""
        try:
            data = json.loads((self.path / MANIFEST_FILE).read_text(encoding="utf-8"))
            return Manifest.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, manifest: Manifest) -> None:
        """Write the manifest atomically."""
        text = json.dumps(manifest.to_dict(), indent=2)
        atomic_write(self.path / MANIFEST_FILE, lambda temporary: write_text(temporary, text))

    @property
    def spill(self) -> Path:
        """Where the routed export lives."""
        return self.path / SPILL_DIRECTORY

    @property
    def model(self) -> Path:
        """Where the job's copy of the model lives (what every worker loads)."""
        return self.path / MODEL_DIRECTORY

    def layout(self) -> ChunkLayout | None:
        """The routed export's layout, if routing finished."""
        return ChunkLayout.load(self.spill) if (self.spill / LAYOUT_FILE).is_file() else None

    def publish(self, staged: Path, target: Path) -> None:
        """Move a fully written directory into place in one step."""
        os.replace(staged, target)

    def install_model(self, snapshot: Path) -> None:
        """Copy the job's model into the work directory once (what every worker loads)."""
        if self.model.is_dir():
            return
        staged = self.staging("model")
        shutil.copytree(snapshot, staged, dirs_exist_ok=True)
        self.publish(staged, self.model)

    def staging(self, name: str) -> Path:
        """A fresh temporary directory inside the work directory (emptied if left over)."""
        staged = self.path / f".{name}.partial"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        return staged

    def discard(self, staged: Path) -> None:
        """Remove a temporary directory of ``staging`` that will not be published."""
        shutil.rmtree(staged, ignore_errors=True)

    def parts(self, as_of_us: int) -> Path:
        """The directory of parts scored at ``as_of_us``."""
        path = self.path / f"parts-{as_of_us}"
        path.mkdir(exist_ok=True)
        return path

    def finished(self, as_of_us: int | None = None) -> set[int]:
        """The chunks that have a part (scored at ``as_of_us``, default: the manifest's)."""
        moment = as_of_us if as_of_us is not None else self._as_of()
        if moment is None:
            return set()
        folder = self.path / f"parts-{moment}"
        return {int(p.stem.split("-")[1]) for p in folder.glob("part-*.arrow")}

    def _as_of(self) -> int | None:
        manifest = self.manifest()
        return None if manifest is None else manifest.as_of_us

    def drop_parts_except(self, as_of_us: int) -> None:
        """Remove parts scored at any other moment."""
        for folder in self.path.glob("parts-*"):
            if folder.name != f"parts-{as_of_us}":
                shutil.rmtree(folder, ignore_errors=True)

    def remove(self) -> None:
        """Delete the work directory (after the output is in place).

        The manifest goes first: a directory left half removed (the job killed meanwhile)
        has none, so it is started over, never resumed from what is left of it.
        """
        with contextlib.suppress(OSError):
            (self.path / MANIFEST_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)


def write_part(
    folder: Path, chunk: int, scored: pa.Table, rejects: pa.Table, meta: dict[str, Any]
) -> None:
    """Checkpoint one finished chunk: its rejects, then its part (the part marks it done)."""
    _write_ipc(folder / _REJECTS.format(chunk), rejects, {})
    _write_ipc(folder / _PART.format(chunk), scored, meta)


def read_part(folder: Path, chunk: int) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """A finished chunk's scored rows, rejected rows and metadata."""
    scored, meta = _read_ipc(folder / _PART.format(chunk))
    rejects, _ = _read_ipc(folder / _REJECTS.format(chunk))
    return scored, rejects, meta


def _write_ipc(path: Path, table: pa.Table, meta: dict[str, Any]) -> None:
    schema = table.schema.with_metadata({"srl": json.dumps(meta)})

    def write(temporary: Path) -> None:
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(table.replace_schema_metadata(schema.metadata))

    atomic_write(path, write)


def _read_ipc(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    with pa.OSFile(str(path), "rb") as source:
        table = pa.ipc.open_file(source).read_all()
    meta = json.loads((table.schema.metadata or {}).get(b"srl", b"{}"))
    return table.replace_schema_metadata(None), meta
