"""Wall-clock budgets for a scan and its stages, and a per-stage watchdog.

A :class:`Budget` is checked cooperatively (:meth:`Budget.check` at safe points inside loops). A
stage that stops checking (a long or hung native call, a library that swallows exceptions) is
handled by :class:`Watchdog`, in three steps after the stage's deadline:

1. at the deadline, :meth:`Budget.check` starts raising :class:`BudgetExceeded`;
2. ``interrupt_after`` seconds later, if the stage is still running and it runs in the main thread,
   a ``SIGALRM`` is sent to the main thread; its handler raises :class:`BudgetExceeded` at the next
   Python instruction, which also ends interruptible blocking calls (sleeps, reads, lock waits);
3. ``hang_after`` seconds after the deadline, if the stage has still not returned (stuck inside
   native code), the ``on_hang`` callback is called from the watchdog thread. The CLI's callback
   writes what the report holds so far, prints one error line and exits the process with code 2;
   library callers get no such callback unless they pass one.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Callable

#: Defaults for :class:`Watchdog` (seconds after the stage deadline).
INTERRUPT_AFTER = 5.0
HANG_AFTER = 60.0


class BudgetExceeded(Exception):
    """Raised inside a stage when the scan's time budget has run out; the pipeline catches it and
    marks the scan incomplete, keeping everything found so far."""


class Budget:
    """A wall-clock deadline. ``seconds`` None means unlimited; ``start`` is the ``time.monotonic()``
    the budget counts from (default: now; the CLI passes the moment ``scanner scan`` started, so that
    start-up and loading count too).

    Call :meth:`check` at safe points inside loops; it raises :class:`BudgetExceeded` once the
    deadline (or the current stage's deadline, set by :class:`Watchdog`) has passed.
    """

    def __init__(self, seconds: float | None = None, start: float | None = None):
        self.seconds = seconds
        self.start = time.monotonic() if start is None else start
        self.stage_deadline: float | None = None  # monotonic time; set by Watchdog
        self.stage_name: str | None = None

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left of the whole budget (``inf`` when unlimited, never negative)."""
        if self.seconds is None:
            return float("inf")
        return max(0.0, self.seconds - self.elapsed())

    def _stage_expired(self) -> bool:
        return self.stage_deadline is not None and time.monotonic() >= self.stage_deadline

    def expired(self) -> bool:
        """True once the scan's deadline or the current stage's deadline has passed."""
        return (self.seconds is not None and self.elapsed() >= self.seconds) or self._stage_expired()

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if the scan's or the current stage's deadline has passed."""
        if self.seconds is not None and self.elapsed() >= self.seconds:
            raise BudgetExceeded(f"time budget of {self.seconds:g} s exceeded")
        if self._stage_expired():
            raise BudgetExceeded(f"stage {self.stage_name or '?'} exceeded its time limit")


# -- watchdog ------------------------------------------------------------------------------------
_armed_lock = threading.RLock()  # re-entered when the handler runs inside Watchdog.__exit__
_armed: "Watchdog | None" = None
_previous_handler: object = None


def _on_alarm(signum: int, frame: object) -> None:
    with _armed_lock:
        wd = _armed
        fire = wd is not None and wd.interrupted and not wd._done.is_set()
    if fire:
        raise BudgetExceeded(f"stage {wd.stage} did not stop at its deadline; interrupted by the watchdog")
    prev = _previous_handler
    if callable(prev):
        prev(signum, frame)


def _install_handler() -> bool:
    """Install the SIGALRM handler once (main thread only). False where that is impossible."""
    global _previous_handler
    if not hasattr(signal, "pthread_kill") or not hasattr(signal, "SIGALRM"):
        return False
    if signal.getsignal(signal.SIGALRM) is _on_alarm:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        _previous_handler = signal.signal(signal.SIGALRM, _on_alarm)  # chained to for alarms that are not ours
    except (ValueError, OSError):
        return False
    return True


class Watchdog:
    """Bound one stage in time (a context manager; see the module docstring).

    Args:
        budget: the scan's budget; its stage deadline is set while the stage runs.
        stage: stage name, used in messages.
        seconds: the stage's own limit in seconds (None: only the scan's budget applies).
        interrupt_after: seconds after the deadline before the main thread is interrupted.
        hang_after: seconds after the deadline before ``on_hang(stage)`` is called.
        on_hang: called from the watchdog thread when the stage is stuck; may end the process.

    Attributes:
        interrupted: True once the watchdog interrupted the stage (step 2).
        hung: True once ``on_hang`` was called (step 3).
    """

    def __init__(self, budget: Budget, stage: str, seconds: float | None = None, *, interrupt_after: float | None = None,
                 hang_after: float | None = None, on_hang: Callable[[str], None] | None = None):
        self.budget = budget
        self.stage = stage
        self.seconds = seconds
        self.interrupt_after = INTERRUPT_AFTER if interrupt_after is None else interrupt_after
        self.hang_after = HANG_AFTER if hang_after is None else hang_after
        self.on_hang = on_hang
        self.interrupted = False
        self.hung = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._main_ident: int | None = None
        self._saved: tuple[float | None, str | None] = (None, None)

    def __enter__(self) -> "Watchdog":
        global _armed
        limit = min(self.budget.remaining(), float("inf") if self.seconds is None else self.seconds)
        self._saved = (self.budget.stage_deadline, self.budget.stage_name)
        if limit == float("inf"):
            return self
        deadline = time.monotonic() + limit
        if self._saved[0] is not None:
            deadline = min(deadline, self._saved[0])
        self.budget.stage_deadline, self.budget.stage_name = deadline, self.stage
        # Python runs signal handlers in the main thread only: arm the interrupt for stages run there.
        if threading.current_thread() is threading.main_thread() and _install_handler():
            self._main_ident = threading.main_thread().ident
            with _armed_lock:
                _armed = self
        self._thread = threading.Thread(target=self._watch, args=(deadline,), name=f"scanner-watchdog-{self.stage}", daemon=True)
        self._thread.start()
        return self

    def _watch(self, deadline: float) -> None:
        if self._done.wait(max(0.0, deadline - time.monotonic()) + self.interrupt_after):
            return
        with _armed_lock:
            if self._done.is_set():
                return
            self.interrupted = True
            # Only signal while our handler is the installed one (someone may have replaced it since).
            if _armed is self and self._main_ident is not None and signal.getsignal(signal.SIGALRM) is _on_alarm:
                try:
                    signal.pthread_kill(self._main_ident, signal.SIGALRM)
                except (OSError, ValueError):
                    pass
        if self._done.wait(max(0.0, self.hang_after - self.interrupt_after)):
            return
        self.hung = True
        if self.on_hang is not None:
            self.on_hang(self.stage)

    def __exit__(self, *exc: object) -> None:
        global _armed
        with _armed_lock:
            self._done.set()
            if _armed is self:
                _armed = None
        self.budget.stage_deadline, self.budget.stage_name = self._saved
