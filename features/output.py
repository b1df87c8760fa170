"""Writing result files: output paths checked up front, and never a partial file at a final path.

Every command that writes files checks its output paths before any expensive work
(``check_output_file``, ``check_output_directory``): a path that cannot be used is an
``OutputPathError`` naming it and why. Files are then written under a temporary name
beside their target and moved into place in one step (``atomic_write``, or
``StagedFiles`` for several files that belong together); a write that fails (a full disk,
a directory in the way) is an ``OutputWriteError`` naming the file, and leaves the previous
file as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

import pandas as pd

TABLE_SUFFIXES = (".parquet", ".csv")
#: Arrow reports a failed write as ``... Detail: [errno 28] No space left on device``.
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


class OutputPathError(ValueError):
    """An output path that cannot be used (wrong extension, a directory or file in the way,
    no permission); the message names the path and why. Nothing has been written."""


class OutputWriteError(OSError):
    """Writing an output file failed; the previous file at its path is left as it was.

    Attributes:
        path: the file that could not be written.
        reason: why, in the operating system's words (``No space left on device``).
        kind: the underlying error's type name (``OSError``, ``IsADirectoryError``).
    """

    def __init__(self, path: Path, reason: str, kind: str = "OSError", code: int | None = None):
        super().__init__(code, reason)
        self.path = path
        self.reason = reason
        self.kind = kind

    @staticmethod
    def of(path: Path, error: OSError) -> OutputWriteError:
        """The write error for ``path`` that ``error`` caused."""
        return OutputWriteError(path, os_reason(error), type(error).__name__, error.errno)

    def __reduce__(self) -> tuple[type[OutputWriteError], tuple[Path, str, str, int | None]]:
        return (OutputWriteError, (self.path, self.reason, self.kind, self.errno))

    def __str__(self) -> str:
        return f"could not write {self.path}: {self.reason}"


def os_reason(error: OSError) -> str:
    """Why an operating-system call failed, in the system's words (``File too large``)."""
    failed = _first_failed_copy(error)
    if failed is not None:
        return str(failed[2])
    if isinstance(error, shutil.Error):
        return str(error)
    if error.errno:
        return os.strerror(error.errno)
    if error.strerror:
        return error.strerror
    found = _ERRNO_IN_TEXT.search(str(error))
    return os.strerror(int(found.group(1))) if found else str(error)


def describe_os_error(error: OSError) -> str:
    """``<path>: <reason>`` for a failed file operation (the reason alone when no path)."""
    if isinstance(error, OutputWriteError):
        return str(error)
    failed = _first_failed_copy(error)
    if failed is not None:
        return f"could not write {failed[1]}: {failed[2]}"
    if error.filename is not None:
        return f"{error.filename}: {os_reason(error)}"
    return os_reason(error)


def _first_failed_copy(error: OSError) -> tuple[str, str, str] | None:
    """``(source, target, why)`` of the first file a ``shutil`` tree copy failed on."""
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list):
        copies = error.args[0]
        return tuple(copies[0]) if copies else None
    return None


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to ``path`` (the writer ``atomic_write`` and ``StagedFiles`` call)."""
    path.write_text(text, encoding="utf-8")


def check_table_path(path: str | Path) -> Path:
    """The output path, if its extension names a supported format (else OutputPathError)."""
    return _check_suffix(Path(path), TABLE_SUFFIXES)


def _check_suffix(target: Path, suffixes: tuple[str, ...]) -> Path:
    if target.suffix not in suffixes:
        raise OutputPathError(f"{target}: output must end in {' or '.join(suffixes)}")
    return target


def check_output_file(path: str | Path, suffixes: tuple[str, ...] | None = TABLE_SUFFIXES) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Args:
        path: the file to write.
        suffixes: the extensions allowed (None: any).

    Returns:
        The path.

    Raises:
        OutputPathError: a wrong extension, a directory at ``path``, a parent that is a
            file, or a folder this process may not write in.
    """
    target = Path(path) if suffixes is None else _check_suffix(Path(path), suffixes)
    if target.is_dir():
        raise OutputPathError(f"{target}: is a directory, so the file cannot be written there")
    _check_folder(target, target.parent)
    return target


def check_output_directory(path: str | Path) -> Path:
    """Check, before any work, that files can be written into the directory ``path``.

    Raises:
        OutputPathError: ``path`` is a file or a broken symbolic link, a parent is a file,
            or no permission.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{target}: exists and is not a directory")
    if target.is_symlink() and not target.exists():
        raise OutputPathError(f"{target}: is a symbolic link to a directory that does not exist")
    _check_folder(target, target)
    return target


def _check_folder(target: Path, folder: Path) -> None:
    """``folder``, or its nearest existing ancestor (created on writing), must be a directory
    this process may write in."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{target}: cannot be written, {existing} is not a directory")
    if _on_read_only_file_system(existing):
        raise OutputPathError(
            f"{target}: cannot be written, {existing} is on a read-only file system"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{target}: cannot be written, no permission to write in {existing}")


def _on_read_only_file_system(folder: Path) -> bool:
    """Whether ``folder``'s file system is mounted read-only (which ``os.access`` reports as
    a missing permission, sending the reader after the wrong cause)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temporary files ``StagedFiles.write`` left beside ``path`` when a process
    was killed (``kill -9``) before it could publish or discard them; return them.

    Only names of exactly that form (``.<name>.<8 random characters>.partial``) are taken,
    so another output's temporaries (``.<name>.x.<8>.partial``) stay. Call it only while no
    other process may be writing ``path`` (for the batch job, while it holds the output's
    lock).
    """
    target = Path(path)
    stale = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}\.partial")
    removed = []
    with suppress(FileNotFoundError):
        for entry in target.parent.iterdir():
            if stale.fullmatch(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


class StagedFiles:
    """Files written under temporary names beside their targets, moved into place together.

    Nothing appears at a target before ``publish``. If a write fails, or the block is left
    by an exception, every temporary file is removed and every target keeps its previous
    content::

        with StagedFiles() as staged:
            staged.write(out, write_table)
            staged.remove(old_rejects)
            staged.publish()
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path | None]] = []

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()

    def write(self, path: str | Path, write: Callable[[Path], None]) -> Path:
        """Call ``write`` on a fresh temporary file beside ``path``; return the target.

        Raises:
            OutputWriteError: the temporary file could not be created or written.
        """
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".partial", dir=target.parent
            )
            os.close(handle)
        except OSError as error:
            raise OutputWriteError.of(target, error) from error
        temporary = Path(name)
        self._pending.append((target, temporary))
        try:
            write(temporary)
            os.chmod(temporary, 0o666 & ~_current_umask())
        except OSError as error:
            raise OutputWriteError.of(target, error) from error
        return target

    def remove(self, path: str | Path) -> None:
        """Remove the file at ``path`` when the others are published."""
        self._pending.append((Path(path), None))

    def publish(self) -> None:
        """Move every file into place, in the order written (each move is atomic).

        A stop signal (Ctrl-C, SIGTERM, SIGHUP) arriving meanwhile is held until every file
        has moved (milliseconds): the command then stops with all its files new, never some.

        Raises:
            OutputWriteError: a file could not be moved into place (the ones before it are).
        """
        with _stop_signals_held():
            while self._pending:
                target, temporary = self._pending[0]
                try:
                    if temporary is None:
                        target.unlink(missing_ok=True)
                    else:
                        os.replace(temporary, target)
                except OSError as error:
                    raise OutputWriteError.of(target, error) from error
                self._pending.pop(0)

    def discard(self) -> None:
        """Remove the temporary files not yet published."""
        for _, temporary in self._pending:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
        self._pending = []


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP during the block: one that comes is noted, and raised
    again once the block is over, for the handler in place before it (a command's stop, the
    batch job's, the default). A signal ignored (``nohup``) stays ignored. Python runs
    signal handlers in the main thread only: elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]
    caught: list[int] = []
    previous = {number: signal.getsignal(number) for number in numbers}
    for number, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(number, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before if before is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then move it into place.

    The move is atomic on one file system: readers see the old file or the whole new
    one, never a part. The temporary file is removed if ``write`` fails.

    Raises:
        OutputWriteError: the file could not be written or moved into place.
    """
    with StagedFiles() as staged:
        target = staged.write(path, write)
        staged.publish()
    return target


def _current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as Parquet or CSV (by extension), atomically.

    Raises:
        OutputPathError: the extension is neither ``.parquet`` nor ``.csv``.
        OutputWriteError: the file could not be written (the previous one is kept).
    """
    target = check_table_path(path)

    def write(temporary: Path) -> None:
        if target.suffix == ".parquet":
            frame.to_parquet(temporary, index=False)
        else:
            frame.to_csv(temporary, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")

    return atomic_write(target, write)
