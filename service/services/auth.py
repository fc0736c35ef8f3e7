"""API keys: creation, verification (constant-time, cached briefly), and when they are required."""

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.db import session_scope
from service.errors import FitserveError
from service.models import ApiKey
from service.repositories import keys as key_repo

PREFIX = "fs"
MAX_CACHED_KEYS = 10_000  # past this many, stale entries go: a guesser's made-up key ids are cached too


class Unauthorized(FitserveError):
    status_code = 401

    def __init__(self, detail: str):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, owner_id: str, name: str | None) -> tuple[ApiKey, str]:
    """A new key; the returned token is shown once and never stored."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = key_repo.add_key(session, ApiKey(id=key_id, owner_id=owner_id, name=name, secret_sha256=hash_secret(secret)))
    return key, f"{PREFIX}_{key_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


@dataclass
class _Cached:
    owner_id: str | None  # None: no such active key
    secret_sha256: str
    until: float


class KeyVerifier:
    """Token -> owner id. Looks keys up by their public id and compares hashes in constant time."""

    def __init__(self, cache_seconds: float):
        self.cache_seconds = cache_seconds  # FITSERVE_KEY_CACHE_SECONDS: a revoked key stops working within it
        self.cache: dict[str, _Cached] = {}
        self.any_key: tuple[bool, float] = (False, 0.0)
        self.lock = threading.Lock()

    def owner_of(self, token: str) -> str:
        """The token's owner; reads the database when the key's cached entry is missing or stale."""
        key_id, secret = self.parts_of(token)
        cached = self.fresh_entry(key_id)
        if cached is None:
            until = time.monotonic() + self.cache_seconds  # counted from before the read, so a revoke is never cached longer
            with session_scope(read_only=True) as s:
                key = key_repo.get_active_key(s, key_id)
            cached = _Cached(key.owner_id if key else None, key.secret_sha256 if key else "", until)
            with self.lock:
                if len(self.cache) >= MAX_CACHED_KEYS:
                    now = time.monotonic()
                    self.cache = {k: entry for k, entry in self.cache.items() if entry.until >= now}
                self.cache[key_id] = cached
        return self.check(cached, secret)

    def cached_owner_of(self, token: str) -> str | None:
        """The owner from the cache alone, without touching the database; None when `owner_of` must look it up."""
        key_id, secret = self.parts_of(token)
        cached = self.fresh_entry(key_id)
        return None if cached is None else self.check(cached, secret)

    def parts_of(self, token: str) -> tuple[str, str]:
        parts = split_token(token)
        if parts is None:
            raise Unauthorized("malformed API key")
        return parts

    def fresh_entry(self, key_id: str) -> _Cached | None:
        with self.lock:
            cached = self.cache.get(key_id)
        return cached if cached is not None and cached.until >= time.monotonic() else None

    @staticmethod
    def check(cached: _Cached, secret: str) -> str:
        if cached.owner_id is None or not hmac.compare_digest(cached.secret_sha256, hash_secret(secret)):
            raise Unauthorized("invalid or revoked API key")
        return cached.owner_id

    def keys_exist(self) -> bool:
        """Whether any active key exists; reads the database when the cached answer is stale."""
        exists = self.cached_keys_exist()
        if exists is None:
            until = time.monotonic() + self.cache_seconds
            with session_scope(read_only=True) as s:
                exists = key_repo.any_active_key(s)
            self.any_key = (exists, until)
        return exists

    def cached_keys_exist(self) -> bool | None:
        """`keys_exist` from the cache alone; None when it must be looked up."""
        exists, until = self.any_key
        return exists if until >= time.monotonic() else None
