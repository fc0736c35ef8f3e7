"""Python client for fitserve on httpx: `Client` (sync) and `AsyncClient`, with the same methods.

    with Client() as fs:                      # FITSERVE_URL, FITSERVE_API_KEY, or the arguments
        job = fs.wait(fs.submit("spec.yaml"), timeout=600)
        print(fs.predict(job, [[1.0], [2.0]]).predictions)

Results are the API's response models (fitserve/schemas.py: JobPublic, MetricsPage, ...). An error answer raises
ApiError (status and detail); connection errors and 5xx answers are retried, a submit with the same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from fitserve import calls
from fitserve.calls import FINAL, LONG_POLL_SECONDS, ApiError, Call, Event, EventParser, Unreachable, job_id_of
from fitserve.schemas import (
    DeliveryPublic,
    JobPublic,
    MetricPointPublic,
    MetricsPage,
    PredictResponse,
    SweepPublic,
    UsagePublic,
    WebhookSecretPublic,
    WorkerList,
)

__all__ = ["ApiError", "AsyncClient", "Client", "Event", "Unreachable"]

Job = str | JobPublic


def deliveries_call(job: Job | None, sweep_id: str | None) -> calls.Call:
    if (job is None) == (sweep_id is None):
        raise ValueError("give a job or a sweep_id, one of them")
    return calls.deliveries("jobs", job_id_of(job)) if sweep_id is None else calls.deliveries("sweeps", sweep_id)


class Settings:
    """What both clients are configured with."""

    def __init__(self, url: str | None, api_key: str | None, timeout: float, retries: int, backoff: float):
        self.url = calls.base_url(url)
        self.headers = calls.auth_headers(api_key)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def pause(self, attempt: int) -> float:
        return self.backoff * 2**attempt

    def should_retry(self, attempt: int, response: httpx.Response | None) -> bool:
        """Retry a lost connection or a 5xx answer while attempts are left."""
        return attempt < self.retries and (response is None or response.status_code in calls.RETRY_STATUSES)


def deadline_left(deadline: float | None, job: JobPublic, timeout: float | None) -> float:
    """Seconds the next long-poll may take; TimeoutError once `deadline` has passed."""
    if deadline is None:
        return LONG_POLL_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"job {job.id} is still {job.status} after {timeout} s")
    return min(LONG_POLL_SECONDS, left)


class Client:
    """Blocking client; use as a context manager or call close()."""

    def __init__(self, url=None, api_key=None, *, timeout=30.0, retries=3, backoff=0.5, **httpx_args):
        self.settings = Settings(url, api_key, timeout, retries, backoff)
        self.http = httpx.Client(
            base_url=self.settings.url, headers=self.settings.headers, **calls.http_args(httpx_args)
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call):
        for attempt in range(self.settings.retries + 1):
            try:
                response = self.http.request(**call.request_args(self.settings.timeout))
            except httpx.TransportError as exc:
                if not self.settings.should_retry(attempt, None):
                    raise Unreachable(f"{self.settings.url}: {exc}") from exc
            else:
                if not self.settings.should_retry(attempt, response):
                    return call.read(response)
            time.sleep(self.settings.pause(attempt))

    def submit(self, spec: dict | str | Path) -> JobPublic:
        """Submit a spec: a dict, or the path of a JSON or YAML file."""
        return self.send(calls.submit(spec))

    def get(self, job: Job, wait: float = 0) -> JobPublic:
        """The job; with `wait`, once it changes or after `wait` seconds (at most 60)."""
        return self.send(calls.get(job_id_of(job), wait))

    def list_jobs(self, status: str | None = None, limit: int = 50, filter: str | None = None) -> list[JobPublic]:
        """Up to `limit` jobs, newest first, following the pages; `filter` as `GET /v1/jobs?filter=` takes it
        (`"params.optimizer.lr > 0.01 and metrics.val_loss < 0.2"`; ApiError 422 naming the token otherwise)."""
        jobs, cursor = [], None
        while len(jobs) < limit:
            page = self.send(calls.list_page(status, cursor, min(limit - len(jobs), 200), filter))
            jobs.extend(page.items)
            if (cursor := page.next_cursor) is None:
                break
        return jobs

    def continue_job(self, job: Job, epochs: int, lr: float | None = None, optimizer: dict | None = None) -> JobPublic:
        """A new job that trains `epochs` more from this succeeded job's final weights and optimizer state (`lr`,
        `optimizer`: settings to change); its curve goes on from the job's."""
        return self.send(calls.continue_job(job_id_of(job), epochs, lr, optimizer))

    def cancel(self, job: Job) -> JobPublic:
        return self.send(calls.cancel(job_id_of(job)))

    def delete(self, job: Job) -> None:
        """Delete the job with its curve, weights and checkpoint; a running one is stopped. ApiError 404 if gone."""
        self.send(calls.delete("jobs", job_id_of(job)))

    def submit_sweep(self, request: dict | str | Path, objective: str | dict | None = None) -> SweepPublic:
        """Submit a sweep request (a dict, or a JSON or YAML file); `objective`, e.g. "val_accuracy" (its natural
        mode, max) or "val_loss:min", replaces the request's."""
        return self.send(calls.submit_sweep(request, objective))

    def get_sweep(self, sweep_id: str) -> SweepPublic:
        return self.send(calls.get_sweep(sweep_id))

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete the sweep and every member."""
        self.send(calls.delete("sweeps", sweep_id))

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete the dataset; ApiError 409 while a queued or running job trains on it."""
        self.send(calls.delete("datasets", dataset_id))

    def usage(self) -> UsagePublic:
        """The caller's jobs by status, stored bytes and training seconds."""
        return self.send(calls.usage())

    def workers(self) -> WorkerList:
        """The live workers (job ids only of the caller's own jobs)."""
        return self.send(calls.workers())

    def webhook_secret(self) -> WebhookSecretPublic:
        """The key your webhooks are signed with (X-Fitserve-Signature: HMAC-SHA256 of the body); made at first use."""
        return self.send(calls.webhook_secret())

    def rotate_webhook_secret(self) -> WebhookSecretPublic:
        """A new signing key in place of the old, which signs nothing from now on (retries included)."""
        return self.send(calls.webhook_secret(rotate=True))

    def deliveries(self, job: Job | None = None, sweep_id: str | None = None) -> list[DeliveryPublic]:
        """The webhook deliveries of a job (or, with `sweep_id`, a sweep's own), oldest first, with their attempts."""
        return self.send(deliveries_call(job, sweep_id)).items

    def wait(self, job: Job, timeout: float | None = None) -> JobPublic:
        """The job once it is final; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        current = self.get(job)
        while current.status not in FINAL:
            current = self.get(current, wait=deadline_left(deadline, current, timeout))
        return current

    def metrics(self, job: Job, since_step: int = 0, max_points: int | None = None) -> MetricsPage:
        return self.send(calls.metrics(job_id_of(job), since_step, max_points))

    def iter_metrics(self, job: Job, since_step: int = 0) -> Iterator[MetricPointPublic]:
        """Each curve point after `since_step` as it is recorded, until the job is final."""
        job_id = job_id_of(job)
        while True:
            page = self.metrics(job_id, since_step)
            yield from page.points
            since_step = page.next_since_step
            if not page.points:
                if page.status in FINAL:
                    return
                self.get(job_id, wait=LONG_POLL_SECONDS)

    def events(self, job: Job, last_event_id: int | None = None) -> Iterator[Event]:
        """The job's Server-Sent Events until it is final; a dropped stream resumes where it stopped."""
        failures = 0
        while True:
            headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
            try:
                with self.http.stream("GET", f"/v1/jobs/{job_id_of(job)}/events", headers=headers) as response:
                    if not response.is_success:
                        response.read()
                        calls.raise_for_error(response)
                    parser = EventParser()
                    for line in response.iter_lines():
                        if (event := parser.feed(line)) is not None:
                            failures, last_event_id = 0, event.id
                            yield event
                return
            except httpx.TransportError as exc:
                if not self.settings.should_retry(failures, None):
                    raise Unreachable(f"{self.settings.url}: {exc}") from exc
                time.sleep(self.settings.pause(failures))
                failures += 1

    def predict(self, job: Job, inputs: list) -> PredictResponse:
        return self.send(calls.predict(job_id_of(job), inputs))

    def download_weights(self, job: Job, path: str | Path | None = None) -> bytes:
        """The safetensors bytes (the spec is in their metadata); written to `path` if given."""
        return calls.save(self.send(calls.download(job_id_of(job), "weights")), path)

    def download_onnx(self, job: Job, path: str | Path | None = None) -> bytes:
        return calls.save(self.send(calls.download(job_id_of(job), "model.onnx")), path)

    def curve_png(self, job: Job, path: str | Path | None = None) -> bytes:
        return calls.save(self.send(calls.download(job_id_of(job), "metrics.png")), path)


class AsyncClient:
    """The same methods as Client, awaited; use with `async with` or await aclose()."""

    def __init__(self, url=None, api_key=None, *, timeout=30.0, retries=3, backoff=0.5, **httpx_args):
        self.settings = Settings(url, api_key, timeout, retries, backoff)
        self.http = httpx.AsyncClient(
            base_url=self.settings.url, headers=self.settings.headers, **calls.http_args(httpx_args)
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call):
        for attempt in range(self.settings.retries + 1):
            try:
                response = await self.http.request(**call.request_args(self.settings.timeout))
            except httpx.TransportError as exc:
                if not self.settings.should_retry(attempt, None):
                    raise Unreachable(f"{self.settings.url}: {exc}") from exc
            else:
                if not self.settings.should_retry(attempt, response):
                    return call.read(response)
            await asyncio.sleep(self.settings.pause(attempt))

    async def submit(self, spec: dict | str | Path) -> JobPublic:
        return await self.send(calls.submit(spec))

    async def get(self, job: Job, wait: float = 0) -> JobPublic:
        return await self.send(calls.get(job_id_of(job), wait))

    async def list_jobs(self, status: str | None = None, limit: int = 50, filter: str | None = None) -> list[JobPublic]:
        jobs, cursor = [], None
        while len(jobs) < limit:
            page = await self.send(calls.list_page(status, cursor, min(limit - len(jobs), 200), filter))
            jobs.extend(page.items)
            if (cursor := page.next_cursor) is None:
                break
        return jobs

    async def continue_job(self, job: Job, epochs: int, lr: float | None = None, optimizer: dict | None = None) -> JobPublic:
        return await self.send(calls.continue_job(job_id_of(job), epochs, lr, optimizer))

    async def cancel(self, job: Job) -> JobPublic:
        return await self.send(calls.cancel(job_id_of(job)))

    async def delete(self, job: Job) -> None:
        await self.send(calls.delete("jobs", job_id_of(job)))

    async def submit_sweep(self, request: dict | str | Path, objective: str | dict | None = None) -> SweepPublic:
        return await self.send(calls.submit_sweep(request, objective))

    async def get_sweep(self, sweep_id: str) -> SweepPublic:
        return await self.send(calls.get_sweep(sweep_id))

    async def delete_sweep(self, sweep_id: str) -> None:
        await self.send(calls.delete("sweeps", sweep_id))

    async def delete_dataset(self, dataset_id: str) -> None:
        await self.send(calls.delete("datasets", dataset_id))

    async def usage(self) -> UsagePublic:
        return await self.send(calls.usage())

    async def workers(self) -> WorkerList:
        return await self.send(calls.workers())

    async def webhook_secret(self) -> WebhookSecretPublic:
        return await self.send(calls.webhook_secret())

    async def rotate_webhook_secret(self) -> WebhookSecretPublic:
        return await self.send(calls.webhook_secret(rotate=True))

    async def deliveries(self, job: Job | None = None, sweep_id: str | None = None) -> list[DeliveryPublic]:
        return (await self.send(deliveries_call(job, sweep_id))).items

    async def wait(self, job: Job, timeout: float | None = None) -> JobPublic:
        deadline = None if timeout is None else time.monotonic() + timeout
        current = await self.get(job)
        while current.status not in FINAL:
            current = await self.get(current, wait=deadline_left(deadline, current, timeout))
        return current

    async def metrics(self, job: Job, since_step: int = 0, max_points: int | None = None) -> MetricsPage:
        return await self.send(calls.metrics(job_id_of(job), since_step, max_points))

    async def iter_metrics(self, job: Job, since_step: int = 0) -> AsyncIterator[MetricPointPublic]:
        job_id = job_id_of(job)
        while True:
            page = await self.metrics(job_id, since_step)
            for point in page.points:
                yield point
            since_step = page.next_since_step
            if not page.points:
                if page.status in FINAL:
                    return
                await self.get(job_id, wait=LONG_POLL_SECONDS)

    async def events(self, job: Job, last_event_id: int | None = None) -> AsyncIterator[Event]:
        failures = 0
        while True:
            headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
            try:
                async with self.http.stream("GET", f"/v1/jobs/{job_id_of(job)}/events", headers=headers) as response:
                    if not response.is_success:
                        await response.aread()
                        calls.raise_for_error(response)
                    parser = EventParser()
                    async for line in response.aiter_lines():
                        if (event := parser.feed(line)) is not None:
                            failures, last_event_id = 0, event.id
                            yield event
                return
            except httpx.TransportError as exc:
                if not self.settings.should_retry(failures, None):
                    raise Unreachable(f"{self.settings.url}: {exc}") from exc
                await asyncio.sleep(self.settings.pause(failures))
                failures += 1

    async def predict(self, job: Job, inputs: list) -> PredictResponse:
        return await self.send(calls.predict(job_id_of(job), inputs))

    async def download_weights(self, job: Job, path: str | Path | None = None) -> bytes:
        return calls.save(await self.send(calls.download(job_id_of(job), "weights")), path)

    async def download_onnx(self, job: Job, path: str | Path | None = None) -> bytes:
        return calls.save(await self.send(calls.download(job_id_of(job), "model.onnx")), path)

    async def curve_png(self, job: Job, path: str | Path | None = None) -> bytes:
        return calls.save(await self.send(calls.download(job_id_of(job), "metrics.png")), path)
