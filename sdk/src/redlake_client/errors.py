"""Every failure the SDK raises, each with the CLI exit code scripts rely on.

API errors carry the platform's stable ``code`` (``{"error": {"code", "message", "details"}}``);
match on it, never on the message."""

from __future__ import annotations

from typing import Any

# Exit codes of the ``redlake`` CLI (documented in sdk/README.md).
EXIT_OK = 0
EXIT_ERROR = 1  # anything not listed below
EXIT_REFUSED = 2  # refused by policy: purpose, operation, calls, budget, expiry, ...
EXIT_VERIFICATION_FAILED = 3  # verify found the platform's word and the chain disagree
EXIT_AUTH = 4  # no token, or an expired, revoked or wrong one
EXIT_NOT_FOUND = 5
EXIT_UNAVAILABLE = 6  # platform or chain unreachable, or the chain is not the space's (chain id)
EXIT_JOB_FAILED = 7  # the job ended without a result (withheld, rejected, refunded)
EXIT_KEY = 8  # the signing key: missing, wrong permissions, wrong passphrase
EXIT_INVALID = 9  # the request itself is invalid (parameters, signature, idempotency key)
EXIT_USAGE = 64  # the command line itself is wrong

POLICY_CODES = frozenset(
    {
        "purpose_not_allowed",
        "operation_not_allowed",
        "calls_exhausted",
        "budget_exhausted",
        "agreement_expired",
        "agreement_not_active",
        "epsilon_invalid",
        "column_not_public",
        "offer_not_published",
        "insufficient_funds",
        "role_required",
        "permission_denied",
        "wallet_required",
        "cohort_too_small",
    }
)
AUTH_CODES = frozenset({"not_authenticated", "authentication_failed"})
UNAVAILABLE_CODES = frozenset({"chain_unavailable", "broker_unavailable", "chain_mismatch", "throttled"})
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
AUTH_HINT = "Your token is missing, expired, revoked or wrong: log in again (`redlake login`) or set REDLAKE_TOKEN."


class RedlakeError(Exception):
    """Base of every SDK error."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(RedlakeError):
    """The platform answered with an error: its stable ``code``, message, details, HTTP status."""

    def __init__(self, code: str, message: str, *, status: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.status = status
        self.details = details or {}
        self.api_message = message


class AuthenticationError(ApiError):
    exit_code = EXIT_AUTH


class PolicyRefused(ApiError):
    exit_code = EXIT_REFUSED


class NotFoundError(ApiError):
    exit_code = EXIT_NOT_FOUND


class InvalidRequest(ApiError):
    exit_code = EXIT_INVALID


class ServiceUnavailable(ApiError):
    exit_code = EXIT_UNAVAILABLE


def api_error(status: int, body: Any) -> ApiError:
    """The typed error for an error response (``body`` parsed JSON, or None)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        code = {401: "not_authenticated", 404: "not_found", 429: "throttled"}.get(status, "http_error")
        kind = _class_for(code, status)
        message = f"HTTP {status} without an error body." + (f" {AUTH_HINT}" if kind is AuthenticationError else "")
        return kind(code, message, status=status)
    code = str(error.get("code", "http_error"))
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    kind = _class_for(code, status)
    message = str(error.get("message", ""))
    if kind is AuthenticationError:
        # The platform says only "Invalid token." for an expired, revoked or unknown one alike.
        message = f"{message} {AUTH_HINT}".strip()
    return kind(code, message, status=status, details=details)


def _class_for(code: str, status: int) -> type[ApiError]:
    if code in AUTH_CODES or status == 401:
        return AuthenticationError
    if code in POLICY_CODES:
        return PolicyRefused
    if code == "not_found" or status == 404:
        return NotFoundError
    if code in UNAVAILABLE_CODES or status in UNAVAILABLE_STATUSES:
        return ServiceUnavailable
    if 400 <= status < 500:
        return InvalidRequest
    return ApiError


class NetworkError(RedlakeError):
    """The platform could not be reached (or the connection dropped) after every retry."""

    exit_code = EXIT_UNAVAILABLE


class ChainMismatch(RedlakeError):
    """The chain node answers for another chain than the space's (a wrong chain id)."""

    exit_code = EXIT_UNAVAILABLE


class ChainError(RedlakeError):
    """The chain node is unreachable or refused a transaction."""

    exit_code = EXIT_UNAVAILABLE


class KeyFileError(RedlakeError):
    """The signing key cannot be used: missing, readable by others, or a wrong passphrase."""

    exit_code = EXIT_KEY


class TamperedResponse(RedlakeError):
    """The platform's answer disagrees with what the SDK recomputed (refused before signing)."""

    exit_code = EXIT_VERIFICATION_FAILED


class VerificationFailed(RedlakeError):
    """``verify`` found a check that fails; ``report`` lists every check."""

    exit_code = EXIT_VERIFICATION_FAILED

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class JobFailed(RedlakeError):
    """The job ended without a result: ``status`` and the platform's failure code."""

    exit_code = EXIT_JOB_FAILED

    def __init__(self, message: str, *, status: str, code: str | None, job: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.job = job
