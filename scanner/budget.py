"""Wall-clock budgets for a scan and its stages."""
from __future__ import annotations

import time


class BudgetExceeded(Exception):
    """Raised inside a stage when the scan's time budget has run out; the pipeline catches it and
    marks the scan incomplete, keeping everything found so far."""


class Budget:
    """A wall-clock deadline. ``seconds`` None means unlimited.

    Call :meth:`check` at safe points inside loops; it raises :class:`BudgetExceeded` once the
    deadline has passed.
    """

    def __init__(self, seconds: float | None = None):
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left (``inf`` when unlimited, never negative)."""
        if self.seconds is None:
            return float("inf")
        return max(0.0, self.seconds - self.elapsed())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.seconds is not None and self.elapsed() >= self.seconds

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if the deadline has passed."""
        if self.expired():
            raise BudgetExceeded(f"time budget of {self.seconds:g} s exceeded")
