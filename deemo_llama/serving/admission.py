"""Admission control: a bounded wait queue in front of a fixed number of slots.

The gateway keeps two: ``media`` (de-identification, Whisper and the experts, CPU-bound; only
requests that carry media take one) and ``model`` (calls to the model server). A request that finds
every slot taken waits in the queue, first come first served, instead of being refused; it is refused
with 429 and a ``Retry-After`` header only when the queue is full or it has waited longer than the
queue's timeout. vLLM queues the requests it is given the same way; the slots bound how much work
the gateway itself holds in memory at once.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager
from typing import AsyncIterator

from .media_parts import GatewayError


class Admission:
    """``slots`` holders at once, at most ``depth`` waiting, each for at most ``timeout_s`` seconds."""

    def __init__(self, name: str, slots: int, depth: int, timeout_s: float):
        if slots < 1 or depth < 0 or timeout_s <= 0:
            raise ValueError(f"{name}: slots >= 1, queue depth >= 0 and a positive timeout are needed")
        self.name, self.slots, self.depth, self.timeout_s = name, slots, depth, timeout_s
        self._sem = asyncio.Semaphore(slots)
        self.waiting = 0
        self.in_use = 0

    def _busy(self, why: str) -> GatewayError:
        retry = max(1, math.ceil(self.timeout_s / 4))
        return GatewayError(429, f"the server is busy: {why}; retry after {retry} s", "rate_limit_error", code="too_many_requests", headers={"Retry-After": str(retry)})

    async def acquire(self) -> None:
        if self._sem.locked() and self.waiting >= self.depth:
            raise self._busy(f"{self.in_use} {self.name} slots in use and {self.waiting} requests waiting (queue depth {self.depth})")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.timeout_s)
        except TimeoutError:
            raise self._busy(f"waited {self.timeout_s:g} s for one of {self.slots} {self.name} slots") from None
        finally:
            self.waiting -= 1
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self._sem.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def state(self) -> dict[str, int | float]:
        return {"in_use": self.in_use, "slots": self.slots, "waiting": self.waiting, "queue_depth": self.depth, "queue_timeout_s": self.timeout_s}
