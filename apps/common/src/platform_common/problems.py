"""Errors as RFC 9457 problem details (``application/problem+json``), never with internals inside."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from platform_common.logs import request_id_var

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    """The body of every error response."""

    status: int
    title: str
    type: str = "about:blank"
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(HTTPException):
    """Raise to answer with a specific problem: ``ProblemError(409, "Tool exists", detail=...)``."""

    def __init__(
        self,
        status_code: int,
        title: str,
        *,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=title, headers=headers)
        self.title = title
        self.problem_detail = detail
        self.errors = errors


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    title: str,
    *,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response[Problem]:
    body = Problem(
        status=status,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_var.get(),
        errors=errors,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    if isinstance(exc, ProblemError):
        return problem_response(
            request,
            exc.status_code,
            exc.title,
            detail=exc.problem_detail,
            headers=exc.headers,
            errors=exc.errors,
        )
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [e for e in exc.extra if isinstance(e, dict)]
    title = exc.detail or "Error"
    return problem_response(request, exc.status_code, title, headers=exc.headers, errors=errors)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    logger.error("unhandled error on %s %s", request.method, request.scope.get("path_template"), exc_info=exc)
    return problem_response(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        detail="The server failed to handle the request; quote the request id when reporting it.",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_exception,
    Exception: _unexpected,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "Problem", "ProblemError", "problem_response"]
