"""One job per output: ``<out>.lock``, held by the job for its whole life.

Two jobs writing the same ``--out`` would share ``<out>.work``: one starting over would
delete the other's checkpoints while its workers still write into them, and count the
other's parts as its own finished chunks. So a job takes an exclusive ``flock`` on
``<out>.lock`` before it reads anything under ``<out>.work``, and a second job on the
same output is refused at once.

The kernel drops the lock when its holder exits, however it ends (``kill -9`` included),
so a lock file left by a killed job holds nothing back. The holder removes the file
while it still holds the lock, and a job that took a lock checks that the path still
names the file it locked (the holder before it may have removed it in between): two jobs
never hold locks on two different files of the same name.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from features.output import OutputPathError, os_reason


class OutputBusyError(OutputPathError):
    """Another job holds the output's lock: it is writing that output now."""


def lock_path(out: Path) -> Path:
    """The lock file of the output ``out``: ``<out>.lock``."""
    return out.with_name(out.name + ".lock")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the lock of the output ``out`` for the block.

    Raises:
        OutputBusyError: another job holds it (this one touched nothing).
        OutputPathError: the lock file cannot be created or locked (naming it, and why).
    """
    path = lock_path(out)
    handle = _acquire(out, path)
    try:
        yield
    finally:
        with suppress(OSError):  # a lock file left behind is harmless (see the module)
            path.unlink()
        os.close(handle)


def held_by_another_job(out: Path) -> bool:
    """Whether a running job holds the lock of the output ``out`` now (without taking it
    or creating the file): a command line refused beside it must leave its summary alone."""
    try:
        handle = os.open(lock_path(out), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: no job holds it
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no lock support: the job itself will say so
        return False
    finally:
        os.close(handle)  # closing drops the shared lock taken just now
    return False


def _acquire(out: Path, path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock."""
    while True:
        handle = _open(path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise OutputBusyError(
                f"{out}: another srl score job is writing this output now (it holds {path}); "
                "wait for it to end, or give another --out"
            ) from None
        except OSError as error:  # ENOLCK: a network file system without lock support
            os.close(handle)
            raise OutputPathError(f"{path}: cannot be locked ({os_reason(error)})") from error
        if _names(path, handle):
            return handle
        os.close(handle)  # its holder removed it as it ended: lock the file now at the path


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise OutputPathError(
            f"{path}: the lock file cannot be created ({os_reason(error)})"
        ) from error


def _names(path: Path, handle: int) -> bool:
    """Whether ``path`` is still the file open as ``handle``."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(handle))
    except FileNotFoundError:
        return False
