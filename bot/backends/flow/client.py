"""Async client for Google Flow's private video API: one injected session, classified errors, safe retries."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from yarl import URL

from bot.backends.flow._bodies import TOOL, Call, build_generate_body, project_body, status_body
from bot.backends.flow._bodies import Auth as Auth
from bot.backends.flow._files import check_mp4, stream_to_file, write_bytes_atomic
from bot.backends.flow._http import HttpStatusError, backoff_delay, map_error
from bot.backends.flow.errors import (
    BadRequest,
    BadResponse,
    FlowError,
    MediaExpired,
    RateLimited,
    UpstreamUnavailable,
)
from bot.backends.flow.models import (
    Credits,
    GenerationSpec,
    MediaGetResponse,
    PollRef,
    PollResult,
    Submitted,
    parse_credits,
    parse_generate,
    parse_project,
    parse_status,
    validate_wire,
)

if TYPE_CHECKING:
    from bot.backends.flow.credentials import Credentials

__all__ = ["FlowClient"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
GENERATE_PATH = "/v1/video:batchAsyncGenerateVideoText"
STATUS_PATH = "/v1/video:batchCheckAsyncVideoGenerationStatus"
CREDITS_PATH = "/v1/credits"
MEDIA_PATH = "/v1/media/"
PROJECT_PATH = "/fx/api/trpc/project.createProject"
REDIRECT_PATH = "/fx/api/trpc/media.getMediaUrlRedirect"
#: Statuses a signed media URL (or a media id the API no longer serves) answers with: try the next route.
_EXPIRED_STATUSES = frozenset({400, 403, 404, 410})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Error bodies are only read for their envelope; a bigger one is not an envelope.
_MAX_ERROR_BODY = 64 * 1024


class FlowClient:
    """The one place that speaks Flow's HTTP API; callers get pydantic results or a FlowError."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        credentials: Credentials,
        *,
        api_base: str,
        labs_base: str,
        status_batch_size: int = 50,
        model_key_overrides: Mapping[str, str] | None = None,
        max_attempts: int = 4,
        max_retry_after: float = 60.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        download_timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        if status_batch_size < 1:
            raise ValueError("status_batch_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._http = http
        self._creds = credentials
        api = api_base.rstrip("/")
        self._api = api.removesuffix("/v1")
        self._labs = labs_base.rstrip("/")
        self._batch = status_batch_size
        self._overrides = dict(model_key_overrides or {})
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rand = rand
        #: Videos can be large: a session-wide ``total`` timeout may be too short for them (None: the session's).
        self._download_timeout = download_timeout
        self._tier: str | None = None
        # The web app sends ";<epoch ms>" once per page load; one per client instance is the same thing.
        self._session_id = f";{int(time.time() * 1000)}"

    @property
    def labs_base(self) -> str:
        return self._labs

    # -- account ------------------------------------------------------------------------------------

    async def credits(self) -> Credits:
        """Balance and tier; also a cheap check that the bearer works. Caches the tier."""
        call = Call("GET", self._api + CREDITS_PATH, auth="bearer", safe=True)
        result = parse_credits(await self._send(call, _read_json))
        self._tier = result.tier
        return result

    async def tier(self) -> str:
        """The account's paygate tier, read once from ``/v1/credits``."""
        if self._tier is None:
            await self.credits()
        assert self._tier is not None
        return self._tier

    async def create_project(self, title: str = "Veo bot") -> str:
        """Create a Flow project (cookie auth); not idempotent, so never re-sent once it may have arrived."""
        call = Call("POST", self._labs + PROJECT_PATH, auth="cookie", safe=False, body=project_body(title))
        return parse_project(await self._send(call, _read_json))

    # -- generate and poll --------------------------------------------------------------------------

    async def generate(self, project_id: str, specs: list[GenerationSpec]) -> list[Submitted]:
        """Submit every spec in one call (each one charge); never re-sent once Flow may have accepted it.

        A BadResponse here means Flow answered 200 but we could not read it: the videos may be running.
        """
        if not specs:
            raise ValueError("generate needs at least one spec")
        scene_ids = [s.scene_id for s in specs]
        if len(set(scene_ids)) != len(scene_ids):
            raise ValueError("scene ids must be unique within one generate call")
        tier = await self.tier()
        body = build_generate_body(project_id, specs, tier, self._session_id, self._overrides)
        call = Call("POST", self._api + GENERATE_PATH, auth="bearer", safe=False, body=body)
        data = await self._send(call, _read_json)
        submitted = parse_generate(data, scene_ids)
        for s in submitted:
            if s.project_id is None:
                s.project_id = project_id
        return submitted

    async def check_status(self, refs: list[PollRef]) -> list[PollResult]:
        """Poll many generations: grouped by protocol, ``status_batch_size`` per call, in ``refs`` order.

        A ref Flow did not answer for is left out (the caller polls it again next time).
        """
        found: dict[int, PollResult] = {}
        for protocol in ("operations", "media"):
            group = [(i, r) for i, r in enumerate(refs) if r.protocol == protocol]
            for start in range(0, len(group), self._batch):
                batch = group[start : start + self._batch]
                body = status_body(protocol, [r for _, r in batch])
                call = Call("POST", self._api + STATUS_PATH, auth="bearer", safe=True, body=body)
                parsed = parse_status(await self._send(call, _read_json))
                by_name: dict[str, PollResult] = {}
                for res in parsed:
                    for name in (res.operation_name, res.media_name):
                        if name:
                            by_name.setdefault(name, res)
                for i, ref in batch:
                    hit = by_name.get(ref.operation_name) or (by_name.get(ref.media_name) if ref.media_name else None)
                    if hit is None:
                        continue
                    found[i] = hit.model_copy(
                        update={
                            "operation_name": ref.operation_name,
                            "media_name": hit.media_name or ref.media_name,
                        }
                    )
                missing = len(batch) - sum(1 for i, _ in batch if i in found)
                if missing:
                    _log.info("status: Flow did not report %d of %d generations", missing, len(batch))
        return [found[i] for i in sorted(found)]

    # -- download -----------------------------------------------------------------------------------

    async def download(self, result: PollResult, dest: Path, *, chunk_size: int = 256 * 1024) -> int:
        """Write the video to ``dest`` atomically: fifeUrl, else ``/v1/media/{id}``, else the redirect."""
        dest = Path(dest)
        last: FlowError | None = None
        if result.fife_url:
            call = Call("GET", result.fife_url, auth="none", safe=True, expired=_EXPIRED_STATUSES, media=True)
            try:
                return await self._send(call, lambda resp: stream_to_file(resp, dest, chunk_size))
            except MediaExpired as err:
                _log.info("download: signed URL no longer valid, trying the media API")
                last = err
        if result.media_id:
            try:
                return await self._download_media_get(result.media_id, dest)
            except (MediaExpired, BadRequest) as err:
                _log.info("download: media API could not serve it, trying the media redirect")
                last = err
        if result.media_name:
            return await self._download_redirect(result.media_name, dest, chunk_size)
        if last is not None:
            raise last
        raise BadResponse(
            "Flow's API changed: a finished generation carries no fifeUrl, media id or media name",
            field_path="fifeUrl",
        )

    async def _download_media_get(self, media_id: str, dest: Path) -> int:
        call = Call(
            "GET",
            self._api + MEDIA_PATH + media_id,
            auth="bearer",
            safe=True,
            params={"clientContext.tool": TOOL},
            expired=frozenset({400, 404, 410}),
            media=True,
        )
        data = await self._send(call, _read_json)
        body = validate_wire(MediaGetResponse, data, "media response")
        encoded = body.video.encoded_video
        if not encoded:
            raise BadResponse(
                "Flow's API changed: media response has no video.encodedVideo",
                field_path="video.encodedVideo",
            )
        try:
            video = await asyncio.to_thread(base64.b64decode, encoded, validate=False)
        except (binascii.Error, ValueError) as err:
            raise BadResponse(
                "Flow's API changed: video.encodedVideo is not base64", field_path="video.encodedVideo"
            ) from err
        check_mp4(video[:16], content_type=None)
        await asyncio.to_thread(write_bytes_atomic, dest, video)
        return len(video)

    async def _download_redirect(self, media_name: str, dest: Path, chunk_size: int) -> int:
        params = {"name": media_name, "mediaUrlType": "MEDIA_URL_TYPE_FULL_MEDIA"}
        call = Call("GET", self._labs + REDIRECT_PATH, auth="cookie", safe=True, params=params, allow_redirects=False)

        async def handle(resp: aiohttp.ClientResponse) -> str | int:
            if resp.status in _REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise BadResponse("media redirect without a Location", field_path="$headers.Location")
                return str(resp.url.join(URL(location)))
            return await stream_to_file(resp, dest, chunk_size)

        target = await self._send(call, handle)
        if isinstance(target, int):
            return target
        # The signed CDN URL needs no credentials: never forward the cookies there.
        cdn = Call("GET", target, auth="none", safe=True, expired=_EXPIRED_STATUSES, media=True)
        return await self._send(cdn, lambda resp: stream_to_file(resp, dest, chunk_size))

    # -- transport ----------------------------------------------------------------------------------

    def _headers(self, call: Call, token: str | None) -> dict[str, str]:
        headers = {"accept": "*/*"}
        if call.auth == "none":
            return headers
        headers["origin"] = self._labs
        headers["referer"] = self._labs + "/"
        if call.body is not None:
            headers["content-type"] = "application/json" if call.auth == "cookie" else "text/plain;charset=UTF-8"
        if call.auth == "bearer" and token is not None:
            headers["authorization"] = f"Bearer {token}"
        elif call.auth == "cookie":
            headers["cookie"] = self._creds.cookie_header()
        return headers

    async def _send(self, call: Call, handle: Callable[[aiohttp.ClientResponse], Awaitable[T]]) -> T:
        """Send with the retry policy; ``handle`` reads a non-error response inside the same error net."""
        data = json.dumps(call.body).encode() if call.body is not None else None
        token = await self._creds.bearer() if call.auth == "bearer" else None
        refreshed = False
        attempt = 0
        extra: dict[str, Any] = {}
        if call.media and self._download_timeout is not None:
            extra["timeout"] = self._download_timeout
        while True:
            error: FlowError
            cause: BaseException
            sent = True
            status: int | None = None
            try:
                async with self._http.request(
                    call.method,
                    call.url,
                    params=call.params,
                    data=data,
                    headers=self._headers(call, token),
                    allow_redirects=call.allow_redirects,
                    **extra,
                ) as resp:
                    _log.debug("%s %s -> %d", call.method, call.path, resp.status)
                    if resp.status == 401 and call.auth == "bearer" and not refreshed and token is not None:
                        refreshed = True
                        _log.info("%s %s: bearer rejected, refreshing once", call.method, call.path)
                        token = await self._creds.token_rejected(token)
                        continue
                    if resp.status < 400:
                        return await handle(resp)
                    status = resp.status
                    cause = HttpStatusError(call.method, call.path, status)
                    if resp.status in call.expired:
                        raise MediaExpired(f"media route answered HTTP {resp.status}") from cause
                    body = await resp.content.read(_MAX_ERROR_BODY)
                    error = map_error(
                        resp.status,
                        body,
                        resp.headers,
                        max_retry_after=self._max_retry_after,
                        cookie_auth=call.auth == "cookie",
                    )
            except FlowError:
                raise
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as err:
                # Nothing reached Flow: safe to send again, even a generate.
                sent = False
                error = UpstreamUnavailable(f"cannot connect to Flow ({type(err).__name__})")
                cause = err
            except (TimeoutError, aiohttp.ClientError) as err:
                error = UpstreamUnavailable(
                    f"Flow did not answer {call.method} {call.path} ({type(err).__name__})",
                    maybe_accepted=True,
                )
                cause = err
            if isinstance(error, UpstreamUnavailable) and sent:
                error.maybe_accepted = True
            delay = self._retry_delay(call, error, status=status, sent=sent, attempt=attempt)
            if delay is None:
                raise error from cause
            attempt += 1
            _log.warning(
                "%s %s: %s; retry %d/%d in %.2fs",
                call.method,
                call.path,
                type(error).__name__,
                attempt,
                self._max_attempts - 1,
                delay,
            )
            await self._sleep(delay)

    def _retry_delay(
        self, call: Call, error: FlowError, *, status: int | None, sent: bool, attempt: int
    ) -> float | None:
        """How long to wait before trying again, or None to give up and raise."""
        if attempt + 1 >= self._max_attempts:
            return None
        backoff = backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap, rand=self._rand)
        if isinstance(error, RateLimited):
            # Only a real 429 proves Flow refused the request; other throttling reasons go back to the caller.
            if status != 429:
                return None
            return error.retry_after if error.retry_after is not None else backoff
        if isinstance(error, UpstreamUnavailable) and (call.safe or not sent):
            return backoff
        return None


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        kind = resp.headers.get("Content-Type", "unknown").split(";")[0]
        raise BadResponse(
            f"Flow's API changed: {URL(str(resp.url)).path} did not return JSON ({kind})", field_path="$"
        ) from err
