"""Waiting, bounded, for something to happen: one helper for every "poll until ready or give up".

A wait that runs out raises `NotSettled`, which says what did not happen, for how long it was
waited for, and the last thing seen, so no caller has to phrase its own timeout message.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class NotSettled(TimeoutError):
    """`what` did not happen within the time allowed."""

    def __init__(self, what: str, timeout: float, last: str) -> None:
        self.what, self.timeout, self.last = what, timeout, last
        seconds = f"{timeout:.1f}".rstrip("0").rstrip(".")
        super().__init__(f"{what} did not happen within {seconds}s" + (f" (last seen: {last})" if last else ""))


def until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.5,
          retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """Calls `condition` until it returns something truthy, and returns that; raises NotSettled
    after `timeout` seconds. Exceptions of the `retry_on` types count as "not yet" (their text
    becomes the last thing seen); any other exception propagates at once. The condition runs at
    least once, and once more at the deadline, so a zero timeout is a single check."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            last = repr(value)
        except retry_on as exc:
            value, last = None, f"{type(exc).__name__}: {exc}"
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotSettled(what, timeout, last[:500])
        time.sleep(min(interval, remaining))
