"""Problems the API answers with a 4xx or 5xx: a status, a stable code and one sentence."""

from __future__ import annotations


class ApiError(Exception):
    """Raised anywhere in a request; the app turns it into an :class:`~covidlens.serve.schemas.ErrorResponseV1`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class UploadAborted(Exception):
    """The client went away before its upload was complete: nothing can be answered."""
