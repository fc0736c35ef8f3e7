"""An owner's usage: jobs by status, stored bytes, training seconds today (UTC) and in all."""

from datetime import UTC, datetime, time

from sqlalchemy.orm import Session

from fitserve.schemas import JobCounts, StoredBytes, TrainingSeconds, UsagePublic
from service.errors import StorageBudgetExceeded
from service.models import utcnow
from service.repositories import usage as usage_repo


def measure_usage(session: Session, owner_id: str | None) -> UsagePublic:
    counts = usage_repo.count_by_status(session, owner_id)
    stored = usage_repo.stored_bytes(session, owner_id)
    now = utcnow()
    midnight = datetime.combine(now.date(), time(), tzinfo=UTC)
    return UsagePublic(
        owner=owner_id,
        jobs=JobCounts(**counts, total=sum(counts.values())),
        stored_bytes=StoredBytes(**stored, total=sum(stored.values())),
        training_seconds=TrainingSeconds(
            today=usage_repo.training_seconds(session, owner_id, now, since=midnight),
            total=usage_repo.training_seconds(session, owner_id, now),
        ),
    )


def measure_all(session: Session, owner_id: str | None = None, every_owner: bool = False) -> list[UsagePublic]:
    """The usage of `owner_id`, or with `every_owner` of each owner that has jobs or datasets (operators)."""
    owners = usage_repo.owners(session) if every_owner else [owner_id]
    return [measure_usage(session, owner) for owner in owners]


def check_storage(session: Session, owner_id: str | None, budget: int | None, adding: int = 0) -> None:
    """403 when the owner already stores `budget` bytes (FITSERVE_MAX_STORED_BYTES_PER_OWNER), or would past it
    with `adding` more: a job's curve and weights are bounded per job (LIMITS), so one submit never goes far past."""
    if budget is None:
        return
    stored = sum(usage_repo.stored_bytes(session, owner_id).values())
    if stored >= budget or stored + adding > budget:
        upload = f" and this upload would add {adding:,}" if adding else ""
        raise StorageBudgetExceeded(
            f"you store {stored:,} bytes (curves, weights, checkpoints, datasets){upload}: "
            f"FITSERVE_MAX_STORED_BYTES_PER_OWNER is {budget:,}; delete jobs or datasets to make room"
        )
