"""Sending webhooks: signed POSTs from a thread of the API process's own, a few at once, retried with back-off.

The thread (`Deliverer`) runs an event loop: every FITSERVE_WEBHOOK_POLL_SECONDS it records new events
(services/webhooks.py) and claims the deliveries due, and each attempt runs as a task of its own under
FITSERVE_WEBHOOK_TIMEOUT_SECONDS, whole (a receiver that answers a byte at a time is cut off as one that never
answers). A slow or dead receiver holds one of FITSERVE_WEBHOOK_CONCURRENCY attempts, one owner at most half
of them; never a worker, a request or the maintenance loop.

An attempt connects to the address its host resolved to when checked (services/webhook_targets.py), follows no
redirect and reads no body. A 2xx delivers; anything else is retried FITSERVE_WEBHOOK_BACKOFF_SECONDS later,
doubling, until FITSERVE_WEBHOOK_RETRY_SECONDS after the event, and then the delivery has failed. Delivery is at
least once: a process that dies mid-attempt leaves its claim to run out, and another attempt follows.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from service.db import session_scope
from service.db_faults import FAULTS
from service.models import DeliveryStatus, WebhookAttempt, utcnow
from service.repositories import webhooks as repo
from service.services.webhook_targets import AllowList, Target, TargetRefused, check_target
from service.services.webhooks import BATCH, collect_events, ensure_secret
from service.settings import Settings

log = logging.getLogger("fitserve.webhooks")

MAX_BACKOFF_SECONDS = 3600.0
LEASE_MARGIN_SECONDS = 30.0  # an attempt's claim outlasts its timeout by this before another process may retry it
CANDIDATES = 50  # due deliveries read per poll to choose the next attempts from


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    owner_key: str
    event: str
    url: str
    body: bytes
    number: int
    created_at: datetime
    secret: str


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """X-Fitserve-Signature: HMAC-SHA256 of `<timestamp>.<body>` under the owner's secret, as hex."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def claim_due(settings: Settings, in_flight: Counter) -> list[Attempt]:
    """Start attempts at deliveries due, as many as free slots allow, an owner no more than half of them."""
    slots = settings.WEBHOOK_CONCURRENCY - sum(in_flight.values())
    per_owner = max(1, settings.WEBHOOK_CONCURRENCY // 2)
    if slots <= 0:
        return []
    now = utcnow()
    with session_scope(read_only=True) as s:
        full = [owner for owner, count in in_flight.items() if count >= per_owner]
        due = repo.due_deliveries(s, now, full, CANDIDATES)
    chosen, taking = [], Counter(in_flight)
    for row in due:
        if len(chosen) < slots and taking[row.owner_key] < per_owner:
            taking[row.owner_key] += 1
            chosen.append(row)
    if not chosen:
        return []
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    attempts, secrets = [], {}
    with session_scope() as s:
        for row in chosen:
            claimed = repo.claim_delivery(s, row.id, row.next_attempt_at, lease)
            if claimed is None:
                continue  # another API process took it
            if claimed.owner_key not in secrets:
                found = repo.get_secret(s, claimed.owner_key) or ensure_secret(s, claimed.owner_key)
                secrets[claimed.owner_key] = found.secret
            attempts.append(Attempt(claimed.id, claimed.owner_key, claimed.event, claimed.url, claimed.body.encode(),
                                    claimed.attempts, claimed.created_at, secrets[claimed.owner_key]))
    return attempts


def retry_at(settings: Settings, number: int, created_at: datetime, now: datetime) -> datetime | None:
    """When attempt `number`'s retry starts; None once that is past the delivery's time to retry."""
    wait = min(settings.WEBHOOK_BACKOFF_SECONDS * 2 ** min(number - 1, 30), MAX_BACKOFF_SECONDS)
    at = now + timedelta(seconds=wait)
    return at if at <= created_at + timedelta(seconds=settings.WEBHOOK_RETRY_SECONDS) else None


def record_attempt(settings: Settings, attempt: Attempt, started_at: datetime, seconds: float,
                   status_code: int | None, error: str | None) -> None:
    now = utcnow()
    if error is None:
        status, next_at, ended = DeliveryStatus.DELIVERED, None, now
    else:
        next_at = retry_at(settings, attempt.number, attempt.created_at, now)
        status, ended = (DeliveryStatus.PENDING, None) if next_at else (DeliveryStatus.FAILED, now)
    row = WebhookAttempt(delivery_id=attempt.delivery_id, number=attempt.number, started_at=started_at,
                         seconds=seconds, status_code=status_code, error=error and error[:300])
    with session_scope() as s:
        kept = repo.finish_attempt(s, row, status, next_at, ended)
    level = logging.INFO if error is None or not kept else logging.WARNING
    # the host only: a url's path may be a secret (a chat's incoming-webhook token)
    log.log(level, "webhook %s attempt %d to %s: %s%s", attempt.delivery_id, attempt.number, httpx.URL(attempt.url).host,
            error or f"answered {status_code}", "" if kept else " (no longer this attempt's: not recorded)")


def build_request(client: httpx.AsyncClient, attempt: Attempt, target: Target) -> httpx.Request:
    """The signed POST, to the checked address; the url's own host name in Host (and for TLS, SNI and the
    certificate's check), as a receiver behind a virtual host expects."""
    url, timestamp = httpx.URL(attempt.url), int(time.time())
    headers = {
        "Host": url.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": "fitserve-webhooks",
        "X-Fitserve-Event": attempt.event,
        "X-Fitserve-Delivery": attempt.delivery_id,
        "X-Fitserve-Timestamp": str(timestamp),
        "X-Fitserve-Signature": sign(attempt.secret, timestamp, attempt.body),
    }
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    return client.build_request("POST", url.copy_with(host=target.address), content=attempt.body, headers=headers,
                                extensions=extensions)


async def send(client: httpx.AsyncClient, attempt: Attempt, settings: Settings) -> tuple[int | None, str | None]:
    """(the receiver's status code, None) for a 2xx; else with what went wrong."""
    allow = AllowList.parse(settings.WEBHOOK_ALLOW_HOSTS)
    target = await asyncio.to_thread(check_target, attempt.url, allow, settings.WEBHOOK_TIMEOUT_SECONDS)
    response = await client.send(build_request(client, attempt, target), stream=True)
    await response.aclose()  # the body is never read
    code = response.status_code
    if 200 <= code < 300:
        return code, None
    if response.is_redirect:
        return code, f"answered {code}, a redirect (to {response.headers.get('location', '?')[:200]}): not followed"
    return code, f"answered {code}"


class Deliverer:
    """`collect_events` and the due attempts, every FITSERVE_WEBHOOK_POLL_SECONDS, on a thread of its own."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self.serve()), name="fitserve-webhooks", daemon=True)

    def start(self) -> Deliverer:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Attempts under way are dropped: their claims run out, and they are tried again."""
        self.stopping.set()
        if self.loop is not None and self.wake is not None:
            self.loop.call_soon_threadsafe(self.wake.set)
        self.thread.join(5)

    async def serve(self) -> None:
        self.loop, self.wake = asyncio.get_running_loop(), asyncio.Event()
        # its database and address calls on threads named as fitserve's (asyncio's own are `asyncio_N`)
        self.loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="fitserve-webhooks-io"))
        in_flight: Counter = Counter()
        tasks: set[asyncio.Task] = set()
        async with new_client(self.settings) as client:
            while not self.stopping.is_set():
                try:
                    while await asyncio.to_thread(collect_events) == BATCH:
                        pass  # a burst of jobs ended at once: the rest now, not a poll later each
                    for attempt in await asyncio.to_thread(claim_due, self.settings, Counter(in_flight)):
                        in_flight[attempt.owner_key] += 1
                        task = asyncio.create_task(self.attempt(client, attempt))
                        tasks.add(task)
                        task.add_done_callback(lambda done, owner=attempt.owner_key: settle(tasks, in_flight, done, owner))
                except Exception as exc:
                    if FAULTS.meet(exc) is None:  # a full disk or a corrupt file: one line when it begins
                        log.exception("webhooks: a poll failed; next in %.1f s", self.settings.WEBHOOK_POLL_SECONDS)
                try:
                    await asyncio.wait_for(self.wake.wait(), self.settings.WEBHOOK_POLL_SECONDS)
                except TimeoutError:
                    pass
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def attempt(self, client: httpx.AsyncClient, attempt: Attempt) -> None:
        timeout = self.settings.WEBHOOK_TIMEOUT_SECONDS
        started_at, clock = utcnow(), time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                status_code, error = await send(client, attempt, self.settings)
        except TimeoutError:
            status_code, error = None, f"no answer within {timeout:g} s (FITSERVE_WEBHOOK_TIMEOUT_SECONDS)"
        except TargetRefused as exc:
            status_code, error = None, str(exc)
        except httpx.HTTPError as exc:
            status_code, error = None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # unforeseen: still the attempt's error, so the delivery ends in its time
            log.exception("webhook %s: attempt %d failed unforeseen", attempt.delivery_id, attempt.number)
            status_code, error = None, f"{type(exc).__name__}: {exc}"
        try:
            await asyncio.to_thread(record_attempt, self.settings, attempt, started_at, time.monotonic() - clock,
                                    status_code, error)
        except Exception as exc:  # its claim runs out and the delivery is tried again
            if FAULTS.meet(exc) is None:
                log.exception("webhook %s: attempt %d not recorded", attempt.delivery_id, attempt.number)


def settle(tasks: set, in_flight: Counter, task: asyncio.Task, owner: str) -> None:
    tasks.discard(task)
    in_flight[owner] -= 1
    if in_flight[owner] <= 0:
        del in_flight[owner]


def new_client(settings: Settings) -> httpx.AsyncClient:
    """No proxy from the environment (it would reach what the address check refused), no redirects, and a
    connection per attempt: a kept one, made for another host name on the same address, would skip its TLS check."""
    return httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=httpx.Timeout(settings.WEBHOOK_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=settings.WEBHOOK_CONCURRENCY, max_keepalive_connections=0),
    )
