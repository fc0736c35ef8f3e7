"""Webhooks: the owner's signing secret, and the deliveries of a job's or a sweep's `notify` (README, Webhooks)."""

from fastapi import APIRouter

from fitserve.schemas import DeliveryList, WebhookSecretPublic
from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep
from service.services import webhooks as webhook_service

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)


@router.get("/v1/webhooks/secret", response_model=WebhookSecretPublic)
def get_secret(session: SessionDep, owner: OwnerDep):
    """The key your webhooks are signed with (made at its first use); kept as is by the server, which signs with it."""
    secret = webhook_service.read_secret(session, owner)
    return WebhookSecretPublic(secret=secret.secret, created_at=secret.created_at)


@router.post("/v1/webhooks/secret/rotate", response_model=WebhookSecretPublic)
def rotate_secret(session: SessionDep, owner: OwnerDep):
    """A new key in place of the old, which signs nothing from now on (retries of earlier events included)."""
    secret = webhook_service.rotate_secret(session, owner)
    return WebhookSecretPublic(secret=secret.secret, created_at=secret.created_at)


@router.get("/v1/jobs/{job_id}/deliveries", response_model=DeliveryList)
def job_deliveries(job_id: str, session: SessionDep, owner: OwnerDep):
    """The job's webhook deliveries, one per event told, each with its attempts."""
    return webhook_service.list_deliveries(session, owner, job_id=job_id)


@router.get("/v1/sweeps/{sweep_id}/deliveries", response_model=DeliveryList)
def sweep_deliveries(sweep_id: str, session: SessionDep, owner: OwnerDep):
    """The sweep's own webhook deliveries (its members' are each member's: GET /v1/jobs/{id}/deliveries)."""
    return webhook_service.list_deliveries(session, owner, sweep_id=sweep_id)
