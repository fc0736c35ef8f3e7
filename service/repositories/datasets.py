"""Queries on uploaded datasets."""

from sqlalchemy import select
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
