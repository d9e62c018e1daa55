"""The Flow cookie file: a browser cookie export plus the synthetic ``authorization`` entry.

Two layouts are read and written back unchanged apart from the values we update: the list of cookie objects
that browser export extensions write, and a plain ``{name: value}`` object. Error messages name the entry and
the cookie but never echo a value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

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

logger = logging.getLogger(__name__)

MAX_COOKIE_FILE_BYTES = 1024 * 1024
SESSION_COOKIE = "__Secure-next-auth.session-token"
AUTHORIZATION_ENTRY = "authorization"

_SESSION_RE = re.compile(r"^(?:__Secure-)?next-auth\.session-token(?:\.(\d{1,4}))?$")
# RFC 6265 token characters are stricter; we only refuse what would break or split the Cookie header.
_BAD_NAME_RE = re.compile(r"[\x00-\x20\x7f;=,\"]")
_BAD_VALUE_RE = re.compile(r"[\x00-\x1f\x7f;]")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")
_BEARER_RE = re.compile(r"^bearer(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)
# Fields of a list entry that describe where a cookie lives; copied when we add a cookie the export lacked.
_PLACEMENT_FIELDS = ("domain", "hostOnly", "path", "secure", "httpOnly", "sameSite", "storeId")

Format = Literal["list", "object"]


def is_session_cookie(name: str) -> bool:
    """Whether ``name`` is the NextAuth session cookie, whole or one of its ``.N`` chunks."""
    return _SESSION_RE.match(name) is not None


def session_chunk_index(name: str) -> int | None:
    """Chunk number of a session cookie name (``None`` for the whole cookie); ValueError for other names."""
    match = _SESSION_RE.match(name)
    if match is None:
        raise ValueError("not a session cookie name")
    return None if match.group(1) is None else int(match.group(1))


def _session_sort_key(name: str) -> int:
    index = session_chunk_index(name)
    return -1 if index is None else index


def _kind(value: object) -> str:
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


def _is_auth(name: str) -> bool:
    return name.lower() == AUTHORIZATION_ENTRY


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
        auth_index = _validate(built, source)
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
            return cls._build(_list_entries(raw, source), "list", source)
        if isinstance(raw, dict):
            return cls._build(_object_entries(raw, source), "object", source)
        raise CookieFileError(
            f"{source} must hold a JSON list of cookie objects or a {{name: value}} object, not {_kind(raw)}"
        )

    @classmethod
    async def load(cls, path: Path) -> CookieFile:
        """Read and parse the file in a worker thread; any problem is a CookieFileError naming the path."""
        data = await asyncio.to_thread(_read_limited, Path(path))
        return cls.parse(data, source=f"cookie file {path}")

    # -- views -----------------------------------------------------------------------------------------

    @property
    def format(self) -> Format:
        """The layout the file was read in, and will be written back in."""
        return self._format

    @property
    def bearer(self) -> str:
        """The OAuth access token from the ``authorization`` entry, without ``Bearer ``."""
        return _token_of(self._entries[self._auth_index]["value"])

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
        if not _TOKEN_RE.match(token):
            raise CookieFileError("the new access token contains spaces or characters not allowed in a header")
        entries = list(self._entries)
        entries[self._auth_index] = {**entries[self._auth_index], "value": f"Bearer {token}"}
        return self._build(entries, self._format, "updated cookie file")

    def with_cookies(self, updates: Mapping[str, str], *, expires: Mapping[str, float] | None = None) -> CookieFile:
        """A copy with rotated cookies: existing entries updated in place (order kept), new ones appended.

        ``expires`` (epoch seconds by name) refreshes an entry's ``expirationDate`` where it has one.
        """
        expires = expires or {}
        if any(_is_auth(name) for name in updates):
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
        drop = {name for name in names if not _is_auth(name)}
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


# -- parsing helpers -------------------------------------------------------------------------------------


def _list_entries(raw: list[Any], source: str) -> list[dict[str, Any]]:
    if not raw:
        raise CookieFileError(
            f"{source} holds no cookies (an empty list): export the cookies while signed in to labs.google"
        )
    entries = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise CookieFileError(
                f"{source}: entry {number} is {_kind(item)}, not a cookie object with 'name' and 'value'"
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            what = "has no 'name'" if name is None or name == "" else f"has a 'name' that is {_kind(name)}"
            raise CookieFileError(f"{source}: entry {number} {what}; every cookie needs a text name")
        if "value" not in item or item["value"] is None:
            raise CookieFileError(f"{source}: entry {number} (cookie {_show(name)}) has no 'value'")
        if not isinstance(item["value"], str):
            raise CookieFileError(
                f"{source}: entry {number} (cookie {_show(name)}) has a 'value' that is "
                f"{_kind(item['value'])}; it must be text"
            )
        entries.append(item)
    return entries


def _object_entries(raw: dict[str, Any], source: str) -> list[dict[str, Any]]:
    if not raw:
        raise CookieFileError(
            f"{source} holds no cookies (an empty object): export the cookies while signed in to labs.google"
        )
    entries = []
    for name, value in raw.items():
        if not name:
            raise CookieFileError(f"{source}: a cookie has an empty name")
        if not isinstance(value, str):
            raise CookieFileError(f"{source}: cookie {_show(name)} has a value that is {_kind(value)}; it must be text")
        entries.append({"name": name, "value": value})
    return entries


def _validate(entries: tuple[dict[str, Any], ...], source: str) -> int:
    """Check the cross-entry rules; return the index of the ``authorization`` entry."""
    auth: list[int] = []
    has_session = False
    empty_session: str | None = None
    for index, entry in enumerate(entries):
        name, value = entry["name"], entry["value"]
        if _is_auth(name):
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
    _token_of(entries[auth[0]]["value"], source)
    return auth[0]


def _token_of(value: str, source: str = "cookie file") -> str:
    """The token in an ``authorization`` value, or CookieFileError saying what is wrong with it."""
    match = _BEARER_RE.match(value.strip())
    if match is None:
        raise CookieFileError(
            f"{source}: the 'authorization' value must start with 'Bearer ' followed by the token (ya29...)"
        )
    token = (match.group(1) or "").strip()
    if not token:
        raise CookieFileError(f"{source}: the 'authorization' entry has 'Bearer ' but no token after it")
    if not _TOKEN_RE.match(token):
        raise CookieFileError(
            f"{source}: the token in the 'authorization' entry contains spaces or characters "
            "not allowed in an HTTP header"
        )
    return token


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


# -- file I/O (runs in a worker thread) ------------------------------------------------------------------


def _read_limited(path: Path) -> bytes:
    """Read at most 1 MiB + 1 byte of a regular file, with a CookieFileError naming the path on failure."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise CookieFileError(f"cookie file {path} is a directory: point FLOW_COOKIE_FILE at the JSON file")
        if not stat.S_ISREG(info.st_mode):
            raise CookieFileError(f"cookie file {path} is not a regular file: point FLOW_COOKIE_FILE at the JSON file")
        if info.st_size > MAX_COOKIE_FILE_BYTES:
            raise CookieFileError(
                f"cookie file {path} is larger than 1 MiB ({info.st_size} bytes): export only the labs.google cookies"
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_COOKIE_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CookieFileError(
            f"cookie file {path} does not exist: export the labs.google cookies there or set FLOW_COOKIE_FILE"
        ) from None
    except PermissionError:
        raise CookieFileError(
            f"cookie file {path} cannot be read (permission denied): the bot needs read and write access"
        ) from None
    except IsADirectoryError:
        raise CookieFileError(f"cookie file {path} is a directory: point FLOW_COOKIE_FILE at the JSON file") from None
    except OSError as err:
        raise CookieFileError(f"cookie file {path} cannot be read: {err.strerror or type(err).__name__}") from err
    if len(data) > MAX_COOKIE_FILE_BYTES:
        raise CookieFileError(f"cookie file {path} is larger than 1 MiB: export only the labs.google cookies")
    return data


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` atomically: temp file (created ``mode``) in the same folder, fsync, rename.

    A symlinked path is followed so the link keeps pointing at the secret's real home.
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    temp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask can only narrow the create mode, but pin it exactly
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; the new file is already in place, so a failure here is only logged."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        logger.debug("could not open %s to fsync it: %s", directory, err.strerror)
        return
    try:
        os.fsync(dir_fd)
    except OSError as err:
        logger.debug("could not fsync directory %s: %s", directory, err.strerror)
    finally:
        os.close(dir_fd)
