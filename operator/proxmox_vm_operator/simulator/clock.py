"""Simulated time: every duration inside the simulator is in *simulated* seconds.

Tests speed the simulator up with a scale (20 means one real second is twenty simulated
seconds), step it by hand with :meth:`SimClock.advance`, or make it instant (scale 0): every
wait then completes at once and the clock jumps to its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(Exception):
    """A simulated-time wait reached its deadline."""


class SimClock:
    """A monotonic simulated clock with a wall-clock origin for UPIDs and timestamps."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale < 0:
            raise ValueError("time scale must be >= 0")
        self._scale = scale
        self._real_origin = time.monotonic()
        self._sim_origin = 0.0
        self.epoch_origin = time.time()
        self._changed: asyncio.Event | None = None

    @property
    def scale(self) -> float:
        return self._scale

    @property
    def instant(self) -> bool:
        return self._scale == 0

    def now(self) -> float:
        """Simulated seconds since the clock was created."""
        if self.instant:
            return self._sim_origin
        return self._sim_origin + (time.monotonic() - self._real_origin) * self._scale

    def wall(self) -> float:
        """Simulated Unix time."""
        return self.epoch_origin + self.now()

    def set_scale(self, scale: float) -> None:
        if scale < 0:
            raise ValueError("time scale must be >= 0")
        self._rebase()
        self._scale = scale
        self._notify()

    def advance(self, seconds: float) -> None:
        """Jump forward; sleepers whose deadline has passed wake up. Call on the loop thread."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._rebase()
        self._sim_origin += seconds
        self._notify()

    async def sleep(self, seconds: float, *, drives_clock: bool = True) -> None:
        """Wait ``seconds`` of simulated time.

        In instant mode a sleeper that ``drives_clock`` jumps the clock to its deadline; a
        passive one (a periodic background loop) waits until something else moves it there,
        so that such a loop neither spins nor runs the clock away.
        """
        await self.sleep_until(self.now() + max(0.0, seconds), drives_clock=drives_clock)

    async def sleep_until(self, deadline: float, *, drives_clock: bool = True) -> None:
        while True:
            remaining = deadline - self.now()
            if remaining <= 0:
                return
            if self.instant and drives_clock:
                # Instant mode: time jumps to the deadline, but still yield so others run.
                self._sim_origin = max(self._sim_origin, deadline)
                self._notify()
                await asyncio.sleep(0)
                return
            # asyncio.wait, unlike wait_for on Python 3.11, never swallows a cancellation
            # that races with the event being set.
            waiter = asyncio.ensure_future(self._changed_event().wait())
            try:
                timeout = None if self.instant else remaining / self._scale
                await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()

    async def within(self, awaitable: Awaitable[T], seconds: float) -> T:
        """Await ``awaitable`` for at most ``seconds`` of simulated time, else WaitTimedOut."""
        work = asyncio.ensure_future(awaitable)
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            # What is ready at once (a free lock) must not start the timer: in instant
            # mode the timer alone would move the clock.
            await asyncio.wait({work}, timeout=0)
            if work.done():
                return work.result()
            timer = asyncio.ensure_future(self.sleep(seconds))
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            timer.cancel()
            raise
        timer.cancel()
        if work.done():
            return work.result()
        work.cancel()
        raise WaitTimedOut

    def _rebase(self) -> None:
        self._sim_origin = self.now()
        self._real_origin = time.monotonic()

    def _changed_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
