"""What `GET /v1/usage` answers: an owner's jobs, stored bytes and training time."""

from pydantic import BaseModel, Field


class JobCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class StoredBytes(BaseModel):
    """Byte lengths of the stored blobs (what the database holds besides its own overhead)."""

    curves: int
    weights: int
    checkpoints: int
    datasets: int
    total: int


class TrainingSeconds(BaseModel):
    today: float = Field(description="since midnight UTC")
    total: float = Field(description="in all; each job's latest attempt, from its start to its end (or now)")


class UsagePublic(BaseModel):
    owner: str | None = Field(description="the owner the figures are for (null: the anonymous local owner)")
    jobs: JobCounts
    stored_bytes: StoredBytes
    training_seconds: TrainingSeconds
