"""SIGINT/SIGTERM for a whole operation: prompt in every phase, never abandoning a recovery.

Python runs signal handlers in the main thread, and only between bytecodes: while the main thread
waits inside the database driver (a statement queued behind a lock) or on a pipe from a child
process, the handler would not run until that wait ends, which can be never. So a watcher thread
reads the signal from ``signal.set_wakeup_fd`` (written by the C-level handler at once) and calls
the registered cancellers: cancel the running statement, kill the running child processes. The
wait then ends, and the Python handler raises :class:`Interrupted` in the main thread.

Around a COMMIT (``begin_deferral``/``end_deferral``) signals are noted and nothing is cancelled
or raised: it happens or not. Once an operation's outcome is decided (its final COMMIT done, or its
recovery begun), ``decide`` makes that permanent for the guard's life: a second Ctrl-C must not
abandon the rollback that the first one started, and a signal in the instants after the final
COMMIT must not turn "applied" into "interrupted" (exit 1 claims the database is as before, which
it no longer is).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during an operation (BaseException: nothing may swallow it)."""


class InterruptState:
    """What one installed guard knows: signals received, cancellers, whether raising is deferred."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._cancellers: list[Callable[[], None]] = []
        self._deferring = 0
        self._decided = False  # the outcome stands: signals are noted, never acted on (see decide)
        self._raised = False  # Interrupted is raised once: the run is ending, later signals are noted
        self._cancelling = threading.Lock()
        self._woken = threading.Event()

    def _note(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if name not in self.received:
            self.received.append(name)
        self._woken.set()

    def _cancel_all(self) -> None:
        with self._cancelling:
            if self._deferring or self._decided or self._raised:
                return
            for cancel in list(self._cancellers):
                with contextlib.suppress(Exception):  # best effort: the raise in the main thread decides
                    cancel()

    @contextlib.contextmanager
    def cancellable(self, cancel: Callable[[], None]) -> Iterator[None]:
        """While the block runs, an interrupt calls ``cancel`` (from another thread: keep it thread-safe)."""
        self._cancellers.append(cancel)
        try:
            yield
        finally:
            self._cancellers.remove(cancel)

    def begin_deferral(self) -> None:
        """Note signals without cancelling or raising until ``end_deferral`` (a COMMIT: it happens or not)."""
        with self._cancelling:
            self._deferring += 1

    def end_deferral(self) -> None:
        self._deferring -= 1

    def decide(self) -> None:
        """The operation's outcome is decided: until the guard is removed, signals are only noted."""
        with self._cancelling:  # a cancel in flight finishes first
            self._decided = True

    def raise_if_interrupted(self) -> None:
        if self.received and not self._deferring and not self._decided and not self._raised:
            self._raised = True
            raise Interrupted(self.received[0])

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake (and raise) at once when a signal arrives."""
        self._woken.wait(seconds)
        self.raise_if_interrupted()

    # --- the handlers ---
    def _python_handler(self, signum, frame) -> None:
        self._note(signum)
        self.raise_if_interrupted()

    def _watch(self, read_fd: int) -> None:
        while data := os.read(read_fd, 64):
            for signum in data:
                if signum in SIGNALS:
                    self._note(signum)
                    self._cancel_all()


_active: InterruptState | None = None
_inactive = InterruptState()  # what callers get when no guard is installed (threads, libraries)


def current() -> InterruptState:
    """The installed guard's state, or an inert one (cancellers registered on it are never called)."""
    return _active or _inactive


@contextlib.contextmanager
def cancellable(cancel: Callable[[], None]) -> Iterator[None]:
    """Register ``cancel`` with the installed guard for the block (no-op without one)."""
    with current().cancellable(cancel):
        yield


@contextlib.contextmanager
def handling_interrupts(then_ignore: bool = False) -> Iterator[InterruptState]:
    """Install the guard for the block (main thread only; elsewhere an inert state is yielded).

    Nested use yields the outer guard: one operation, one set of handlers. ``then_ignore`` (a
    command about to exit): afterwards SIGINT/SIGTERM are ignored instead of restored, because the
    outcome is decided and a signal in the last instants must not turn it into a death by signal.
    """
    global _active
    if _active is not None or threading.current_thread() is not threading.main_thread():
        yield current()
        return
    state = InterruptState()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watcher = threading.Thread(target=state._watch, args=(read_fd,), name="interrupt-watcher", daemon=True)
    previous_handlers = {sig: signal.signal(sig, state._python_handler) for sig in SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    _active = state
    watcher.start()
    try:
        yield state
    finally:
        _active = None
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, signal.SIG_IGN if then_ignore else handler)
        os.close(write_fd)  # the watcher reads EOF and ends
        watcher.join(timeout=5)
        os.close(read_fd)


__all__ = ["Interrupted", "InterruptState", "cancellable", "current", "handling_interrupts"]
