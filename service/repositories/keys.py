"""Queries on API keys and idempotency keys."""

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.models import ApiKey, IdempotencyKey, utcnow


def add_key(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


def get_active_key(session: Session, key_id: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))


def any_active_key(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> bool:
    query = update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    return session.execute(query.returning(ApiKey.id)).scalar() is not None


def get_idempotency_key(session: Session, owner_id: str, scope: str, key: str) -> IdempotencyKey | None:
    return session.get(IdempotencyKey, (owner_id, scope, key), populate_existing=True)


def add_idempotency_key(session: Session, row: IdempotencyKey) -> None:
    session.add(row)
    session.flush()


def delete_idempotency_key(session: Session, owner_id: str, scope: str, key: str) -> None:
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner_id == owner_id, IdempotencyKey.scope == scope, IdempotencyKey.key == key
        )
    )


def delete_idempotency_keys_before(session: Session, cutoff: datetime) -> int:
    return session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)).rowcount
