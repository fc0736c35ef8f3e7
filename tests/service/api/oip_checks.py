"""A schemathesis check loaded by the OIP conformance run (SCHEMATHESIS_HOOKS): errors answer the protocol's body."""

import schemathesis


@schemathesis.check
def protocol_error_body(ctx, response, case) -> bool | None:
    """Every error under /v2 is `{"error": "<message>"}`, whatever its status, never FastAPI's `{"detail": ...}`."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str) and body["error"]):
        raise AssertionError(f"{response.status_code} answered {response.text[:300]!r}, not {{\"error\": ...}}")
    return None
