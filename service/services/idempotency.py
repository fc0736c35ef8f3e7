"""Idempotency-Key: the first response to a key is stored and replayed; keys are per owner and expire.

The key is claimed in a short transaction of its own, so a concurrent retry sees it in flight (409);
the response is stored in the same transaction that creates the resource, so both land or neither.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import session_scope
from service.errors import Conflict, InvalidField
from service.models import IdempotencyKey, utcnow
from service.repositories import keys as key_repo


@dataclass
class Replay:
    status_code: int
    body: dict
    location: str | None


def fingerprint(content) -> str:
    """SHA-256 of the request's content, independent of key order and whitespace."""
    raw = content if isinstance(content, bytes) else json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()


def claim(owner_id: str | None, scope: str, key: str, print_: str, ttl_seconds: float) -> Replay | None:
    """Claim `key` for this request; a Replay if it already completed. Raises 409 / 422 otherwise."""
    owner = owner_id or ""
    with session_scope() as s:
        row = key_repo.get_idempotency_key(s, owner, scope, key)
        if row is not None and row.created_at < utcnow() - timedelta(seconds=ttl_seconds):
            key_repo.delete_idempotency_key(s, owner, scope, key)  # expired: the key is free again
            row = None
        if row is None:
            try:
                key_repo.add_idempotency_key(s, IdempotencyKey(owner_id=owner, scope=scope, key=key, fingerprint=print_))
                return None
            except IntegrityError:  # a concurrent request claimed it first (PostgreSQL)
                s.rollback()
                row = key_repo.get_idempotency_key(s, owner, scope, key)
    if row.fingerprint != print_:
        raise InvalidField(("Idempotency-Key",), "this key was used with a different request body", where="header")
    if row.status_code is None:
        raise Conflict("a request with this Idempotency-Key is still in flight; retry later")
    return Replay(row.status_code, row.response, row.location)


def complete(session: Session, owner_id: str | None, scope: str, key: str, status_code: int, body: dict, location: str) -> None:
    """Store the response, in the same transaction as what the request created."""
    row = key_repo.get_idempotency_key(session, owner_id or "", scope, key)
    row.status_code, row.response, row.location = status_code, body, location


def release(owner_id: str | None, scope: str, key: str) -> None:
    """The request failed: free the key, so a corrected retry can use it."""
    with session_scope() as s:
        key_repo.delete_idempotency_key(s, owner_id or "", scope, key)
