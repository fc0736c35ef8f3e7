"""ORM models. The schema itself comes only from the Alembic migrations under alembic/."""

import enum
import os
import uuid
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def new_job_id(*, at: datetime | None = None) -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits, like new_id's: the milliseconds of `at` (now) first, then 74 random
    bits. A job's rows in every index keyed by its id (its own, its curve's, weights', checkpoint's, tags', params',
    name's) sit beside those of the jobs made just before and after it, so retention, which deletes the oldest
    jobs, rewrites a few pages of each such index per tick rather than one per job (issue 30)."""
    millis = int((at or utcnow()).timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10))  # 12 bits after the version, 62 after the variant
    value = (millis << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    return f"{value:032x}"


class UTCDateTime(TypeDecorator):
    """Timestamps in UTC, aware on the way out on every back end (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for a worker; also where a rescued or released job goes back to
    RUNNING = "running"  # claimed by a worker that holds its lease
    SUCCEEDED = "succeeded"  # trained to the last epoch; weights stored
    FAILED = "failed"  # diverged, bad data, or out of attempts; `error` says why
    CANCELLED = "cancelled"  # stopped on request; the curve so far is kept

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Sweep(Base):
    """Many configurations of one architecture; each member is a job of its own (jobs.sweep_id)."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    request: Mapped[dict] = mapped_column(JSON)  # the base spec and search space as submitted
    size: Mapped[int] = mapped_column(Integer)  # members
    execution: Mapped[str | None] = mapped_column(String(200))  # how the worker ran them, and why
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")  # given to each member too
    # an adaptive search's decisions so far (ASHA's rungs, PBT's exploits): a resumed worker repeats them
    search_state: Mapped[dict | None] = mapped_column(JSON)
    # TPE: rounds still to create; each is created, once, when every member so far has ended
    search_rounds_left: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # with `notify` in the request: the status its webhook last looked at (services/webhooks.py); NULL without
    notified_status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_sweeps_created_at_id", "created_at", "id"),)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    owner_id: Mapped[str | None] = mapped_column(String(32))  # indexed first in several indexes below
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    alias: Mapped[str | None] = mapped_column(String(64))  # a second name for the v2 protocol, unique per owner
    # orders one owner's queued jobs, higher first; owners share the workers by fair share (repositories/queue.py)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tags: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")  # as read; job_tags is what filters
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    spec: Mapped[dict] = mapped_column(JSON)
    epochs: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer, default=0)  # epochs completed
    step: Mapped[int] = mapped_column(Integer, default=0)  # optimizer steps taken
    latest_metrics: Mapped[dict | None] = mapped_column(JSON)
    # with early stopping: the recorded epoch where patience ran out (None: it reached its last epoch),
    # and the epoch whose weights the job kept, with that epoch's curve point
    stopped_early_at: Mapped[int | None] = mapped_column(Integer)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_metrics: Mapped[dict | None] = mapped_column(JSON)
    # the kept weights measured on the held-out splits as training ended (modelzoo/metrics.py)
    evaluation: Mapped[dict | None] = mapped_column(JSON)
    stop_reason: Mapped[str | None] = mapped_column(String(200))  # an adaptive search's, e.g. "pruned at rung 2"
    # time limits (README, Time limits): seconds trained over all attempts, as last reported, against spec max_seconds;
    # a sweep member's wall-clock end, its sweep's created_at + max_seconds (queued past it: ended unstarted)
    trained_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    deadline_at: Mapped[datetime | None] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # 1 on the first claim
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    # attempts that ended for a reason not the job's (handed back at shutdown, the lease expired, the whole
    # process gone): they do not count against max_attempts (job_attempts says how each ended)
    interruptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # of those, hand-backs that gave the worker's turn to another owner's waiting work (workers/run.py): the
    # scheduler's choice, so FITSERVE_MAX_INTERRUPTIONS counts only the others
    yields: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    device: Mapped[str | None] = mapped_column(String(32))
    node: Mapped[str | None] = mapped_column(String(64))  # host name, or Ray node id, of the latest attempt
    execution: Mapped[str | None] = mapped_column(String(500))  # the path that trained it, and any fallback's reason
    batch_key: Mapped[str | None] = mapped_column(String(64))  # jobs that may train batched together (service/batching.py)
    # the training estimate at submit (modelzoo/memory.py): a claim sums those running on a GPU (workers/claims.py)
    estimate_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # the job whose final state (weights and optimizer) this one continues from (POST /v1/jobs/{id}/continue); no
    # key: a parent deleted before its continuation started fails that one with the reason (workers/attempt.py)
    continued_from: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # webhooks (services/webhooks.py): `{"url", "events"}` as submitted, and the status last looked at; a sweep's
    # member carries that status (not a notify of its own) when only its sweep notifies. NULL: nothing to tell
    notify: Mapped[dict | None] = mapped_column(JSON)
    notified_status: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
        # an owner's pages, newest first, and their cursors: no sort of the owner's rows; with the name, a `?name=`
        # part too common for SQLite's trigram table is checked on the index entry, not the job's row
        Index("ix_jobs_owner_id_created_at_id_name", "owner_id", "created_at", "id", "name"),
        # usage today: an owner's jobs that ended since midnight
        Index("ix_jobs_owner_id_finished_at", "owner_id", "finished_at"),
        # retention: the jobs that ended longest ago, of every owner (only ended jobs have a finished_at)
        Index("ix_jobs_finished_at_id", "finished_at", "id", postgresql_where=text("finished_at IS NOT NULL"),
              sqlite_where=text("finished_at IS NOT NULL")),
        # time limits: the queued members whose sweep's deadline passed (only members of a limited sweep have one)
        Index("ix_jobs_deadline_at", "deadline_at", postgresql_where=text("deadline_at IS NOT NULL"),
              sqlite_where=text("deadline_at IS NOT NULL")),
        # auto-batching: a claimed job's queued batch mates
        Index("ix_jobs_batch_key_status", "batch_key", "status"),
        UniqueConstraint("owner_id", "alias", name="uq_jobs_owner_id_alias"),
        # the constraint above lets NULL owners repeat: with keys off (every job NULL-owned) this one holds aliases
        Index("uq_jobs_alias_unowned", "alias", unique=True, postgresql_where=text("owner_id IS NULL"),
              sqlite_where=text("owner_id IS NULL")),
    )


# fair share: an owner's next queued job is the first entry of its (status, owner_id) range, no sort
Index(
    "ix_jobs_status_owner_id_priority", Job.status, Job.owner_id, Job.priority.desc(), Job.created_at, Job.id
)
# webhooks: the jobs and sweeps whose notifications are still open (a final status not yet looked at), found
# without reading the others; jobs by (last looked-at status, status), so one whose status moved is one seek
NOTIFICATIONS_OPEN = text("notified_status IN ('queued', 'running')")
Index("ix_jobs_notify_open", Job.notified_status, Job.status, Job.id,
      sqlite_where=NOTIFICATIONS_OPEN, postgresql_where=NOTIFICATIONS_OPEN)
Index("ix_sweeps_notify_open", Sweep.notified_status, Sweep.id,
      sqlite_where=NOTIFICATIONS_OPEN, postgresql_where=NOTIFICATIONS_OPEN)
# ?name=: lower(name) LIKE '%part%' from a trigram index (PostgreSQL with pg_trgm only: alembic 0015; SQLite's
# FTS5 table of the names, alembic 0022, is outside the models: repositories/job_search.py)
Index(
    "ix_jobs_name_trigrams", func.lower(Job.name), postgresql_using="gin", postgresql_ops={"lower": "gin_trgm_ops"}
).ddl_if(dialect="postgresql")


class json_number(FunctionElement):
    """The number under `key` of a JSON column, the key written into the statement, not bound: an index on the
    expression is then one the query's own text matches (SQLite compares expressions as written)."""

    type = Float()
    inherit_cache = True
    _traverse_internals: ClassVar = [*FunctionElement._traverse_internals, ("key", InternalTraversal.dp_string)]

    def __init__(self, column, key: str):
        if not key.isidentifier():
            raise ValueError(f"not a plain JSON key: {key!r}")
        self.key = key
        super().__init__(column)


@compiles(json_number, "sqlite")
def _json_number_sqlite(element, compiler, **kw):
    return f"CAST(json_extract({compiler.process(element.clauses, **kw)}, '$.{element.key}') AS FLOAT)"


@compiles(json_number, "postgresql")
def _json_number_postgresql(element, compiler, **kw):
    # PostgreSQL's own spelling of the expression: alembic's comparison of the index then finds it unchanged
    return f"({compiler.process(element.clauses, **kw)} ->> '{element.key}')::double precision"


SORT_METRICS = ("loss", "val_loss", "val_accuracy")


def kept_metric(name: str):
    """A job's metric `name` of the weights it kept: its best epoch's (early stopping), else its latest."""
    return func.coalesce(json_number(Job.best_metrics, name), json_number(Job.latest_metrics, name))


# ?sort=<metric>: an owner's jobs in that metric's order, those without it in one NULL range (alembic 0023)
for _metric in SORT_METRICS:
    Index(f"ix_jobs_owner_id_{_metric}", Job.owner_id, kept_metric(_metric), Job.id)


class JobTag(Base):
    """One tag of a job, a row each so `?tag=key:value` finds jobs by an index (jobs.tags holds the same)."""

    __tablename__ = "job_tags"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    # the job's, copied (they never change): an owner's jobs with a tag are one range of the index, in page order
    owner_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("ix_job_tags_owner_id_key_value", "owner_id", "key", "value", "created_at", "job_id"),
    )


class JobParam(Base):
    """One number or string of a job's spec, a row each, so a `?filter=` params term finds jobs by an index
    (jobs.spec holds the same; repositories/job_params.py says which values have a row)."""

    __tablename__ = "job_params"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(256), primary_key=True)  # dotted keys and list indexes: model.hidden.0
    num_value: Mapped[float | None] = mapped_column(Float)  # a number's row
    text_value: Mapped[str | None] = mapped_column(String(256))  # a string's row
    # the job's, copied (it never changes): an owner's values at a path are one range of the index
    owner_id: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        # one index for both kinds: a string's num_value is NULL, which both back ends seek to as a value
        Index("ix_job_params_owner_id_path_value", "owner_id", "path", "num_value", "text_value", "job_id"),
    )


class JobCountsColumns:
    """Jobs of one owner in one status, their training seconds (counted once ended), the bytes of their curves,
    weights and checkpoints, and (on the 'running' row) when the owner's latest job started; the bytes of the owner's
    datasets on its row of status '' (a dataset belongs to no job; alembic 0036)."""

    owner_key: Mapped[str] = mapped_column(String(32))  # "" for the anonymous owner
    status: Mapped[str] = mapped_column(String(16))
    jobs: Mapped[int] = mapped_column(BigInteger)
    training_seconds: Mapped[float] = mapped_column(Float)
    curve_bytes: Mapped[int] = mapped_column(BigInteger)
    weights_bytes: Mapped[int] = mapped_column(BigInteger)
    checkpoint_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    dataset_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_started_at: Mapped[datetime | None] = mapped_column()


class JobCount(JobCountsColumns, Base):
    """The counts as of the last fold (service/repositories/job_counts.py): a row per (owner, status)."""

    __tablename__ = "job_counts"

    owner_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)

    __table_args__ = (Index("ix_job_counts_status_owner_key", "status", "owner_key"),)


class JobCountChange(JobCountsColumns, Base):
    """A change to the counts, appended by the database's triggers (alembic 0013) in the transaction that made it;
    folded into job_counts by the maintenance tick."""

    __tablename__ = "job_count_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    owner_key: Mapped[str] = mapped_column(String(32), index=True)


# an owner_queues turn that never started: before every real start, on both back ends (no NULLS FIRST in a
# SQLite index)
NEVER_STARTED = datetime(1970, 1, 1, tzinfo=UTC)


class OwnerQueue(Base):
    """An owner's queued and running jobs and its latest start, as of the last fold (repositories/job_counts.py):
    the fair claim's turn order, one row an owner, so the next owner is the first entry of ix_owner_queues_turn."""

    __tablename__ = "owner_queues"

    owner_key: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" for the anonymous owner
    queued: Mapped[int] = mapped_column(BigInteger)
    running: Mapped[int] = mapped_column(BigInteger)
    last_started_at: Mapped[datetime] = mapped_column()  # NEVER_STARTED until one of its jobs starts

    __table_args__ = (
        # whose turn is next: fewest running, then the longest since a start; owners with queued jobs only
        Index("ix_owner_queues_turn", "running", "last_started_at", "owner_key",
              postgresql_where=text("queued > 0"), sqlite_where=text("queued > 0")),
    )


class WorkerKind(enum.StrEnum):
    POOL = "pool"  # a process of a local worker pool
    RAY_TASK = "ray_task"  # a Ray task training one job
    DISPATCHER = "dispatcher"  # the process that places jobs on a Ray cluster


class Worker(Base):
    """A live worker process: inserted when it starts, heartbeated, deleted when it stops or its heartbeat expires."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the worker_id its jobs carry
    host: Mapped[str] = mapped_column(String(255))  # host name, or Ray node id
    pid: Mapped[int] = mapped_column(Integer)
    # boot id and pid namespace: a pid means this process only where the scope is the reader's own
    process_scope: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(String(32))
    # a GPU worker's GPU (workers/devices.py `gpu_memory`): its total memory, and its free memory at the last heartbeat
    gpu_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    gpu_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    job_id: Mapped[str | None] = mapped_column(String(32))  # the job it trains now (a sweep's first member)
    started_at: Mapped[datetime] = mapped_column()
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)


class MetricChunk(Base):
    """A run of a job's curve points, one report's worth, as columns (service/curves.py).

    Chunks of a job never overlap: a resumed attempt first trims the curve back to its checkpoint.
    """

    __tablename__ = "metric_chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    first_step: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_step: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    # the names of a chunk's columns (service/curves.py FIELDS, at most ~200 characters); SQLite enforces no
    # declared length, and keeps the VARCHAR(100) its table was made with (alembic 0026)
    columns: Mapped[str] = mapped_column(String(400).with_variant(String(100), "sqlite"))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class JobWeights(Base):
    """A finished job's weights: safetensors bytes whose metadata holds the spec."""

    __tablename__ = "job_weights"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobAttempt(Base):
    """How an attempt ended that its worker lost or handed back: the cause, and whether it counts against
    max_attempts (service/repositories/jobs.py `rescue_jobs`)."""

    __tablename__ = "job_attempts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    cause: Mapped[str] = mapped_column(String(300))
    counted: Mapped[bool] = mapped_column(Boolean)
    ended_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasAssignment(Base):
    """Which job an owner's alias named, from when until when (`released_at` None: it still does, or did until that
    job was deleted with it)."""

    __tablename__ = "alias_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[str | None] = mapped_column(String(32))
    alias: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(32))  # no key: the history outlives the job
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index("ix_alias_assignments_owner_id_alias_id", "owner_id", "alias", "id"),
                      Index("ix_alias_assignments_job_id", "job_id"))


class Checkpoint(Base):
    """The latest checkpoint of a running job, or a succeeded job's final state (what a continuation starts from):
    safetensors bytes, enough to resume."""

    __tablename__ = "checkpoints"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a succeeded job's final state, kept as long as the job; the others (a running job's, or one of a job that
    # failed or was cancelled, dropped by retention) are the few ix_checkpoints_not_final holds
    final: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # each as the back end's `~Checkpoint.final` reads (SQLite has no boolean type)
    __table_args__ = (Index("ix_checkpoints_not_final", "job_id", sqlite_where=text("final = 0"),
                            postgresql_where=text("NOT final")),)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(8))  # the uploaded file's format: csv or npz
    n_rows: Mapped[int] = mapped_column(Integer)
    sample_shape: Mapped[list] = mapped_column(JSON)
    n_classes: Mapped[int | None] = mapped_column(Integer)
    target_width: Mapped[int] = mapped_column(Integer)
    # per target column {"mean": [...], "std": [...]}, for the target-scale lint; NULL for datasets uploaded before
    # it was kept, and for targets wider than TARGET_MOMENTS_WIDTH
    target_moments: Mapped[dict | None] = mapped_column(JSON)
    size_bytes: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # NPZ of float32 x and y, whatever was uploaded
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: the secret is stored only as its SHA-256 (keys are random, so no slow hash is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the public part, `fs_<id>_...`
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class IdempotencyKey(Base):
    """The first response to a request sent with an Idempotency-Key, replayed for its retries."""

    __tablename__ = "idempotency_keys"

    owner_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" for the anonymous owner
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "POST /v1/jobs"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request's content
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first request is in flight
    response: Mapped[dict | None] = mapped_column(JSON)
    location: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    # deleting a job (or sweep, or dataset) forgets the record that would replay its 201: found by its location
    __table_args__ = (Index("ix_idempotency_keys_location", "location"),)

class WebhookSecret(Base):
    """The key an owner's webhooks are signed with. Kept as it is, not hashed: every delivery is signed with it."""

    __tablename__ = "webhook_secrets"

    owner_key: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" for the anonymous owner
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # its first attempt, or a retry, is still to come (next_attempt_at says when)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # no 2xx within FITSERVE_WEBHOOK_RETRY_SECONDS of the event


class WebhookDelivery(Base):
    """One event of a job or a sweep told to its `notify` url: the body sent (the same bytes at each attempt)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)  # X-Fitserve-Delivery
    owner_key: Mapped[str] = mapped_column(String(32))  # "" for the anonymous owner; whose secret signs it
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(2048))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # started, the one under way included
    # pending: when the next attempt may start (an attempt under way holds it as a lease); else NULL
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        # one delivery per event: a job started twice (requeued) is told once
        UniqueConstraint("job_id", "event", name="uq_webhook_deliveries_job_id_event"),
        UniqueConstraint("sweep_id", "event", name="uq_webhook_deliveries_sweep_id_event"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", sqlite_where=text("status = 'pending'"),
              postgresql_where=text("status = 'pending'")),
    )


class WebhookAttempt(Base):
    """One try at a delivery: the receiver's status code, or what went wrong."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1 for the first
    started_at: Mapped[datetime] = mapped_column()
    seconds: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
