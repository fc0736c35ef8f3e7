"""Queries on uploaded datasets."""

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, defer

from service.models import Dataset
from service.repositories.jobs import owned_by


def add_dataset(session: Session, dataset: Dataset) -> Dataset:
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: str, owner_id: str | None) -> Dataset | None:
    """The dataset's description (its bytes are loaded only if read)."""
    query = select(Dataset).options(defer(Dataset.data)).where(Dataset.id == dataset_id, owned_by(Dataset.owner_id, owner_id))
    return session.scalar(query)


def get_dataset_bytes(session: Session, dataset_id: str) -> bytes | None:
    return session.scalar(select(Dataset.data).where(Dataset.id == dataset_id))


def get_target_moments(session: Session, dataset_ids: Collection[str]) -> dict[str, dict | None]:
    """Each dataset's stored target moments, by id (by primary key, whoever owns it); ids not found are absent."""
    rows = session.execute(select(Dataset.id, Dataset.target_moments).where(Dataset.id.in_(dataset_ids)))
    return {dataset_id: moments for dataset_id, moments in rows}


def list_datasets(session: Session, owner_id: str | None, after: tuple[datetime, str] | None, limit: int) -> list[Dataset]:
    """Newest first, their bytes not loaded; `after` is the (created_at, id) of the last of the previous page."""
    query = select(Dataset).options(defer(Dataset.data)).where(owned_by(Dataset.owner_id, owner_id))
    if after is not None:
        created_at, dataset_id = after
        query = query.where(
            or_(Dataset.created_at < created_at, and_(Dataset.created_at == created_at, Dataset.id < dataset_id))
        )
    return list(session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id.desc()).limit(limit)))
