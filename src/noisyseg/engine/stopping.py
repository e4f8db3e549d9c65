"""SIGINT / SIGTERM as a request to checkpoint and stop after the current step."""

from __future__ import annotations

import signal
from types import FrameType


class StopFlag:
    """While entered, SIGINT and SIGTERM set `requested` instead of stopping the process
    (in the main thread; elsewhere the handlers stay as they are)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
