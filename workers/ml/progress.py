"""How long a training has left, from its measured step rate (no Django, no PyTorch).

The time since the run started includes reading and encoding the chips, which at the first steps can be most
of it: extrapolating from it promised "10 min" for a one-minute training. The rate is measured between steps
instead, over the last ``window`` seconds, once ``min_steps`` steps are known; the time left is also capped by
what remains of the time budget, which ends a training whatever its planned steps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class StepClock:
    """Records (time, step) as steps end; ``seconds_left`` answers from the measured rate, or None while too
    few steps are known."""

    def __init__(self, time_budget_s: float | None = None, *, min_steps: int = 5, window_s: float = 20.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.time_budget_s = time_budget_s
        self.min_steps = min_steps
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def step(self, step: int) -> None:
        """A step ended now."""
        now = self.clock()
        self.samples.append((now, step))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()

    def steps_per_s(self) -> float | None:
        """Steps per second between the oldest kept step and the latest, once ``min_steps`` steps are known."""
        if len(self.samples) < 2:
            return None
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        if s1 - s0 < self.min_steps or t1 <= t0:
            return None
        return (s1 - s0) / (t1 - t0)

    def seconds_left(self, step: int, total: int) -> float | None:
        """Seconds until ``total`` steps at the measured rate, at most what is left of the time budget."""
        rate = self.steps_per_s()
        if rate is None or rate <= 0:
            return None
        left = max(0, total - step) / rate
        if self.time_budget_s is not None:
            left = min(left, max(0.0, self.time_budget_s - (self.clock() - self.started)))
        return left
