"""A terminal progress bar (tqdm on stderr) behind the core's progress callback."""

from __future__ import annotations

import sys
from typing import Optional

__all__ = ["TerminalProgress"]


class TerminalProgress:
    """Callable ``(fraction, message)`` that drives a tqdm bar; silent when ``enabled`` is False."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=100, desc=description, file=sys.stderr, leave=False,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self._last: Optional[str] = None

    def __call__(self, fraction: float, message: str) -> None:
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
