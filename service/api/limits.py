"""Request limits: a token bucket per caller, failed authentications per address, uploads in flight per owner."""

import ctypes
import gc
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import TooManyRequests

MAX_TRACKED_ADDRESSES = 10_000  # past this many, addresses whose failures are all old are forgotten


class RateLimiter:
    """A token bucket per caller: `rate` requests a second, `burst` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)
        self.lock = threading.Lock()

    def take(self, caller: str) -> None:
        now = time.monotonic()
        with self.lock:
            tokens, at = self.buckets.get(caller, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self.buckets[caller] = (tokens, now)
                raise TooManyRequests("rate limit exceeded; slow down", (1 - tokens) / self.rate)
            self.buckets[caller] = (tokens - 1, now)


class FailedAuthLimiter:
    """After `limit` failed authentications from one address within `window` seconds, that address's further
    failures are 429 (with Retry-After) instead of 401.

    Only failures are refused: a right key is checked first and always served, so a stranger guessing from an
    address others share (a NAT, a reverse proxy) cannot lock them out; the guesser is the one told to wait.
    """

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque[float]] = {}  # address -> times of its latest `limit` failures
        self.lock = threading.Lock()

    def refuse_past_limit(self, address: str) -> None:
        """Count a failed authentication from `address`; 429 when `limit` others were in the window before it.

        A guesser who goes on stays refused: each failure is counted, so the window never empties under it."""
        now = time.monotonic()
        with self.lock:
            if address not in self.failures and len(self.failures) >= MAX_TRACKED_ADDRESSES:
                self.forget_old(now)
            times = self.failures.setdefault(address, deque(maxlen=self.limit))
            while times and times[0] <= now - self.window:
                times.popleft()
            past = len(times) >= self.limit
            times.append(now)
            if past:
                raise TooManyRequests(
                    f"{self.limit} failed authentications from {address} within {self.window:g} s "
                    "(FITSERVE_AUTH_FAILURES_PER_WINDOW); wait before trying again",
                    times[0] + self.window - now,
                )

    def forget_old(self, now: float) -> None:
        for address in [a for a, times in self.failures.items() if times[-1] <= now - self.window]:
            del self.failures[address]


class UploadSlots:
    """At most `per_owner` uploads of one owner in flight at once (429 past it)."""

    def __init__(self, per_owner: int):
        self.per_owner = per_owner
        self.in_flight: dict[str | None, int] = {}
        self.lock = threading.Lock()

    @contextmanager
    def hold(self, owner: str | None) -> Iterator[None]:
        with self.lock:
            if self.in_flight.get(owner, 0) >= self.per_owner:
                raise TooManyRequests(
                    f"{self.per_owner} uploads of yours are in flight (FITSERVE_MAX_UPLOADS_PER_OWNER); "
                    "wait for one to finish",
                    1.0,
                )
            self.in_flight[owner] = self.in_flight.get(owner, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                self.in_flight[owner] -= 1
                if not self.in_flight[owner]:
                    del self.in_flight[owner]


def give_back_memory(exc: BaseException) -> None:
    """Drop what a failed request's frames hold and hand freed heap pages back to the OS (glibc only)."""
    traceback.clear_frames(exc.__traceback__)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed memory stays with the process's allocator
        pass
