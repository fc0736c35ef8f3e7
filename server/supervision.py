"""A child process kept alive: restarted with back-off whenever it dies, each time with a log line."""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable

log = logging.getLogger("fitserve.supervisor")
STABLE_SECONDS = 60.0  # a child that lived this long before dying is restarted at once
MAX_BACKOFF_SECONDS = 10.0


class Supervised:
    """`target(*args)` in a spawned child, restarted until `stop`; a child dying young waits 1, 2, 4 ... 10 s."""

    def __init__(self, name: str, target: Callable, args: tuple = ()):
        self.name, self.target, self.args = name, target, args
        self.ctx = mp.get_context("spawn")
        self.proc: mp.Process | None = None
        self.stopping = threading.Event()
        self.started_at = 0.0
        self.backoff = 0.0
        self.restarts = 0

    def start(self) -> Supervised:
        self.proc = self.ctx.Process(target=self.target, args=self.args, name=self.name)
        self.proc.start()
        self.started_at = time.monotonic()
        log.info("%s started (pid %s)", self.name, self.proc.pid)
        return self

    def watch(self) -> None:
        """Until `stop`: wait for the child to die, then restart it."""
        while not self.stopping.is_set():
            self.proc.join(0.5)
            if self.proc.is_alive() or self.stopping.is_set():
                continue
            lived = time.monotonic() - self.started_at
            self.backoff = 0.0 if lived >= STABLE_SECONDS else min(MAX_BACKOFF_SECONDS, max(1.0, 2 * self.backoff))
            log.error("%s (pid %s) died with exit code %s after %.1f s; restarting in %.1f s",
                      self.name, self.proc.pid, self.proc.exitcode, lived, self.backoff)
            if self.stopping.wait(self.backoff):
                return
            self.restarts += 1
            self.start()

    def watch_in_background(self) -> Supervised:
        threading.Thread(target=self.watch, name=f"{self.name}-supervisor", daemon=True).start()
        return self

    def stop(self, timeout: float) -> None:
        """SIGTERM the child and wait up to `timeout` s for it to finish its own shutdown, then kill it."""
        self.stopping.set()
        if self.proc is None or not self.proc.is_alive():
            return
        self.proc.terminate()
        self.proc.join(timeout)
        if self.proc.is_alive():
            log.error("%s did not stop within %.0f s; killed", self.name, timeout)
            self.proc.kill()
            self.proc.join()
