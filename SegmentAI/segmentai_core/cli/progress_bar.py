"""Progress on stderr behind the core's progress callback: a tqdm bar on a terminal, lines elsewhere.

When stderr is not a terminal (a log file, a pipe, a CI job, a Slicer console), a redrawn bar would
either be invisible or fill the log with carriage returns, so progress comes as whole lines instead:
one each time another tenth of the work is done or the stage changes, and at least every
``interval_s`` seconds, each with the time elapsed and an estimate of the time left. Lines start
once the job has run for :data:`LINE_DELAY_S`: a job refused at once (a corrupt model, a bad
input) still answers with its one error line, and a job of a second prints nothing but its result.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["TerminalProgress", "LineProgress", "format_duration", "eta_seconds", "LINE_DELAY_S"]

LINE_DELAY_S = 2.0


def format_duration(seconds: float) -> str:
    """``75`` → ``1 min 15 s``; ``3725`` → ``1 h 2 min``; ``8.4`` → ``8 s``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def eta_seconds(fraction: float, elapsed_s: float) -> Optional[float]:
    """Time left at a constant rate; None until there is enough to go on (10 % and 1 s: start-up such as
    loading a model would otherwise dominate the estimate)."""
    if fraction < 0.1 or elapsed_s < 1.0 or fraction >= 1.0:
        return None
    return elapsed_s * (1.0 - fraction) / fraction


class LineProgress:
    """Callable ``(fraction, message)`` that prints a line per tenth, per stage and per ``interval_s``."""

    def __init__(self, description: str, stream: Optional[TextIO] = None, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, delay_s: Optional[float] = None) -> None:
        self.description = description
        self.delay_s = LINE_DELAY_S if delay_s is None else delay_s
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self._last_time = self.started
        self._last_tenth = -1
        self._last_stage: Optional[str] = None

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = self.clock()
        if now - self.started < self.delay_s:
            return
        tenth = int(fraction * 10 + 1e-9)
        stage = re.sub(r"[\d/.%]+", "", (message or "").split(",")[0].split("(")[0]).strip()  # "Windows 3/8": one stage
        if tenth == self._last_tenth and stage == self._last_stage and now - self._last_time < self.interval_s:
            return
        self._last_tenth, self._last_stage, self._last_time = tenth, stage, now
        elapsed = now - self.started
        parts = [f"{self.description}: {100 * fraction:3.0f}%"]
        if message:
            parts.append(message)
        timing = f"{format_duration(elapsed)} elapsed"
        left = eta_seconds(fraction, elapsed)
        if left is not None:
            timing += f", about {format_duration(left)} left"
        parts.append(timing)
        print(" | ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class TerminalProgress:
    """Callable ``(fraction, message)``: a tqdm bar on a terminal, :class:`LineProgress` lines otherwise.

    ``enabled=False`` (``--quiet``) is silent. ``tty`` defaults to whether stderr is a terminal.
    """

    def __init__(self, description: str, enabled: bool = True, tty: Optional[bool] = None) -> None:
        self._bar = None
        self._lines: Optional[LineProgress] = None
        if enabled:
            if tty is None:
                tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
            if tty:
                from tqdm import tqdm

                self._bar = tqdm(total=100, desc=description, file=sys.stderr, leave=False,
                                 bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
            else:
                self._lines = LineProgress(description)
        self._last: Optional[str] = None

    def __call__(self, fraction: float, message: str) -> None:
        if self._lines is not None:
            self._lines(fraction, message)
            return
        if self._bar is None:
            return
        self._bar.n = round(100 * fraction, 1)
        if message and message != self._last:
            self._bar.set_postfix_str(message, refresh=False)
            self._last = message
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
