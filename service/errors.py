"""The one error hierarchy: each error carries its HTTP status; all answer `{"detail": ...}`."""

import math
from collections.abc import Sequence


class FitserveError(Exception):
    status_code = 500

    def __init__(self, detail, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(FitserveError):
    status_code = 400


class NotFound(FitserveError):
    status_code = 404


class Conflict(FitserveError):
    status_code = 409


class RequestTimeout(FitserveError):
    status_code = 408


class PayloadTooLarge(FitserveError):
    status_code = 413


class UnsupportedMediaType(FitserveError):
    status_code = 415


class StorageBudgetExceeded(FitserveError):
    """The owner stores its FITSERVE_MAX_STORED_BYTES_PER_OWNER already: nothing new until it deletes some."""

    status_code = 403


class TooManyRequests(FitserveError):
    status_code = 429

    def __init__(self, detail: str, retry_after: float):
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class InvalidField(FitserveError):
    """A 422 shaped like FastAPI's own validation errors, naming the field."""

    status_code = 422

    def __init__(self, loc: Sequence[str | int], msg: str, where: str = "body"):
        super().__init__([{"type": "value_error", "loc": [where, *loc], "msg": msg}])


class InsufficientStorage(FitserveError):
    """The database's disk is full (or its file at FITSERVE_DB_MAX_BYTES): nothing more can be written."""

    status_code = 507


class ServerBusy(FitserveError):
    """No database connection came free within FITSERVE_DB_POOL_TIMEOUT_SECONDS: busy, not broken."""

    status_code = 503

    def __init__(self):
        detail = "the server is busy: no database connection came free in time (FITSERVE_DB_POOL_SIZE); retry shortly"
        super().__init__(detail, headers={"Retry-After": "1"})


class DatabaseCorrupt(FitserveError):
    """The database's file (or a PostgreSQL page or index) is corrupt: only a restore brings it back."""

    status_code = 503
