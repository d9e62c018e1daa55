"""Cookie names and the checks a cookie export must pass, each failure a one-line message saying what to fix."""

from __future__ import annotations

import re
from typing import Any

from bot.backends.flow.errors import CookieFileError

MAX_COOKIE_FILE_BYTES = 1024 * 1024
SESSION_COOKIE = "__Secure-next-auth.session-token"
AUTHORIZATION_ENTRY = "authorization"

_SESSION_RE = re.compile(r"^(?:__Secure-)?next-auth\.session-token(?:\.(\d{1,4}))?$")
# RFC 6265 token characters are stricter; we only refuse what would break or split the Cookie header.
_BAD_NAME_RE = re.compile(r"[\x00-\x20\x7f;=,\"]")
_BAD_VALUE_RE = re.compile(r"[\x00-\x1f\x7f;]")
TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")
_BEARER_RE = re.compile(r"^bearer(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)


def is_session_cookie(name: str) -> bool:
    """Whether ``name`` is the NextAuth session cookie, whole or one of its ``.N`` chunks."""
    return _SESSION_RE.match(name) is not None


def session_chunk_index(name: str) -> int | None:
    """Chunk number of a session cookie name (``None`` for the whole cookie); ValueError for other names."""
    match = _SESSION_RE.match(name)
    if match is None:
        raise ValueError("not a session cookie name")
    return None if match.group(1) is None else int(match.group(1))


def kind_of(value: object) -> str:
    """Describe a JSON value's type for an error message, without its content."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(name: str) -> str:
    """Quote a cookie name for a message; names are not secret, but keep them short."""
    return repr(name if len(name) <= 48 else name[:45] + "...")


def is_auth(name: str) -> bool:
    return name.lower() == AUTHORIZATION_ENTRY


def list_entries(raw: list[Any], source: str) -> list[dict[str, Any]]:
    if not raw:
        raise CookieFileError(
            f"{source} holds no cookies (an empty list): export the cookies while signed in to labs.google"
        )
    entries = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise CookieFileError(
                f"{source}: entry {number} is {kind_of(item)}, not a cookie object with 'name' and 'value'"
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            what = "has no 'name'" if name is None or name == "" else f"has a 'name' that is {kind_of(name)}"
            raise CookieFileError(f"{source}: entry {number} {what}; every cookie needs a text name")
        if "value" not in item or item["value"] is None:
            raise CookieFileError(f"{source}: entry {number} (cookie {_show(name)}) has no 'value'")
        if not isinstance(item["value"], str):
            raise CookieFileError(
                f"{source}: entry {number} (cookie {_show(name)}) has a 'value' that is "
                f"{kind_of(item['value'])}; it must be text"
            )
        entries.append(item)
    return entries


def object_entries(raw: dict[str, Any], source: str) -> list[dict[str, Any]]:
    if not raw:
        raise CookieFileError(
            f"{source} holds no cookies (an empty object): export the cookies while signed in to labs.google"
        )
    entries = []
    for name, value in raw.items():
        if not name:
            raise CookieFileError(f"{source}: a cookie has an empty name")
        if not isinstance(value, str):
            raise CookieFileError(
                f"{source}: cookie {_show(name)} has a value that is {kind_of(value)}; it must be text"
            )
        entries.append({"name": name, "value": value})
    return entries


def validate_entries(entries: tuple[dict[str, Any], ...], source: str) -> int:
    """Check the cross-entry rules; return the index of the ``authorization`` entry."""
    auth: list[int] = []
    has_session = False
    empty_session: str | None = None
    for index, entry in enumerate(entries):
        name, value = entry["name"], entry["value"]
        if is_auth(name):
            auth.append(index)
            continue
        if _BAD_NAME_RE.search(name):
            raise CookieFileError(f"{source}: cookie {_show(name)} has a name that cannot be sent in a Cookie header")
        if _BAD_VALUE_RE.search(value):
            raise CookieFileError(
                f"{source}: cookie {_show(name)} has a value with ';' or control characters, "
                "which cannot be sent in a Cookie header; re-export it"
            )
        if is_session_cookie(name):
            has_session = has_session or bool(value)
            empty_session = empty_session or (None if value else name)
    if not has_session and empty_session is not None:
        raise CookieFileError(
            f"{source}: the session cookie {_show(empty_session)} is empty: "
            "export the cookies again while signed in to labs.google/fx"
        )
    if not has_session:
        raise CookieFileError(
            f"{source} has no session cookie ({SESSION_COOKIE} or its .0/.1 chunks): "
            "export the cookies while signed in to labs.google/fx"
        )
    if not auth:
        raise CookieFileError(
            f"{source} has no 'authorization' entry: add "
            '{"name": "authorization", "value": "Bearer ya29..."} with the token from the browser'
        )
    if len(auth) > 1:
        raise CookieFileError(f"{source} has {len(auth)} 'authorization' entries: keep only one")
    token_of(entries[auth[0]]["value"], source)
    return auth[0]


def token_of(value: str, source: str = "cookie file") -> str:
    """The token in an ``authorization`` value, or CookieFileError saying what is wrong with it."""
    match = _BEARER_RE.match(value.strip())
    if match is None:
        raise CookieFileError(
            f"{source}: the 'authorization' value must start with 'Bearer ' followed by the token (ya29...)"
        )
    token = (match.group(1) or "").strip()
    if not token:
        raise CookieFileError(f"{source}: the 'authorization' entry has 'Bearer ' but no token after it")
    if not TOKEN_RE.match(token):
        raise CookieFileError(
            f"{source}: the token in the 'authorization' entry contains spaces or characters "
            "not allowed in an HTTP header"
        )
    return token
