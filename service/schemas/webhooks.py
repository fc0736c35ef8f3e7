"""Webhooks: `notify` (where a job or a sweep tells how it went); what the webhook endpoints answer is the
client's (fitserve/schemas.py), as every response model is.

Only the url's form is checked here; where its host resolves, and whether that may be called, is the service's
(services/webhook_targets.py), at submit and again at each delivery.
"""

from urllib.parse import SplitResult, urlsplit

from pydantic import Field, field_validator

from fitserve.schemas import WebhookEvent as Event
from service.schemas.data import Strict

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
