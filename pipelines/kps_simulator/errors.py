"""The gateway's and KPS's error answers: an HTTP status plus `{error_code, error_msg}`."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer: HTTP status plus the `{error_code, error_msg}` body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(
        404,
        "APIGW.0101",
        "The API does not exist or has not been published in the environment.",
    )


def project_unavailable() -> ApiError:
    return ApiError(403, "APIGW.0310", "The project is unavailable.")


def bad_credentials(why: str) -> ApiError:
    return ApiError(401, "APIGW.0301", f"Incorrect IAM authentication information: {why}")


def parameter_error() -> ApiError:
    return ApiError(400, "KPS.0002", "parameter error")


def throttled(retry_after: float | None) -> ApiError:
    headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
    return ApiError(429, "APIGW.0308", "The throttling threshold has been reached.", headers)


def _seconds(value: float) -> str:
    """Whole seconds as HTTP wants them; a fraction is kept so tests can wait briefly."""
    return str(int(value)) if float(value).is_integer() else str(value)
