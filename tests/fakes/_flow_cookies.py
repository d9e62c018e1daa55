"""labs.google cookies: the browser-export cookie.json the bot reads, and the Cookie header the server checks."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, Literal

SESSION_COOKIE = "__Secure-next-auth.session-token"


def new_session_cookie() -> str:
    """A NextAuth-JWE-looking value, long enough that chunking it is plausible."""
    return "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0.." + secrets.token_urlsafe(600)


def cookie_file_content(
    session_value: str,
    *,
    bearer: str | None,
    chunked: bool,
    fmt: Literal["list", "object"],
    expiry: float,
) -> Any:
    """What a browser export extension writes, plus the synthetic `authorization` entry when `bearer` is given."""
    if chunked:
        half = len(session_value) // 2
        session = [(f"{SESSION_COOKIE}.0", session_value[:half]), (f"{SESSION_COOKIE}.1", session_value[half:])]
    else:
        session = [(SESSION_COOKIE, session_value)]
    pairs = [
        ("_ga", "GA1.1.1234567890.1760000000"),
        ("__Host-next-auth.csrf-token", secrets.token_hex(32) + "%7C" + secrets.token_hex(32)),
        *session,
        ("__Secure-next-auth.callback-url", "https%3A%2F%2Flabs.google%2Ffx%2Ftools%2Fflow"),
        ("email", "user%40example.com"),
    ]
    if fmt == "object":
        content: dict[str, str] = dict(pairs)
        if bearer is not None:
            content["authorization"] = f"Bearer {bearer}"
        return content
    if fmt == "list":
        entries: list[dict[str, Any]] = [_cookie_object(name, value, expiry) for name, value in pairs]
        if bearer is not None:
            entries.append({"name": "authorization", "value": f"Bearer {bearer}"})
        return entries
    raise ValueError(f"fmt must be 'list' or 'object', not {fmt!r}")


def _cookie_object(name: str, value: str, expiry: float) -> dict[str, Any]:
    host_only = not name.startswith("_ga")
    return {
        "domain": "labs.google" if host_only else ".labs.google",
        "expirationDate": round(expiry, 6),
        "hostOnly": host_only,
        "httpOnly": name.startswith(("__Secure", "__Host")),
        "name": name,
        "path": "/",
        "sameSite": "lax",
        "secure": True,
        "session": False,
        "storeId": "0",
        "value": value,
    }


def parse_cookie_headers(headers: Iterable[str]) -> dict[str, str]:
    jar: dict[str, str] = {}
    for header in headers:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                jar[name.strip()] = value.strip()
    return jar


def session_values(jar: dict[str, str]) -> list[str]:
    """The session cookie as sent: whole, and/or joined from its `.0`, `.1`, ... chunks."""
    values = [jar[SESSION_COOKIE]] if jar.get(SESSION_COOKIE) else []
    chunks: list[str] = []
    while (chunk := jar.get(f"{SESSION_COOKIE}.{len(chunks)}")) is not None:
        chunks.append(chunk)
    if chunks:
        values.append("".join(chunks))
    return values
