"""Stable error codes and their single mapping to HTTP.

Every domain exception carries one ``ErrorCode``; clients and tests match on the code, never on
the message. Responses are ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ErrorCode(enum.StrEnum):
    # generic API
    VALIDATION_FAILED = "validation_failed"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    THROTTLED = "throttled"
    CONFLICT = "conflict"
    # the request's own shape, refused before it is parsed
    BODY_TOO_LARGE = "body_too_large"
    NESTING_TOO_DEEP = "nesting_too_deep"
    TOO_MANY_FIELDS = "too_many_fields"
    # accounts
    ROLE_REQUIRED = "role_required"
    WALLET_EXISTS = "wallet_exists"
    CHALLENGE_INVALID = "challenge_invalid"
    SIGNATURE_INVALID = "signature_invalid"
    # vault
    BLOB_TAMPERED = "blob_tampered"
    KEY_TAMPERED = "key_tampered"
    KEK_UNKNOWN = "kek_unknown"
    KEYRING_NOT_HELD = "keyring_not_held"  # ISSUE-12: this process's role may not open it
    # upload and ingest
    FILE_MISSING = "file_missing"
    UNEXPECTED_FILE = "unexpected_file"
    FILE_TOO_LARGE = "file_too_large"
    FILE_EMPTY = "file_empty"
    UNSUPPORTED_FORMAT = "unsupported_format"
    BINARY_CONTENT = "binary_content"
    INVALID_ENCODING = "invalid_encoding"
    MALFORMED_CSV = "malformed_csv"
    RAGGED_ROWS = "ragged_rows"
    MALFORMED_PARQUET = "malformed_parquet"
    PARQUET_SCHEMA_MISMATCH = "parquet_schema_mismatch"
    NO_ROWS = "no_rows"
    DUPLICATE_COLUMN = "duplicate_column"
    EMPTY_COLUMN_NAME = "empty_column_name"
    INVALID_COLUMN_NAME = "invalid_column_name"
    TOO_MANY_COLUMNS = "too_many_columns"
    UNSUPPORTED_COLUMN_TYPE = "unsupported_column_type"
    BOUNDS_INVALID = "bounds_invalid"
    BOUNDS_COLUMN_UNKNOWN = "bounds_column_unknown"
    DATASET_NOT_READY = "dataset_not_ready"
    # chain
    CHAIN_UNAVAILABLE = "chain_unavailable"
    BROKER_UNAVAILABLE = "broker_unavailable"
    CHAIN_MISMATCH = "chain_mismatch"
    CHAIN_REVERTED = "chain_reverted"
    DATASET_NOT_ON_CHAIN = "dataset_not_on_chain"
    WALLET_REQUIRED = "wallet_required"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    # policies and jobs
    PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
    OPERATION_NOT_ALLOWED = "operation_not_allowed"
    OFFER_NOT_PUBLISHED = "offer_not_published"
    AGREEMENT_NOT_ACTIVE = "agreement_not_active"
    AGREEMENT_EXPIRED = "agreement_expired"
    POLICY_INVALID = "policy_invalid"  # ISSUE-14: a stored policy document Redlake did not write
    CALLS_EXHAUSTED = "calls_exhausted"
    BUDGET_EXHAUSTED = "budget_exhausted"
    EPSILON_INVALID = "epsilon_invalid"
    COHORT_TOO_SMALL = "cohort_too_small"
    SIGNATURE_REPLAYED = "signature_replayed"
    SIGNATURE_EXPIRED = "signature_expired"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_OPERATION = "invalid_operation"
    ENCRYPTED_STORE_NOT_READY = "encrypted_store_not_ready"
    # why an operation's parameters were refused (``details.reason`` of invalid_operation)
    UNKNOWN_OPERATION = "unknown_operation"
    INVALID_PARAMETERS = "invalid_parameters"
    COLUMN_NOT_FOUND = "column_not_found"
    COLUMN_KIND = "column_kind"
    LEVEL_TOO_LOW = "level_too_low"
    DEPTH_EXCEEDED = "depth_exceeded"
    INCOMPLETE_COLUMN = "incomplete_column"
    COLUMN_UNBOUNDED = "column_unbounded"
    # why a job or an ingest ended without its result (``failure.code`` / ``error.code``)
    INGEST_ABANDONED = "ingest_abandoned"
    CHAIN_REFUSED = "chain_refused"
    COMPUTE_FAILED = "compute_failed"
    RELEASE_FAILED = "release_failed"
    SETTLE_REFUSED = "settle_refused"
    # privacy terms and accounting
    PRIVACY_TERMS_LOCKED = "privacy_terms_locked"
    PRIVACY_TERMS_INVALID = "privacy_terms_invalid"
    COLUMN_NOT_PUBLIC = "column_not_public"
    # the key custodian's refusals (a job's failure code; budget_exhausted and cohort_too_small too)
    USAGE_NOT_RECORDED = "usage_not_recorded"
    EPSILON_MISMATCH = "epsilon_mismatch"
    PARAMS_MISMATCH = "params_mismatch"
    RESULT_TAMPERED = "result_tampered"
    # ISSUE-12: an auditor's receipt check.
    CUSTODIAN_UNKNOWN = "custodian_unknown"
    RECEIPT_NOT_ON_CHAIN = "receipt_not_on_chain"
    RESULT_SHAPE_MISMATCH = "result_shape_mismatch"
    # ISSUE-13: algorithms and the tee engine.
    ALGORITHM_INVALID = "algorithm_invalid"
    ALGORITHM_NOT_APPROVED = "algorithm_not_approved"
    ALGORITHM_STATE_INVALID = "algorithm_state_invalid"
    ALGORITHM_REVOKED = "algorithm_revoked"
    SANDBOX_NOT_ALLOWED = "sandbox_not_allowed"
    TEE_JOB_FAILED = "tee_job_failed"
    TEE_UNAVAILABLE = "tee_unavailable"
    ATTESTATION_REFUSED = "attestation_refused"
    RESULT_SIGNATURE_INVALID = "result_signature_invalid"


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.NOT_AUTHENTICATED: status.HTTP_401_UNAUTHORIZED,
    ErrorCode.AUTHENTICATION_FAILED: status.HTTP_401_UNAUTHORIZED,
    ErrorCode.PERMISSION_DENIED: status.HTTP_403_FORBIDDEN,
    ErrorCode.ROLE_REQUIRED: status.HTTP_403_FORBIDDEN,
    ErrorCode.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: status.HTTP_405_METHOD_NOT_ALLOWED,
    ErrorCode.CONFLICT: status.HTTP_409_CONFLICT,
    ErrorCode.WALLET_EXISTS: status.HTTP_409_CONFLICT,
    ErrorCode.DATASET_NOT_READY: status.HTTP_409_CONFLICT,
    ErrorCode.FILE_TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.BODY_TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.THROTTLED: status.HTTP_429_TOO_MANY_REQUESTS,
    ErrorCode.CHAIN_REVERTED: status.HTTP_409_CONFLICT,
    ErrorCode.DATASET_NOT_ON_CHAIN: status.HTTP_409_CONFLICT,
    ErrorCode.WALLET_REQUIRED: status.HTTP_409_CONFLICT,
    ErrorCode.INSUFFICIENT_FUNDS: status.HTTP_402_PAYMENT_REQUIRED,
    ErrorCode.PURPOSE_NOT_ALLOWED: status.HTTP_403_FORBIDDEN,
    ErrorCode.OPERATION_NOT_ALLOWED: status.HTTP_403_FORBIDDEN,
    ErrorCode.OFFER_NOT_PUBLISHED: status.HTTP_409_CONFLICT,
    ErrorCode.AGREEMENT_NOT_ACTIVE: status.HTTP_409_CONFLICT,
    ErrorCode.AGREEMENT_EXPIRED: status.HTTP_409_CONFLICT,
    ErrorCode.POLICY_INVALID: status.HTTP_409_CONFLICT,  # ISSUE-14
    ErrorCode.CALLS_EXHAUSTED: status.HTTP_409_CONFLICT,
    ErrorCode.BUDGET_EXHAUSTED: status.HTTP_409_CONFLICT,
    ErrorCode.PRIVACY_TERMS_LOCKED: status.HTTP_409_CONFLICT,
    ErrorCode.COHORT_TOO_SMALL: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ErrorCode.SIGNATURE_REPLAYED: status.HTTP_409_CONFLICT,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: status.HTTP_409_CONFLICT,
    ErrorCode.ENCRYPTED_STORE_NOT_READY: status.HTTP_409_CONFLICT,
    ErrorCode.CUSTODIAN_UNKNOWN: status.HTTP_422_UNPROCESSABLE_ENTITY,  # ISSUE-12
    ErrorCode.RECEIPT_NOT_ON_CHAIN: status.HTTP_422_UNPROCESSABLE_ENTITY,  # ISSUE-12
    ErrorCode.ALGORITHM_NOT_APPROVED: status.HTTP_403_FORBIDDEN,  # ISSUE-13
    ErrorCode.ALGORITHM_STATE_INVALID: status.HTTP_409_CONFLICT,  # ISSUE-13
    ErrorCode.SANDBOX_NOT_ALLOWED: status.HTTP_403_FORBIDDEN,  # ISSUE-13
    ErrorCode.CHAIN_UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
    ErrorCode.BROKER_UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
    ErrorCode.CHAIN_MISMATCH: status.HTTP_503_SERVICE_UNAVAILABLE,
    # Integrity failures are the platform's problem, not the caller's: never a 4xx.
    ErrorCode.BLOB_TAMPERED: status.HTTP_500_INTERNAL_SERVER_ERROR,
    ErrorCode.KEY_TAMPERED: status.HTTP_500_INTERNAL_SERVER_ERROR,
    ErrorCode.KEK_UNKNOWN: status.HTTP_500_INTERNAL_SERVER_ERROR,
    ErrorCode.KEYRING_NOT_HELD: status.HTTP_500_INTERNAL_SERVER_ERROR,  # ISSUE-12
}


def http_status_for(code: ErrorCode) -> int:
    return _STATUS.get(code, status.HTTP_400_BAD_REQUEST)


class DomainError(Exception):
    """A failure the caller can understand. ``message`` must never contain a raw data value."""

    code: ErrorCode = ErrorCode.VALIDATION_FAILED

    def __init__(self, message: str, *, code: ErrorCode | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, "details": self.details}


class NotFound(DomainError):
    """The one "not found": another user's object is as absent as one that never existed, so
    the message names only the kind of thing asked for."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, what: str) -> None:
        super().__init__(f"No {what} has this id.")


class TransientError(DomainError):
    """The step can succeed later unchanged (a node, a database or a broker away): retried with
    backoff, never counted against the work's attempts."""


class AttemptFailed(Exception):
    """One attempt at a bounded piece of work failed and attempts remain: try again soon."""


def error_body(code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message, "details": details or {}}}


_DRF_CODES: dict[type[drf_exceptions.APIException], ErrorCode] = {
    drf_exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    drf_exceptions.AuthenticationFailed: ErrorCode.AUTHENTICATION_FAILED,
    drf_exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    drf_exceptions.NotFound: ErrorCode.NOT_FOUND,
    drf_exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    drf_exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    drf_exceptions.Throttled: ErrorCode.THROTTLED,
    drf_exceptions.ValidationError: ErrorCode.VALIDATION_FAILED,
    drf_exceptions.ParseError: ErrorCode.VALIDATION_FAILED,
}


def _request_limit_error(exc: Exception) -> DomainError | None:
    """Django's own limits on a request body (raised while DRF parses it) as domain errors; left to
    Django they would be an HTML 400 page."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return DomainError(
            f"The request body exceeds the limit of {limit} bytes.",
            code=ErrorCode.BODY_TOO_LARGE,
            details={"limit_bytes": limit},
        )
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return DomainError(
            f"The request has more than {limit} fields.", code=ErrorCode.TOO_MANY_FIELDS, details={"limit": limit}
        )
    if isinstance(exc, TooManyFilesSent):
        return DomainError("The request has more files than this endpoint takes.", code=ErrorCode.UNEXPECTED_FILE)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: one place that turns every failure into the error envelope."""
    # Imported here: rest_framework.views reads the API settings as it loads, and they name
    # dataspace.parsers, which needs this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    exc = _request_limit_error(exc) or exc
    if isinstance(exc, DomainError):
        if http_status_for(exc.code) >= 500:
            logger.error("integrity failure: %s (%s)", exc.code, exc.message)
        return Response({"error": exc.as_dict()}, status=http_status_for(exc.code))
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, drf_exceptions.APIException):
        return response
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), ErrorCode.VALIDATION_FAILED)
    detail_code = exc.get_codes()
    if isinstance(detail_code, str) and detail_code in ErrorCode._value2member_map_:
        code = ErrorCode(detail_code)
    if isinstance(exc, drf_exceptions.ValidationError):
        message = "The request is invalid; see details for each field."
        details: dict[str, Any] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    else:
        message = str(exc.detail)
        details = {}
    response.data = error_body(code, message, details)
    return response
