"""Exceptions raised by the client.

Every answer of the API with a 4xx/5xx status carries {"error": {"code", "message", "field"}};
it is raised as a JazariError subclass chosen by the status (NotFound for 404, and so on), with
those three values as attributes. Failing to reach the server at all is ConnectionFailed
(status 0); wait() past its timeout raises WaitTimeout, a TimeoutError."""

from __future__ import annotations

from typing import Any, Mapping


class JazariError(Exception):
    """An error answer of the Jazari API (or, status 0, no answer at all).

    status: the HTTP status (0 when the server could not be reached).
    code: the API's machine-readable code ("invalid", "not_found", "already_ended", ...).
    message: the API's human-readable message.
    field: the request field, query parameter or path part at fault, or None.
    body: the parsed error body (or the raw text when it was not JSON).
    headers: the answer's headers (lower-case names), e.g. "retry-after"."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, code, message, field)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        where = " (field %s)" % self.field if self.field else ""
        if self.status:
            return "%d %s: %s%s" % (self.status, self.code, self.message, where)
        return "%s: %s" % (self.code, self.message)


class InvalidRequest(JazariError):
    """400: bad input; `field` names what is wrong (a body field, e.g. "params.lr")."""


class Unauthorized(JazariError):
    """401: no token, an unknown or revoked token, or an expired one."""


class Forbidden(JazariError):
    """403: the caller's role does not allow the request."""


class NotFound(JazariError):
    """404: no such object (another user's job is answered the same way)."""


class MethodNotAllowed(JazariError):
    """405: the path exists, the method does not (an older server, for new routes)."""


class Conflict(JazariError):
    """409: the object's state does not allow it (a job already ended, a name taken...)."""


class PayloadTooLarge(JazariError):
    """413: the body is too large or nested too deep."""


class TooManyRequests(JazariError):
    """429: rate limited (see retry_after), too many pending jobs or log streams."""

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying, from the Retry-After header (None when absent)."""
        v = self.headers.get("retry-after")
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None


class ServerError(JazariError):
    """5xx: the server failed (500), is stopping (503) or out of disk (507)."""


class ServiceUnavailable(ServerError):
    """503: the service is shutting down (or failing)."""


class InsufficientStorage(ServerError):
    """507: the service's disk is full; reads still work."""


class ConnectionFailed(JazariError):
    """The server could not be reached, or the connection broke (status 0, code "connection")."""


class WaitTimeout(TimeoutError):
    """Client.wait() ran past its timeout; `job` is the last record seen (None if none)."""

    def __init__(self, job_id: int, timeout: float, job: Mapping[str, Any] | None = None) -> None:
        state = job.get("state") if job else None
        super().__init__("job %d did not end within %g s%s" % (
            job_id, timeout, " (it is %s)" % state if state else ""))
        self.job_id = job_id
        self.timeout = timeout
        self.job = job


_BY_STATUS: dict[int, type[JazariError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    405: MethodNotAllowed, 409: Conflict, 413: PayloadTooLarge, 429: TooManyRequests,
    503: ServiceUnavailable, 507: InsufficientStorage,
}


def error_for(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JazariError:
    """The exception for an error answer: status, and its parsed body (JSON, or text)."""
    code, message, field = "http_%d" % status, "HTTP %d" % status, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        e = body["error"]
        code = str(e.get("code") or code)
        message = str(e.get("message") or message)
        field = e.get("field") if isinstance(e.get("field"), str) else None
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else JazariError
    return cls(status, code, message, field, body, headers)
