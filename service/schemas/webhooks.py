"""Webhooks: `notify` (where a job or a sweep tells how it went) and what the webhook endpoints answer.

Only the url's form is checked here; where its host resolves, and whether that may be called, is the service's
(services/webhook_targets.py), at submit and again at each delivery.
"""

from datetime import datetime
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.schemas.data import Strict

Event = Literal["started", "succeeded", "failed", "cancelled"]
ENDS: tuple[Event, ...] = ("succeeded", "failed", "cancelled")
MAX_URL_LENGTH = 2048


def url_parts(url: str) -> SplitResult:
    """The parts of an http(s) url with a host and no credentials; ValueError saying what is wrong otherwise."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("url holds a space or a control character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("url must be http:// or https://")
    if not parts.hostname:
        raise ValueError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not carry a user or password: receivers check the signature instead")
    parts.port  # noqa: B018 (raises ValueError for a port out of range)
    return parts


class Notify(Strict):
    """POST, signed, to `url` as the job reaches each of `events` (README, Webhooks)."""

    url: str = Field(
        max_length=MAX_URL_LENGTH, description="http or https; its host must resolve to public addresses only, "
        "unless FITSERVE_WEBHOOK_ALLOW_HOSTS names it",
    )
    events: list[Event] = Field(
        default_factory=lambda: list(ENDS), min_length=1, max_length=4,
        description="of started, succeeded, failed, cancelled; default the three ends",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        url_parts(url)
        return url

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[str]) -> list[str]:
        if len(set(events)) != len(events):
            raise ValueError("events names an event twice")
        return events


class SweepNotify(Notify):
    """A sweep's `notify`: its own events (started: its first member started; an end: its last member ended)."""

    members: bool = Field(False, description="each member's own events too, to the same url")


class WebhookSecretPublic(BaseModel):
    secret: str = Field(description="the HMAC-SHA256 key of X-Fitserve-Signature (as ASCII bytes)")
    created_at: datetime


class DeliveryAttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int = Field(description="1 for the first attempt")
    started_at: datetime
    seconds: float = Field(description="how long the attempt took")
    status_code: int | None = Field(description="the receiver's answer; null when none came (see error)")
    error: str | None = Field(description="why the attempt failed; null once a 2xx came")


class DeliveryPublic(BaseModel):
    id: str = Field(description="sent as X-Fitserve-Delivery")
    event: Event
    url: str
    status: Literal["pending", "delivered", "failed"]
    created_at: datetime = Field(description="when the event was seen")
    next_attempt_at: datetime | None = Field(description="pending: when the next attempt starts at the earliest")
    ended_at: datetime | None = Field(description="when it was delivered, or given up")
    attempts: list[DeliveryAttemptPublic]


class DeliveryList(BaseModel):
    items: list[DeliveryPublic] = Field(description="oldest first; one per event at most")
