"""Every refusal as `{"error": {"code", "message"}}`, in one place, and the cap on request bodies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "not_ready",
    413: "request_too_large",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """A refusal the client can act on; nothing was changed."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class BodyTooLarge(Exception):
    """The request body passed the cap while it was being read."""


def not_found() -> ApiError:
    """The same answer for a job that does not exist and one of another key: reveals nothing."""
    return ApiError(404, "not_found", "No video with that id.")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def validation_message(err: ValidationError | RequestValidationError) -> str:
    """The first problem, naming the field; never echoes the value sent (it may be huge or secret)."""
    first: dict[str, Any] = dict(err.errors()[0])
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    if first.get("type") == "missing":
        return f"{where or 'a field'} is required."
    msg = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    return f"{where}: {msg}." if where else f"{msg}."


def install(app: FastAPI) -> None:
    """Route every error through one shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.code, err.message, err.headers)

    @app.exception_handler(BodyTooLarge)
    async def _large(_: Request, err: BodyTooLarge) -> JSONResponse:
        return error_response(413, "request_too_large", str(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid_request", validation_message(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(err.status_code, "error")
        message = "No such route." if err.status_code == 404 else str(err.detail)
        return error_response(err.status_code, code, message, dict(err.headers or {}))


class BodyLimit:
    """Refuse bodies over `limit` bytes: at once from Content-Length, or as soon as the stream passes it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        message = f"The request body is larger than {self.limit // (1024 * 1024)} MB."
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            response = error_response(413 if declared.isdigit() else 400, "request_too_large", message)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(message)
            return msg

        await self.app(scope, counted, send)
