"""What the sync and async clients share: the requests they make, their errors, specs, Server-Sent Events."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel

from fitserve.schemas import (
    DeliveryList,
    JobPage,
    JobPublic,
    MetricPointPublic,
    MetricsPage,
    PredictResponse,
    SweepPublic,
    UsagePublic,
    WebhookSecretPublic,
    WorkerList,
)

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL = frozenset({"succeeded", "failed", "cancelled"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
LONG_POLL_SECONDS = 30.0  # under the server's 60 s cap, and short enough for proxies that cut idle requests
# How long an idle connection is kept for the next request: under the server's FITSERVE_KEEP_ALIVE_SECONDS (5 s by
# default). At equal times (httpx's default is 5 s too) a request sent as the server closes the connection is reset.
KEEPALIVE_SECONDS = 2.0


class FitserveClientError(Exception):
    """Anything the client could not do."""


class ApiError(FitserveClientError):
    """The server answered an error: its HTTP status and its `detail`."""

    def __init__(self, status_code: int, detail: Any):
        super().__init__(f"HTTP {status_code}: {describe(detail)}")
        self.status_code = status_code
        self.detail = detail


class Unreachable(FitserveClientError):
    """No answer from the server, after every retry."""


def describe(detail: Any) -> str:
    """One line from a `detail`: a string as is, FastAPI's field errors as `field: message; ...`."""
    if isinstance(detail, list):
        return "; ".join(".".join(str(p) for p in e.get("loc", [])) + f": {e.get('msg')}" for e in detail)
    return str(detail)


def job_id_of(job: str | JobPublic) -> str:
    return job.id if isinstance(job, JobPublic) else job


def load_spec(spec: dict | str | Path) -> dict:
    """A spec as given, or read from a JSON or YAML file."""
    if isinstance(spec, dict):
        return spec
    path = Path(spec)
    text = path.read_text()
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)


def auth_headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("FITSERVE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def base_url(url: str | None) -> str:
    return (url or os.environ.get("FITSERVE_URL") or DEFAULT_URL).rstrip("/")


def http_args(httpx_args: dict) -> dict:
    """httpx's arguments for either client: the caller's, with idle connections kept KEEPALIVE_SECONDS unless the
    caller passes its own `limits`."""
    return {"limits": httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS), **httpx_args}


@dataclass(frozen=True)
class Call:
    """One request and how to read its answer: into `model`, or raw bytes when `model` is None."""

    method: str
    path: str
    model: type[BaseModel] | None = None
    params: dict | None = None
    json: Any = None
    headers: dict = field(default_factory=dict)
    extra_timeout: float = 0.0  # a long-poll may take this long before it answers

    def request_args(self, timeout: float) -> dict:
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "json": self.json,
            "headers": self.headers,
            "timeout": timeout + self.extra_timeout,
        }

    def read(self, response: httpx.Response) -> Any:
        raise_for_error(response)
        return response.content if self.model is None else self.model.model_validate_json(response.content)


def raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    raise ApiError(response.status_code, detail)


def submit(spec: dict | str | Path) -> Call:
    # one key per submit, the same on each retry: the server creates the job once
    return Call("POST", "/v1/jobs", JobPublic, json=load_spec(spec), headers={"Idempotency-Key": uuid.uuid4().hex})


def submit_sweep(request: dict | str | Path, objective: str | dict | None = None) -> Call:
    """A sweep request (dict or file); `objective` over the request's: "val_accuracy", "val_loss:min" or a dict."""
    body = dict(load_spec(request))
    if objective is not None:
        body["objective"] = objective_of(objective)
    return Call("POST", "/v1/sweeps", SweepPublic, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def objective_of(objective: str | dict) -> dict:
    """`metric` or `metric:mode` as the API's objective (no mode: the server takes the metric's natural one)."""
    if isinstance(objective, dict):
        return objective
    metric, _, mode = objective.partition(":")
    return {"metric": metric, "mode": mode} if mode else {"metric": metric}


def get_sweep(sweep_id: str) -> Call:
    return Call("GET", f"/v1/sweeps/{sweep_id}", SweepPublic)


def get(job_id: str, wait: float = 0) -> Call:
    params = {"wait": wait} if wait else None
    return Call("GET", f"/v1/jobs/{job_id}", JobPublic, params=params, extra_timeout=wait)


def list_page(status: str | None, cursor: str | None, limit: int, filter: str | None = None) -> Call:
    """A page of `GET /v1/jobs`; `filter`: its `?filter=` (`params.optimizer.lr > 0.01 and metrics.loss < 0.1`)."""
    given = {"status": status, "filter": filter, "cursor": cursor, "limit": limit}
    params = {k: v for k, v in given.items() if v is not None}
    return Call("GET", "/v1/jobs", JobPage, params=params)


def continue_job(job_id: str, epochs: int, lr: float | None = None, optimizer: dict | None = None) -> Call:
    """A new job training `epochs` more from a succeeded job's final weights and optimizer state."""
    body = {"epochs": epochs} | ({} if lr is None else {"lr": lr}) | ({} if optimizer is None else {"optimizer": optimizer})
    return Call("POST", f"/v1/jobs/{job_id}/continue", JobPublic, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def cancel(job_id: str) -> Call:
    return Call("POST", f"/v1/jobs/{job_id}/cancel", JobPublic)


def delete(kind: str, resource_id: str) -> Call:
    """Delete a job, sweep or dataset (`kind`: jobs, sweeps, datasets) with everything it owns; 204, no body."""
    return Call("DELETE", f"/v1/{kind}/{resource_id}")


def usage() -> Call:
    return Call("GET", "/v1/usage", UsagePublic)


def metrics(job_id: str, since_step: int, max_points: int | None = None) -> Call:
    """A page of consecutive points after `since_step`; evenly spaced ones over all of them with `max_points`."""
    params = {"since_step": since_step} if max_points is None else {"since_step": since_step, "max_points": max_points}
    return Call("GET", f"/v1/jobs/{job_id}/metrics", MetricsPage, params=params)


def workers() -> Call:
    return Call("GET", "/v1/workers", WorkerList)


def webhook_secret(rotate: bool = False) -> Call:
    """The key the owner's webhooks are signed with (made at its first use); with `rotate`, a new one in its place."""
    if rotate:
        return Call("POST", "/v1/webhooks/secret/rotate", WebhookSecretPublic)
    return Call("GET", "/v1/webhooks/secret", WebhookSecretPublic)


def deliveries(kind: str, resource_id: str) -> Call:
    """The webhook deliveries of a job or a sweep (`kind`: jobs, sweeps), oldest first, each with its attempts."""
    return Call("GET", f"/v1/{kind}/{resource_id}/deliveries", DeliveryList)


def predict(job_id: str, inputs: list) -> Call:
    return Call("POST", f"/v1/jobs/{job_id}/predict", PredictResponse, json={"inputs": inputs})


def download(job_id: str, what: str) -> Call:
    """Raw bytes of `weights`, `metrics.png` or `model.onnx`."""
    return Call("GET", f"/v1/jobs/{job_id}/{what}")


def save(blob: bytes, path: str | Path | None) -> bytes:
    if path is not None:
        Path(path).write_bytes(blob)
    return blob


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job: `status` (data is the job) or `metric` (data is a curve point)."""

    event: str
    id: int
    data: JobPublic | MetricPointPublic


class EventParser:
    """Lines of a `text/event-stream` in, events out (comments and unknown events skipped)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def feed(self, line: str) -> Event | None:
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                self.fields[name] = value.removeprefix(" ")
            return None
        fields, self.fields = self.fields, {}
        kinds: dict[str, Callable[[str], BaseModel]] = {
            "status": JobPublic.model_validate_json,
            "metric": MetricPointPublic.model_validate_json,
        }
        if fields.get("event") not in kinds:
            return None
        return Event(fields["event"], int(fields.get("id", 0)), kinds[fields["event"]](fields.get("data", "")))
