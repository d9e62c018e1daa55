"""The Flow cookie file: a browser cookie export plus the synthetic ``authorization`` entry.

Two layouts are read and written back unchanged apart from the values we update: the list of cookie objects
that browser export extensions write, and a plain ``{name: value}`` object. Error messages name the entry and
the cookie but never echo a value.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from bot.backends.flow._cookie_io import read_limited, write_atomic
from bot.backends.flow._cookie_rules import (
    AUTHORIZATION_ENTRY,
    MAX_COOKIE_FILE_BYTES,
    SESSION_COOKIE,
    TOKEN_RE,
    is_auth,
    is_session_cookie,
    kind_of,
    list_entries,
    object_entries,
    session_chunk_index,
    token_of,
    validate_entries,
)
from bot.backends.flow.errors import CookieFileError

__all__ = [
    "AUTHORIZATION_ENTRY",
    "MAX_COOKIE_FILE_BYTES",
    "SESSION_COOKIE",
    "CookieFile",
    "is_session_cookie",
    "session_chunk_index",
    "write_atomic",
]

# Fields of a list entry that describe where a cookie lives; copied when we add a cookie the export lacked.
_PLACEMENT_FIELDS = ("domain", "hostOnly", "path", "secure", "httpOnly", "sameSite", "storeId")

Format = Literal["list", "object"]


def _session_sort_key(name: str) -> int:
    index = session_chunk_index(name)
    return -1 if index is None else index


class CookieFile:
    """An immutable, validated cookie export; every ``with_*`` method returns a new instance."""

    __slots__ = ("_auth_index", "_entries", "_format")

    _entries: tuple[dict[str, Any], ...]
    _format: Format
    _auth_index: int

    def __init__(self) -> None:
        raise TypeError("use CookieFile.parse() or CookieFile.load()")

    @classmethod
    def _build(cls, entries: Iterable[dict[str, Any]], fmt: Format, source: str) -> CookieFile:
        """Validate entries that are already well-typed and wrap them."""
        built = tuple(entries)
        auth_index = validate_entries(built, source)
        self = object.__new__(cls)
        object.__setattr__(self, "_entries", built)
        object.__setattr__(self, "_format", fmt)
        object.__setattr__(self, "_auth_index", auth_index)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CookieFile is immutable")

    def __repr__(self) -> str:
        names = [e["name"] for i, e in enumerate(self._entries) if i != self._auth_index]
        return f"CookieFile(format={self._format!r}, cookies={names!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CookieFile):
            return NotImplemented
        return self._format == other._format and self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    # -- reading ---------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, *, source: str = "cookie file") -> CookieFile:
        """Parse an export; every malformed case raises CookieFileError with one line saying what to fix."""
        if len(data) > MAX_COOKIE_FILE_BYTES:
            raise CookieFileError(
                f"{source} is larger than 1 MiB ({len(data)} bytes): export only the labs.google cookies"
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CookieFileError(
                f"{source} is not UTF-8 text (is it a binary file?): export the cookies as JSON"
            ) from None
        if not text.strip():
            raise CookieFileError(f"{source} is empty: export the labs.google cookies as JSON into it")
        if text.lstrip().startswith(("# Netscape HTTP Cookie File", "# HTTP Cookie File")):
            raise CookieFileError(f"{source} is in the Netscape cookies.txt format: export the cookies as JSON instead")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise CookieFileError(
                f"{source} is not valid JSON (line {err.lineno}, column {err.colno}): export the cookies as JSON"
            ) from None
        except (ValueError, RecursionError):
            raise CookieFileError(f"{source} is not valid JSON: export the cookies as JSON") from None

        if isinstance(raw, list):
            return cls._build(list_entries(raw, source), "list", source)
        if isinstance(raw, dict):
            return cls._build(object_entries(raw, source), "object", source)
        raise CookieFileError(
            f"{source} must hold a JSON list of cookie objects or a {{name: value}} object, not {kind_of(raw)}"
        )

    @classmethod
    async def load(cls, path: Path) -> CookieFile:
        """Read and parse the file in a worker thread; any problem is a CookieFileError naming the path."""
        data = await asyncio.to_thread(read_limited, Path(path))
        return cls.parse(data, source=f"cookie file {path}")

    # -- views -----------------------------------------------------------------------------------------

    @property
    def format(self) -> Format:
        """The layout the file was read in, and will be written back in."""
        return self._format

    @property
    def bearer(self) -> str:
        """The OAuth access token from the ``authorization`` entry, without ``Bearer ``."""
        return token_of(self._entries[self._auth_index]["value"])

    def cookies(self) -> list[tuple[str, str]]:
        """The real cookies (not the synthetic entry) as ``(name, value)`` pairs, in file order."""
        return [(e["name"], e["value"]) for i, e in enumerate(self._entries) if i != self._auth_index]

    def session_cookies(self) -> dict[str, str]:
        """The session cookie entries (whole and/or chunks), in file order."""
        return {name: value for name, value in self.cookies() if is_session_cookie(name)}

    def cookie_header(self) -> str:
        """``name=value; ...`` of every real cookie, chunks as they are, for requests to FLOW_LABS_BASE."""
        return "; ".join(f"{name}={value}" for name, value in self.cookies())

    # -- updates ---------------------------------------------------------------------------------------

    def with_token(self, token: str) -> CookieFile:
        """A copy whose ``authorization`` entry holds ``Bearer <token>``."""
        if not TOKEN_RE.match(token):
            raise CookieFileError("the new access token contains spaces or characters not allowed in a header")
        entries = list(self._entries)
        entries[self._auth_index] = {**entries[self._auth_index], "value": f"Bearer {token}"}
        return self._build(entries, self._format, "updated cookie file")

    def with_cookies(self, updates: Mapping[str, str], *, expires: Mapping[str, float] | None = None) -> CookieFile:
        """A copy with rotated cookies: existing entries updated in place (order kept), new ones appended.

        ``expires`` (epoch seconds by name) refreshes an entry's ``expirationDate`` where it has one.
        """
        expires = expires or {}
        if any(is_auth(name) for name in updates):
            raise ValueError("the authorization entry is updated with with_token()")
        remaining = dict(updates)
        entries: list[dict[str, Any]] = []
        for index, entry in enumerate(self._entries):
            name = entry["name"]
            if index != self._auth_index and name in updates:
                entry = _updated(entry, updates[name], expires.get(name))
                remaining.pop(name, None)
            entries.append(entry)
        template = self._template()
        entries.extend(_new_entry(template, name, value, expires.get(name)) for name, value in remaining.items())
        return self._build(entries, self._format, "updated cookie file")

    def with_session_cookies(
        self, values: Mapping[str, str], *, expires: Mapping[str, float] | None = None
    ) -> CookieFile:
        """A copy whose session cookie family is exactly ``values`` (whole or chunks), where the old one was.

        This is how a rotated session that switched between whole and chunked is stored: old entries of the
        same name keep their fields, new chunks copy the fields of the old session cookie.
        """
        if not values:
            raise ValueError("a session needs at least one cookie")
        if not all(is_session_cookie(name) for name in values):
            raise ValueError("with_session_cookies() takes only session cookie names")
        expires = expires or {}
        old = {
            e["name"]: e for i, e in enumerate(self._entries) if i != self._auth_index and is_session_cookie(e["name"])
        }
        sibling = next(iter(old.values()), None)
        template = self._template()
        family = []
        for name, value in sorted(values.items(), key=lambda item: _session_sort_key(item[0])):
            if name in old:
                family.append(_updated(old[name], value, expires.get(name)))
            elif sibling is not None:  # a renamed chunk: same fields and order as the cookie it replaces
                family.append(_updated({**sibling, "name": name}, value, expires.get(name)))
            else:
                family.append(_new_entry(template, name, value, expires.get(name)))
        entries: list[dict[str, Any]] = []
        placed = False
        for index, entry in enumerate(self._entries):
            if index != self._auth_index and is_session_cookie(entry["name"]):
                if not placed:
                    entries.extend(family)
                    placed = True
                continue
            entries.append(entry)
        if not placed:
            entries.extend(family)
        return self._build(entries, self._format, "updated cookie file")

    def without_cookies(self, names: Iterable[str]) -> CookieFile:
        """A copy without the named cookies (a server deleted them); the session must survive."""
        drop = {name for name in names if not is_auth(name)}
        entries = [e for i, e in enumerate(self._entries) if i == self._auth_index or e["name"] not in drop]
        return self._build(entries, self._format, "updated cookie file")

    def _template(self) -> dict[str, Any]:
        """Placement fields for a cookie the export did not have, borrowed from its first cookie."""
        if self._format == "object":
            return {}
        source = next((e for i, e in enumerate(self._entries) if i != self._auth_index), {})
        return {key: source[key] for key in _PLACEMENT_FIELDS if key in source}

    # -- writing ---------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The file in the layout it was read in, every entry and field in its original order."""
        if self._format == "object":
            raw: Any = {e["name"]: e["value"] for e in self._entries}
        else:
            raw = list(self._entries)
        return (json.dumps(raw, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    async def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename) with mode 0600; the old file survives any failure."""
        try:
            await asyncio.to_thread(write_atomic, Path(path), self.to_bytes())
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise CookieFileError(f"could not write cookie file {path}: {reason}") from err


def _updated(entry: dict[str, Any], value: str, expires: float | None) -> dict[str, Any]:
    """A copy of ``entry`` with a new value (and expiry, where the entry records one), keys in order."""
    changed = {**entry, "value": value}
    if expires is not None and "expirationDate" in entry:
        changed["expirationDate"] = expires
    if expires is not None and entry.get("session") is True:
        changed["session"] = False
        changed.setdefault("expirationDate", expires)
    return changed


def _new_entry(template: dict[str, Any], name: str, value: str, expires: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "value": value, **template}
    if template and expires is not None:
        entry["expirationDate"] = expires
    return entry
