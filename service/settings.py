"""The one settings object, read from `FITSERVE_*` environment variables."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FITSERVE_", extra="ignore")

    DATABASE_URL: str = Field(
        default_factory=lambda: f"sqlite:///{Path('var').resolve() / 'fitserve.db'}",
        description="SQLAlchemy URL; a SQLite file under ./var/ unless set",
    )
    DB_POOL_SIZE: int = Field(
        5, ge=1, description="database connections each process keeps open (the API's sync requests hold one each)"
    )
    DB_MAX_OVERFLOW: int = Field(10, ge=0, description="connections a process may open beyond DB_POOL_SIZE under load")
    DB_POOL_TIMEOUT_SECONDS: float = Field(
        10.0, gt=0, description="how long a request waits for a free database connection before it fails (503)"
    )
    WORKERS: int | None = Field(
        None, ge=0, description="worker processes; default WORKERS_PER_GPU per visible GPU, else 1"
    )
    WORKERS_PER_GPU: int = Field(
        1, ge=1, le=64, description="workers sharing each GPU when WORKERS is unset (small jobs leave a GPU idle)"
    )
    LEASE_SECONDS: float = Field(30.0, gt=0, description="a running job's lease; renewed by its worker")
    SWEEP_SECONDS: float = Field(5.0, gt=0, description="how often expired leases are looked for")
    DB_IDLE_IN_TRANSACTION_SECONDS: float | None = Field(
        None, gt=0, description="PostgreSQL ends a session that sits in an open transaction this long (a frozen "
        "process's locks would otherwise block every other writer); default LEASE_SECONDS",
    )
    POLL_SECONDS: float = Field(0.5, gt=0, description="how long an idle worker waits before looking again")
    REPORT_SECONDS: float = Field(0.5, gt=0, description="how often a running job writes its new curve points")
    CHECKPOINT_SECONDS: float = Field(30.0, gt=0, description="how often a running job saves a checkpoint")
    MAX_ATTEMPTS: int = Field(
        3, ge=1, description="attempts before a job whose worker keeps dying fails; an attempt interrupted by no "
        "fault of the job's (handed back at shutdown, the lease expired, the whole process gone) does not count",
    )
    MAX_INTERRUPTIONS: int = Field(
        20, ge=1, description="interrupted attempts (hand-backs included) after which a job whose lease expires "
        "again fails, naming each attempt's cause",
    )
    SHUTDOWN_SECONDS: float = Field(
        10.0, gt=0, description="how long a stopping worker may take to hand its job back before it is killed"
    )
    READY_QUEUE_SECONDS: float = Field(
        300.0, gt=0, description="/readyz fails when the oldest queued job is older than this and no worker lives"
    )
    READY_REQUIRES_WORKER: bool = Field(
        False, description="/readyz fails while no worker heartbeats; `serve` sets it when it runs a pool"
    )
    TORCH_THREADS: int = Field(
        0, ge=0, description="torch threads per worker; 0: the machine's cores divided among the workers"
    )
    TUNE_THREADS: bool = Field(
        True, description="a CPU run (a job, or a sweep's members) long enough to repay it times its own epochs at 1 torch thread and at its "
        "worker's count (TORCH_THREADS), and trains on at the faster; off: the worker's count throughout",
    )
    WORKER_MEMORY_BYTES: int | None = Field(
        None, ge=0, description="address-space cap of each CPU worker process; 0 for none; "
        "default 3/4 of the machine's memory divided among WORKERS (1 when unset), at least 4 GiB",
    )
    MAX_JOB_BYTES: int | None = Field(
        None, ge=1, description="largest estimated training peak of a job, or of a sweep's batched members, "
        "accepted at submit (422); default half of WORKER_MEMORY_BYTES (the estimate leaves out torch itself)",
    )
    MAX_PREDICT_BYTES: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024,
        description="largest estimated forward-pass memory of one prediction request (413 naming the rows that fit)",
    )
    EXECUTOR: Literal["local", "ray"] = Field(
        "local", description="local: a pool of worker processes; ray: a dispatcher places jobs on RAY_ADDRESS's cluster"
    )
    RAY_CPUS_PER_JOB: float = Field(1.0, gt=0, description="CPUs each job's Ray task asks for (and torch threads)")
    MAX_RESPONSE_BYTES: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024,
        description="largest estimated answer of a prediction, evaluation or ONNX export (413 before it is built); "
        "a curve page holds fewer points rather than exceed it",
    )
    MODEL_CACHE_BYTES: int = Field(256 * 1024 * 1024, ge=0, description="loaded models kept for predictions")
    MAX_INDEX_MODELS: int = Field(
        1000, ge=1, description="models the v2 repository index (`POST /v2/repository/index`) lists, newest first"
    )

    AUTH: Literal["auto", "required", "off"] = Field(
        "auto",
        description="auto: keys are required once any key exists, or when serving beyond loopback",
    )
    KEY_CACHE_SECONDS: float = Field(
        5.0, ge=0, le=300, description="checked keys are cached this long: a revoked key stops working within it"
    )
    MAX_BODY_BYTES: int = Field(64 * 1024 * 1024, ge=1024, description="largest request body accepted (413)")
    MAX_JSON_BYTES: int = Field(
        8 * 1024 * 1024, ge=1024, description="largest JSON request body (413); uploads have MAX_BODY_BYTES"
    )
    MAX_JSON_DEPTH: int = Field(64, ge=2, le=500, description="deepest nesting of arrays/objects in a JSON body (422)")
    MAX_HEADER_BYTES: int = Field(
        64 * 1024, ge=4096, description="largest request line and headers together (431, and the connection closed)"
    )
    HEADER_TIMEOUT_SECONDS: float = Field(
        10.0, gt=0, description="time a connection has to send a request's line and headers, from its first byte "
        "(from its opening for the first request), before it is answered 408 and closed",
    )
    KEEP_ALIVE_SECONDS: float = Field(5.0, gt=0, description="an idle kept-alive connection is closed after this")
    BODY_TIMEOUT_SECONDS: float = Field(
        30.0, gt=0, description="time a request's body may go without a byte arriving (a body trickled in holds a "
        "connection and a request slot) before it is answered 408 and its connection closed",
    )
    MAX_CONNECTIONS: int = Field(
        1000, ge=1, description="open connections of an API process; one past it is answered 503 and closed"
    )
    MAX_CONNECTIONS_PER_ADDRESS: int = Field(
        100, ge=1, description="open connections of one client address to an API process (proxies named in "
        "FORWARDED_ALLOW_IPS excepted: their clients are many); one past it is answered 429 and closed",
    )
    AUTH_FAILURES_PER_WINDOW: int = Field(
        20, ge=1, description="failed authentications from one client address before its further failures are 429s"
    )
    FORWARDED_ALLOW_IPS: str = Field(
        "", description="proxies (addresses or networks, comma-separated; * for any) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none by default: a client's address is its connection's",
    )
    AUTH_FAILURE_WINDOW_SECONDS: float = Field(
        60.0, gt=0, description="the window failed authentications are counted in; an address over it waits it out"
    )
    MAX_UPLOADS_PER_OWNER: int = Field(2, ge=1, description="dataset uploads one owner may have in flight (429)")
    MAX_DATASET_ROWS: int = Field(1_000_000, ge=1, description="rows an uploaded dataset may have (413)")
    MAX_DATASET_COLUMNS: int = Field(
        10_000, ge=2, description="CSV columns, or NPZ values per row of x, an uploaded dataset may have (413)"
    )
    MAX_DATASET_CELLS: int = Field(
        16 * 1024 * 1024, ge=1, description="values (rows x columns) an uploaded dataset may have, checked before decoding (413)"
    )
    RATE_LIMIT_PER_SECOND: float = Field(50.0, gt=0, description="sustained requests per second per key")
    RATE_LIMIT_BURST: int = Field(200, ge=1, description="requests a key may send at once")
    MAX_QUEUED_PER_OWNER: int = Field(1000, ge=1, description="queued jobs one owner may have (429 past it)")
    MAX_STORED_BYTES_PER_OWNER: int | None = Field(
        10 * 1024**3, ge=1, description="bytes one owner may store (curves, weights, checkpoints, datasets): at it, new "
        "jobs, sweeps and datasets are refused (403) until deletes make room; reads and deletes always work; unset: none",
    )
    MAX_RUNNING_PER_OWNER: int | None = Field(
        None, ge=1, description="jobs (sweep members each) one owner may have running at once; unset: no cap"
    )
    YIELD_SECONDS: float = Field(
        60.0, ge=0, description="fair claims only: a run that has trained this long, while another owner's job has "
        "waited as long, checkpoints and hands its jobs back between epochs so the waiting job starts (they resume "
        "at their next turn; not counted as attempts); 0: a run keeps its worker to the end",
    )
    CLAIM_ORDER: Literal["fair", "fifo"] = Field(
        "fair",
        description="fair: the owner with the least running work first, then priority, then age; fifo: oldest first",
    )
    AUTO_BATCH: Literal["auto", "on", "off"] = Field(
        "auto",
        description="a worker that claims a job also claims queued jobs that can share its step and trains them as "
        "one batched computation; auto: when its probe measures that faster than one by one; on: always; off: never",
    )
    COMPILE: Literal["auto", "on", "off"] = Field(
        "auto",
        description="train a job's (or a batch's) step compiled by torch.compile where it can compile; auto: on a CPU "
        "when the job is long enough to repay a compile and a measurement on its own epochs finds it faster, on a "
        "GPU for jobs of many steps; on: always; off: never",
    )
    AUTO_BATCH_MAX: int = Field(
        64, ge=1, le=1024, description="jobs one auto-batched computation takes at most (the claimed job included)"
    )
    MAX_TAGS: int = Field(32, ge=1, le=256, description="tags one job or sweep may carry (422 past it)")
    MAX_WATCHERS_PER_OWNER: int = Field(
        20, ge=1, description="event streams and long-polls one owner may have open at once in an API process (429)"
    )
    MAX_WATCHERS: int = Field(
        500, ge=1, description="event streams and long-polls open at once in an API process, all owners (429)"
    )
    IDEMPOTENCY_TTL_SECONDS: float = Field(24 * 3600, gt=0, description="how long an Idempotency-Key is kept")
    CURVE_PAGE_POINTS: int = Field(
        100_000, ge=1, description="curve points one `/metrics` page holds at most; `next_since_step` continues it"
    )
    RETENTION_CHECKPOINTS: float = Field(
        0.0, ge=0, description="seconds a failed or cancelled job keeps its checkpoint (a succeeded job's goes at once)"
    )
    RETENTION_DAYS: float | None = Field(
        None, gt=0, description="ended jobs of every owner are deleted this many days after they end; unset: kept"
    )
    RETENTION_BATCH: int = Field(
        200, ge=1, le=10_000, description="jobs (and checkpoints) the maintenance loop deletes at most per tick, per kind"
    )
    DB_MAX_BYTES: int | None = Field(
        None, ge=64 * 1024, description="SQLite: the largest the database file may grow (PRAGMA max_page_count; never "
        "below its size when a process opens it): past it writes answer 507 as on a full disk, with the disk still "
        "free for the log of the DELETEs that make room; unset: the disk's size",
    )
    WEBHOOK_ALLOW_HOSTS: str = Field(
        "", description="webhook targets (host names, addresses or networks, comma-separated) allowed although they "
        "resolve to a loopback, private, link-local or otherwise non-public address; none by default (against SSRF)",
    )
    WEBHOOK_TIMEOUT_SECONDS: float = Field(
        10.0, gt=0, le=300, description="one webhook attempt, whole: resolving, connecting, sending, the response's headers",
    )
    WEBHOOK_BACKOFF_SECONDS: float = Field(
        10.0, gt=0, description="the wait before a failed webhook's first retry; doubled each retry, at most an hour"
    )
    WEBHOOK_RETRY_SECONDS: float = Field(
        24 * 3600.0, ge=0, description="how long after its event a webhook is still retried; then its delivery is failed"
    )
    WEBHOOK_CONCURRENCY: int = Field(
        4, ge=1, le=64, description="webhook attempts an API process makes at once (one owner at most half of them)"
    )
    WEBHOOK_POLL_SECONDS: float = Field(
        1.0, gt=0, description="how often an API process looks for jobs and sweeps to notify and deliveries due"
    )
    RECLAIM_FREE_BYTES: int = Field(
        4 * 1024 * 1024, ge=0,
        description="SQLite: free space in the file past which the maintenance loop gives it back to the file system",
    )

    @model_validator(mode="after")
    def _size_memory_budgets(self) -> "Settings":
        """Memory caps left unset are sized for this machine and its workers."""
        machine, workers = machine_memory_bytes(), max(1, self.WORKERS or 1)
        if self.WORKER_MEMORY_BYTES is None:
            self.WORKER_MEMORY_BYTES = max(MIN_WORKER_MEMORY_BYTES, machine * 3 // 4 // workers)
        if self.MAX_JOB_BYTES is None:
            self.MAX_JOB_BYTES = (self.WORKER_MEMORY_BYTES or machine // workers) // 2
        return self


# a worker's address space with torch loaded and its threads started is ~1-2 GiB before any job
MIN_WORKER_MEMORY_BYTES = 4 * 1024**3


def machine_memory_bytes() -> int:
    """Physical memory, or the container's cgroup limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


@lru_cache
def get_settings() -> Settings:
    return Settings()
