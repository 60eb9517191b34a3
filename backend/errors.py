"""One exception tree for the whole backend.

Every class carries the HTTP status and the snake_case error code that the one Starlette handler
renders as `{"error": {"code", "message"}}`. Instances may override the code (`code=`) while
keeping their class's status. Outbound failures (Kommo, ESPs) live under `UpstreamError`, whose
subclasses tell the worker whether to retry.

    MailsyncError                     500 internal_error
    ├── ConfigurationError            500 configuration_error   (start-up: bad or missing setting)
    ├── BadRequest                    400 bad_request
    │   └── MalformedBody             400 malformed_body
    ├── Unauthorized                  401 invalid_token
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not_found
    ├── Conflict                      409 conflict
    ├── Gone                          410 gone
    ├── PayloadTooLarge               413 payload_too_large
    ├── Unprocessable                 422 unprocessable
    └── UpstreamError                 502 upstream_error        (a remote service failed)
        ├── UpstreamUnauthorized      502 upstream_unauthorized (401: refresh, then needs_reauth)
        ├── UpstreamForbidden         502 upstream_forbidden    (402/403: account blocked, unpaid)
        ├── UpstreamNotFound          502 upstream_not_found
        ├── UpstreamRateLimited       503 rate_limited          (retry after `retry_after` s)
        ├── UpstreamUnavailable       503 upstream_unavailable  (5xx, timeouts, connection errors)
        └── PermanentRefusal          502 permanent_refusal     (never retried: compliance state,
                                                                 fake address, validation)
"""

from __future__ import annotations


class MailsyncError(Exception):
    status_code = 500
    code = "internal_error"
    retryable = False

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.default_message()
        if code is not None:
            self.code = code

    @classmethod
    def default_message(cls) -> str:
        return cls.code.replace("_", " ").capitalize()

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class ConfigurationError(MailsyncError):
    code = "configuration_error"


class BadRequest(MailsyncError):
    status_code = 400
    code = "bad_request"


class MalformedBody(BadRequest):
    code = "malformed_body"


class Unauthorized(MailsyncError):
    status_code = 401
    code = "invalid_token"


class Forbidden(MailsyncError):
    status_code = 403
    code = "forbidden"


class NotFound(MailsyncError):
    status_code = 404
    code = "not_found"


class Conflict(MailsyncError):
    status_code = 409
    code = "conflict"


class Gone(MailsyncError):
    status_code = 410
    code = "gone"


class PayloadTooLarge(MailsyncError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(MailsyncError):
    status_code = 422
    code = "unprocessable"


class UpstreamError(MailsyncError):
    """A remote service (Kommo, MailerLite, Mailchimp) failed or refused."""

    status_code = 502
    code = "upstream_error"
    retryable = True

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        service: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.service = service
        self.status = status
        self.retry_after = retry_after


class UpstreamUnauthorized(UpstreamError):
    code = "upstream_unauthorized"


class UpstreamForbidden(UpstreamError):
    code = "upstream_forbidden"
    retryable = False


class UpstreamNotFound(UpstreamError):
    code = "upstream_not_found"
    retryable = False


class UpstreamRateLimited(UpstreamError):
    status_code = 503
    code = "rate_limited"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class PermanentRefusal(UpstreamError):
    """The remote side refused this particular contact for good; retrying cannot help."""

    code = "permanent_refusal"
    retryable = False
