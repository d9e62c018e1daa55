"""The session-endpoint exchange: trade the cookies for a token, and tell dead cookies from a migrated account."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from bot.backends.flow._cookies import MAX_COOKIE_FILE_BYTES, CookieFile
from bot.backends.flow._refresher import Halt
from bot.backends.flow._session import (
    TOOL_PATH,
    Session,
    apply_set_cookies,
    is_empty_session,
    migration_verdict,
    parse_session_body,
    parse_set_cookies,
)
from bot.backends.flow.errors import (
    BadResponse,
    CookieFileError,
    CookiesExpired,
    RateLimited,
    SessionUnreachable,
)

# Logged under the public module's name, as before the split, so log filters keep matching.
logger = logging.getLogger("bot.backends.flow.credentials")

SESSION_PATH = "/fx/api/auth/session"
_MAX_SESSION_BODY = MAX_COOKIE_FILE_BYTES


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


async def exchange(
    http: aiohttp.ClientSession,
    labs_base: str,
    cookies: CookieFile,
    *,
    client_timeout: aiohttp.ClientTimeout,
    clock: Callable[[], float],
) -> tuple[Session, CookieFile]:
    """Ask the session endpoint for a token with ``cookies``; return it and the updated cookie file."""
    url = URL(labs_base + SESSION_PATH)
    headers = {"Cookie": cookies.cookie_header(), "Accept": "application/json"}
    jar = http.cookie_jar
    if url.host:
        jar.clear_domain(url.host)  # our Cookie header is the truth; a jar would merge stale values in
    logger.debug("requesting a Flow token from %s%s", url.host, SESSION_PATH)
    try:
        async with http.get(url, headers=headers, timeout=client_timeout) as resp:
            status = resp.status
            content_type = resp.headers.get("Content-Type", "")
            set_cookies = resp.headers.getall("Set-Cookie", [])
            retry_after = resp.headers.get("Retry-After")
            body = await _read_body(resp)
    except TimeoutError as err:
        raise SessionUnreachable("Flow's session endpoint timed out") from err
    except aiohttp.ClientError as err:
        raise SessionUnreachable(f"could not reach Flow's session endpoint ({type(err).__name__})") from err
    finally:
        if url.host:
            jar.clear_domain(url.host)

    if status in (401, 403):
        raise CookiesExpired(f"Flow's session endpoint answered {status}: the cookies were refused; re-export them")
    if status == 429:
        raise RateLimited("Flow's session endpoint answered 429", retry_after=_retry_after(retry_after))
    if status >= 500:
        raise SessionUnreachable(f"Flow's session endpoint answered {status}")
    if status != 200:
        raise BadResponse(f"Flow's session endpoint answered {status}: its API may have changed")
    if is_empty_session(body, content_type):
        raise await _empty_session_verdict(http, labs_base, cookies, client_timeout=client_timeout)
    session = parse_session_body(body, content_type)
    updated = cookies.with_token(session.access_token.get_secret_value())
    try:
        updated = apply_set_cookies(updated, parse_set_cookies(set_cookies, clock()))
    except (CookieFileError, ValueError) as err:
        logger.warning("ignored cookies Flow set that cannot be stored (%s)", type(err).__name__)
    return session, updated


async def _empty_session_verdict(
    http: aiohttp.ClientSession, labs_base: str, cookies: CookieFile, *, client_timeout: aiohttp.ClientTimeout
) -> Halt:
    """An empty session: ask the tool page, without following redirects, whether the account migrated.

    A 30x to flow.google.com means migrated (flow-api.md §0); anything else, including a failed probe,
    means the cookies expired, which is what an empty session meant before the migration.
    """
    url = URL(labs_base + TOOL_PATH)
    headers = {"Cookie": cookies.cookie_header(), "Accept": "text/html"}
    jar = http.cookie_jar
    try:
        async with http.get(url, headers=headers, timeout=client_timeout, allow_redirects=False) as resp:
            status, location = resp.status, resp.headers.get("Location")
    except (TimeoutError, aiohttp.ClientError) as err:
        logger.warning("could not ask Flow's tool page whether the account migrated (%s)", type(err).__name__)
        return migration_verdict(0, None)
    finally:
        if url.host:
            jar.clear_domain(url.host)
    logger.debug("Flow's tool page answered %d to an empty session", status)
    return migration_verdict(status, location)


async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > _MAX_SESSION_BODY:
            raise BadResponse("Flow's session response is larger than 1 MiB", field_path="$")
        chunks.append(chunk)
    return b"".join(chunks)
