"""What the worker registry endpoint answers."""

from datetime import datetime

from pydantic import BaseModel, Field


class WorkerPublic(BaseModel):
    id: str
    host: str = Field(description="host name, or the Ray node id of a Ray task")
    pid: int
    kind: str = Field(description="pool (a local worker process), ray_task, or dispatcher")
    device: str
    state: str = Field(description="busy while it trains a job, else idle")
    job_id: str | None = Field(None, description="the job it trains, shown only to that job's owner")
    started_at: datetime
    heartbeat_at: datetime


class WorkerList(BaseModel):
    workers: list[WorkerPublic]
    lease_seconds: float = Field(description="a worker silent for this long is taken for dead, and its jobs rescued")
