"""Stopping the batch job on a signal as on Ctrl-C: SIGTERM (``timeout``, systemd,
``kill <pid>``) and SIGHUP (the terminal went away) raise ``JobStopped`` in the job's main
process, so the job stops through its one failure path: the worker pool is shut down and
its workers ended, a failed summary says which signal stopped the job, the checkpoints
are kept for a rerun to resume, and nothing is published at the output paths.

Ctrl-C (SIGINT) keeps Python's ``KeyboardInterrupt``; the job treats both alike
(``stopped_by``). Only the main process installs the handlers: the spawned workers keep
the default, dying on the SIGTERM the job sends them, or the kernel sends them when the
job's process ends without a word (``kill -9``, the out-of-memory killer; Linux,
``end_with_parent``).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: Signals that stop a command or a job as Ctrl-C does: ``timeout``, schedulers,
#: ``docker stop`` and ``kill <pid>`` send SIGTERM; a closed terminal sends SIGHUP (which
#: Windows lacks).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

#: How long a batch worker whose job has ended waits for the kernel's SIGTERM to end it
#: before it exits by itself.
PARENT_GONE_GRACE_SECONDS = 5.0


def handle_stop_signals(handler: Any) -> dict[int, Any]:
    """Put ``handler`` (a function, or ``signal.SIG_DFL``) on each of ``STOP_SIGNALS`` that
    is not ignored: one ignored when the process started (``nohup``) stays ignored.

    Returns:
        Each signal's handler before, to put back.
    """
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(number, handler)
    return previous


def end_with_parent(parent_pid: int, grace_seconds: float = PARENT_GONE_GRACE_SECONDS) -> None:
    """Have the kernel send this process SIGTERM when the process that started it ends.

    Called first in each worker: a job killed by SIGKILL (``kill -9 <pid>``, the
    out-of-memory killer) cannot end its workers itself, and they would wait for work for
    ever, holding the job's log pipe open. Linux only; elsewhere, and if the kernel refuses,
    the worker carries on as before (a warning says so). Whatever the platform, a watch
    thread also ends the worker ``grace_seconds`` after its parent is gone, should that
    SIGTERM not have ended it by then (``_watch_parent``): long enough for the worker's own
    graceful stop.
    """
    _watch_parent(grace_seconds)
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        logger.warning("worker will not end with its job if the job is killed: %s", reason)
        return
    if os.getppid() != parent_pid:  # the job ended before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(grace_seconds: float) -> None:
    """Start a daemon thread that ends this process once the process that spawned it is
    gone (its sentinel, a pipe only that process writes to, reads end-of-file).

    The parent-death signal covers a job killed outright, but a signal can be held or lost
    (one that arrives just as a handler is being swapped back is dropped by Python), and a
    worker it misses waits for work for ever: this catches it, whatever happened to the
    signal.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing
        return
    watch = threading.Thread(
        target=_exit_when_gone,
        args=(parent.sentinel, grace_seconds),
        name="srl-parent-watch",
        daemon=True,
    )
    watch.start()


def _exit_when_gone(sentinel: int, grace_seconds: float) -> None:
    """Wait for ``sentinel`` to close, give SIGTERM its grace, then exit as it would."""
    multiprocessing.connection.wait([sentinel])
    time.sleep(grace_seconds)
    os._exit(128 + signal.SIGTERM)


class JobStopped(BaseException):
    """The job was asked to stop by a signal.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` (a
    failed chunk is recorded and the next one scored) takes it for a failure to carry on
    from.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """``128 + signal number``, as a shell reports a process ended by the signal."""
        return 128 + self.signum

    @property
    def message(self) -> str:
        """What the failed summary says."""
        return (
            f"{self}; nothing was published; run again (the local engine resumes from its "
            "checkpoints, the Spark engine starts over)"
        )


def stopped_by(error: BaseException) -> JobStopped | None:
    """The stop ``error`` stands for (Ctrl-C is a stop by SIGINT), or None for a failure."""
    if isinstance(error, JobStopped):
        return error
    if isinstance(error, KeyboardInterrupt):
        return JobStopped(signal.SIGINT)
    return None


class _StopHandler:
    """The signal handler of a running job, and whether its files are being published."""

    def __init__(self) -> None:
        self.signalled: int | None = None
        self.publishing = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signalled is not None:  # stopping already: let the clean-up run
            return
        self.signalled = signum
        if not self.publishing:
            raise JobStopped(signum)


_HANDLERS: list[_StopHandler] = []


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise ``JobStopped`` in this process on SIGTERM or SIGHUP during the block.

    Only the first signal raises: a second one, while the job stops, would interrupt the
    clean-up (ending the workers, writing the summary), so it is ignored. A signal that is
    ignored already (``nohup``) stays ignored; outside the main thread nothing changes
    (Python runs handlers there only). The previous handlers are restored on leaving.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _StopHandler()
    previous = handle_stop_signals(handler)
    _HANDLERS.append(handler)
    try:
        yield
    finally:
        _HANDLERS.remove(handler)
        for number, before in previous.items():
            signal.signal(number, before if before is not None else signal.SIG_DFL)


def stop_behind(error: BaseException) -> JobStopped | None:
    """The stop (a signal's ``JobStopped``, Ctrl-C) that ``error`` was raised while handling,
    if any: the handler raises it wherever the job stands, and a clean-up on the way out
    may fail and raise its own error over it (PySpark's collect, with a broken pipe to the
    JVM)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        stop = stopped_by(current)
        if stop is not None:
            return stop
        current = current.__cause__ or current.__context__
    return None


def signal_received() -> JobStopped | None:
    """The stop a signal asked for during the running job, if one came: what a failure
    raised while the job was stopping stands for, however the library in the way (PySpark's
    collect) reported it, chained to the ``JobStopped`` or not."""
    handler = _HANDLERS[-1] if _HANDLERS else None
    if handler is None or handler.signalled is None:
        return None
    return JobStopped(handler.signalled)


@contextmanager
def publishing() -> Iterator[None]:
    """Finish the block even if SIGTERM or SIGHUP comes: the job's files are being moved
    into place and its work directory removed.

    A stop there would leave some files new under a failed summary, or a work directory
    half removed; the block takes milliseconds, and the job ends right after it.
    """
    handler = _HANDLERS[-1] if _HANDLERS else None
    if handler is None:
        yield
        return
    handler.publishing = True
    try:
        yield
    finally:
        handler.publishing = False
        if handler.signalled is not None:
            logger.warning(
                "batch stop_signal=%s came while publishing; the job finishes",
                signal.Signals(handler.signalled).name,
            )
