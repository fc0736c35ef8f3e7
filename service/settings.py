"""The one settings object, read from `FITSERVE_*` environment variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FITSERVE_", extra="ignore")

    DATABASE_URL: str = Field(
        default_factory=lambda: f"sqlite:///{Path('var').resolve() / 'fitserve.db'}",
        description="SQLAlchemy URL; a SQLite file under ./var/ unless set",
    )
    WORKERS: int | None = Field(None, ge=0, description="worker processes; default one per visible GPU, else 1")
    LEASE_SECONDS: float = Field(30.0, gt=0, description="a running job's lease; renewed by its worker")
    SWEEP_SECONDS: float = Field(5.0, gt=0, description="how often expired leases are looked for")
    POLL_SECONDS: float = Field(0.5, gt=0, description="how long an idle worker waits before looking again")
    REPORT_SECONDS: float = Field(0.5, gt=0, description="how often a running job writes its new curve points")
    CHECKPOINT_SECONDS: float = Field(30.0, gt=0, description="how often a running job saves a checkpoint")
    MAX_ATTEMPTS: int = Field(3, ge=1, description="attempts before a job whose worker keeps dying fails")
    MODEL_CACHE_BYTES: int = Field(256 * 1024 * 1024, ge=0, description="loaded models kept for predictions")


@lru_cache
def get_settings() -> Settings:
    return Settings()
