"""A loopback Google Flow (labs.google + aisandbox-pa) speaking the captured JSON, with faults and recording.

Request path through the server, one middleware per concern:
    _record (every request -> `requests`)  ->  _apply_fault (injected faults)  ->  _check_auth  ->  handler
Choices where no capture exists are documented on the methods that make them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import web

from tests.fakes._flow_bodies import (
    MALFORMED_JSON,
    SIGN_IN_HTML,
    USER,
    credits_body,
    gcs_error_xml,
    generate_media_body,
    generate_operations_body,
    media_get_body,
    project_body,
    refresh_needed_body,
    session_body,
    status_media_entry,
    status_operation_entry,
    trpc_error,
    unknown_media_entry,
    unknown_operation_entry,
    wrong_shape_body,
)
from tests.fakes._flow_cookies import (
    SESSION_COOKIE,
    cookie_file_content,
    new_session_cookie,
    parse_cookie_headers,
    session_values,
)
from tests.fakes._flow_faults import (
    Fault,
    Outcome,
    bad_request_envelope,
    error_envelope,
    model_denied_envelope,
    quota_envelope,
    unauthorized_envelope,
)
from tests.fakes._flow_migration import TOOL_PATH, migrated_answer, tool_page
from tests.fakes._flow_state import (
    ROUTE_NAMES,
    Generation,
    Protocol,
    RecordedRequest,
    media_generation_id,
)
from tests.fakes._flow_validate import (
    BadRequest,
    GenerateBody,
    VideoRequest,
    parse_generate,
    parse_json_object,
    parse_status_media,
    parse_status_operations,
)
from tests.fakes._flow_video import THUMBNAIL, VideoSource

__all__ = ["Fault", "FlowEmulator", "Generation", "Outcome", "RecordedRequest"]

TIER_TWO = "PAYGATE_TIER_TWO"
_JSON_TYPES = frozenset({"text/plain", "application/json"})
_GCS_ACCESS_ID = "labs-ai-sandbox-videoserver-prod@system.gserviceaccount.com"

_RECORD = web.RequestKey("flow_emulator_record", RecordedRequest)
_CUT_AFTER = web.RequestKey("flow_emulator_cut_after", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["bearer", "cookie", "none"]


@dataclass(frozen=True)
class _Route:
    name: str
    method: str
    path: str
    auth: Auth


_ROUTES: tuple[_Route, ...] = (
    _Route("session", "GET", "/fx/api/auth/session", "cookie"),
    _Route("project", "POST", "/fx/api/trpc/project.createProject", "cookie"),
    _Route("redirect", "GET", "/fx/api/trpc/media.getMediaUrlRedirect", "cookie"),
    _Route("signin", "GET", "/fx/api/auth/signin", "none"),
    _Route("tools", "GET", TOOL_PATH, "none"),
    _Route("credits", "GET", "/v1/credits", "bearer"),
    _Route("generate", "POST", "/v1/video:batchAsyncGenerateVideoText", "bearer"),
    _Route("status", "POST", "/v1/video:batchCheckAsyncVideoGenerationStatus", "bearer"),
    _Route("media_get", "GET", "/v1/media/{media_id}", "bearer"),
    _Route("fife", "GET", "/fife/{file}", "none"),
)
_AUTH: dict[str, Auth] = {route.name: route.auth for route in _ROUTES}


@dataclass
class _ArmedFault:
    fault: Fault
    remaining: int | None


class FlowEmulator:
    """Flow on 127.0.0.1: session, credits, projects, generate, batched status, media, faults, recording."""

    def __init__(
        self,
        protocol: Protocol = "operations",
        polls_to_finish: int = 2,
        video_size: int = 64 * 1024,
        tier: str = "PAYGATE_TIER_ONE",
        credits: int = 1000,
        token_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        *,
        fife_lifetime: float = 6 * 3600.0,
        max_concurrent: int | None = None,
        cost_fast: int = 20,
        cost_quality: int = 100,
        shutdown_timeout: float = 0.5,
    ) -> None:
        if protocol not in ("operations", "media"):
            raise ValueError(f"protocol must be 'operations' or 'media', not {protocol!r}")
        self.protocol: Protocol = protocol
        self.polls_to_finish = polls_to_finish
        self.video_size = video_size
        self.tier = tier
        self.credits = credits
        self.token_lifetime = token_lifetime
        self.fife_lifetime = fife_lifetime
        self.max_concurrent = max_concurrent
        self.cost_fast = cost_fast
        self.cost_quality = cost_quality
        self.rotate_cookie = False
        self.user: dict[str, str] = dict(USER)
        self.session_cookie_name = SESSION_COOKIE
        self.requests: list[RecordedRequest] = []
        self.generations: dict[str, Generation] = {}
        self.projects: list[str] = []
        self._clock = clock
        self._shutdown_timeout = shutdown_timeout
        self._session_cookie = new_session_cookie()
        self._session_dead = False
        self._refresh_needed = False
        self._migrated = False
        #: Signed-out visits to /fx/tools/flow get a 302 to sign-in instead of the page itself.
        self.tool_page_signs_in = False
        self._tokens: dict[str, float] = {}
        self._faults: dict[str, list[_ArmedFault]] = {}
        self._rules: list[tuple[str, Outcome]] = []
        self._fife_signatures: dict[str, tuple[str, int]] = {}
        self._revoked_signatures: set[str] = set()
        self._hang_release = asyncio.Event()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._hung = 0
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve."""
        app = web.Application(middlewares=[self._record, self._apply_fault, self._check_auth])
        handlers: dict[str, Handler] = {
            "session": self._session,
            "project": self._project,
            "redirect": self._redirect,
            "signin": self._signin,
            "tools": self._tools,
            "credits": self._credits,
            "generate": self._generate,
            "status": self._status,
            "media_get": self._media_get,
            "fife": self._fife,
        }
        for route in _ROUTES:
            app.router.add_route(route.method, route.path, handlers[route.name], name=route.name)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Stop serving; hung and slow requests are dropped without an answer."""
        self._closing.set()
        self.release_hung()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FlowEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def api_base(self) -> str:
        """Stands in for https://aisandbox-pa.googleapis.com (serves /v1/... and the /fife/ media)."""
        if self._port is None:
            raise RuntimeError("FlowEmulator is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def labs_base(self) -> str:
        """Stands in for https://labs.google (serves /fx/api/...); the same server as api_base."""
        return self.api_base

    # ----------------------------------------------------------------- credentials

    @property
    def session_cookie(self) -> str:
        """The session cookie value accepted now (the joined value when written chunked)."""
        return self._session_cookie

    def issue_token(self) -> str:
        """Mint a bearer token valid for `token_lifetime` seconds of `clock`."""
        token = "ya29.a0" + secrets.token_urlsafe(150)
        self._tokens[token] = self._clock() + self.token_lifetime
        return token

    def expire_tokens(self) -> None:
        """Every bearer issued so far gets 401 from now on (new ones from the session endpoint work)."""
        self._tokens.clear()

    def kill_session(self) -> None:
        """Cookies die: the session endpoint answers `{}` and cookie routes refuse from now on."""
        self._session_dead = True

    def migrate_account(self, on: bool = True) -> None:
        """The account moved to flow.google.com (flow-api.md §0): session `{}` for good, /fx/tools/flow 308s
        there, aisandbox-pa answers 401 and tRPC 404, whatever the cookies and tokens."""
        self._migrated = on

    @property
    def migrated(self) -> bool:
        return self._migrated

    def refresh_needed(self, on: bool = True) -> None:
        """Session endpoint answers 200 with a stale token and `"error": "ACCESS_TOKEN_REFRESH_NEEDED"`."""
        self._refresh_needed = on

    def write_cookie_file(
        self,
        path: str | Path,
        *,
        chunked: bool = False,
        fmt: Literal["list", "object"] = "list",
        token: str | None = None,
        with_authorization: bool = True,
    ) -> None:
        """Write a browser-export cookie.json for labs.google: session cookie plus a valid bearer entry.

        `token` is written as given (it is not registered, so an arbitrary value is an invalid token).
        """
        bearer = token if token is not None else self.issue_token()
        content = cookie_file_content(
            self._session_cookie,
            bearer=bearer if with_authorization else None,
            chunked=chunked,
            fmt=fmt,
            expiry=self._clock() + 30 * 86400,
        )
        Path(path).write_text(json.dumps(content, indent=2), encoding="utf-8")

    # ----------------------------------------------------------------- faults and outcomes

    def inject(self, route: str, fault: Fault, times: int | None = 1) -> None:
        """The next `times` requests to `route` get `fault` (None: until cleared); faults queue per route."""
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(ROUTE_NAMES)}")
        if fault.kind == "truncated" and route != "fife":
            raise ValueError("Fault.truncated() applies to the fife route only")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        self._faults.setdefault(route, []).append(_ArmedFault(fault, times))

    def clear_faults(self) -> None:
        self._faults.clear()

    def release_hung(self) -> None:
        """Let every hung request go on and answer normally (dropped instead when closing)."""
        self._hang_release.set()
        self._hang_release = asyncio.Event()

    @property
    def hung_count(self) -> int:
        """Requests currently held by a hang fault."""
        return self._hung

    def outcome_for(self, prompt_contains: str, outcome: Outcome) -> None:
        """Generations created from now on whose prompt contains the text get `outcome`; first rule wins."""
        self._rules.append((prompt_contains, outcome))

    def set_outcome(self, name: str, outcome: Outcome) -> None:
        """Change how a running generation ends (e.g. unstick a stuck one)."""
        self.generations[name].outcome = outcome

    def expire_fife_urls(self) -> None:
        """Every fife URL signed so far answers 400 ExpiredToken, as GCS does; URLs signed later work."""
        self._revoked_signatures.update(self._fife_signatures)
        self._fife_signatures.clear()

    def add_project(self, project_id: str | None = None) -> str:
        """Register a project as if created in the web app (for tests that set FLOW_PROJECT_ID)."""
        project_id = project_id or str(uuid.uuid4())
        self.projects.append(project_id)
        return project_id

    # ----------------------------------------------------------------- inspection

    def calls(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    async def wait_for_calls(self, route: str, count: int = 1) -> list[RecordedRequest]:
        """Wait (without polling) until `route` has been requested at least `count` times."""
        while len(found := self.calls(route)) < count:
            await self._changed.wait()
        return found

    def video_bytes(self, name: str) -> bytes:
        """The exact bytes the fife URL, media_get and redirect serve for generation `name`."""
        return self._video(self.generations[name]).read_all()

    def video_sha256(self, name: str) -> str:
        return self._video(self.generations[name]).sha256()

    # ----------------------------------------------------------------- middlewares (one concern each)

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        text = raw.decode("utf-8", errors="replace")
        parsed: Any = None
        if text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        route = request.match_info.route.name or "unknown"
        record = RecordedRequest(
            route=route if route in ROUTE_NAMES else "unknown",
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={key.lower(): value for key, value in request.headers.items()},
            json=parsed,
            text=text,
            at=self._clock(),
        )
        request[_RECORD] = record
        self.requests.append(record)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return await handler(request)

    @web.middleware
    async def _apply_fault(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = request[_RECORD]
        fault = self._take_fault(record.route)
        if fault is None:
            return await handler(request)
        record.fault = fault.name
        kind = fault.kind
        if kind == "status":
            return _json(fault.body or {}, status=fault.code, headers=fault.headers)
        if kind == "malformed":
            return web.Response(text=MALFORMED_JSON, content_type="application/json", charset="UTF-8")
        if kind == "wrong_shape":
            return _json(fault.body if fault.body is not None else wrong_shape_body(record.route, self.protocol))
        if kind == "html":
            return _html()
        if kind == "refresh_needed":
            return _json(refresh_needed_body(_stale_token(), self._clock() - 60, self.user))
        if kind == "empty_session":
            return _json({})
        if kind == "disconnect":
            return _drop(request)
        if kind == "truncated":
            request[_CUT_AFTER] = fault.after_bytes if fault.after_bytes is not None else -1
            return await handler(request)
        if kind == "slow":
            if await self._closed_within(fault.seconds):
                return _drop(request)
            return await handler(request)
        if kind == "hang":
            await self._hold()
            if self._closing.is_set():
                return _drop(request)
            return await handler(request)
        raise AssertionError(f"unhandled fault kind {kind!r}")

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request[_RECORD].route
        if self._migrated and (answer := migrated_answer(route)) is not None:
            return answer
        auth = _AUTH.get(route, "none")
        if auth == "bearer" and not self._bearer_ok(request):
            return _json(unauthorized_envelope(), status=401)
        if auth == "cookie" and not self._cookie_ok(request):
            return self._cookie_refused(route, request)
        return await handler(request)

    # ----------------------------------------------------------------- labs.google handlers

    async def _session(self, request: web.Request) -> web.StreamResponse:
        """A new bearer each call; older unexpired ones stay valid. Rotates the cookie when asked to."""
        if self._refresh_needed:
            return _json(refresh_needed_body(_stale_token(), self._clock() - 60, self.user))
        token = self.issue_token()
        response = _json(session_body(token, self._tokens[token], self.user))
        if self.rotate_cookie:
            self._session_cookie = new_session_cookie()
            response.headers.add(
                "Set-Cookie",
                f"{SESSION_COOKIE}={self._session_cookie}; Path=/; HttpOnly; Secure; SameSite=Lax",
            )
        return response

    async def _project(self, request: web.Request) -> web.StreamResponse:
        body = request[_RECORD].json
        inner = body.get("json") if isinstance(body, dict) else None
        title = inner.get("projectTitle") if isinstance(inner, dict) else None
        tool = inner.get("toolName") if isinstance(inner, dict) else None
        if not isinstance(title, str) or not isinstance(tool, str):
            return _json(trpc_error(400, "BAD_REQUEST", "Invalid input", "project.createProject"), status=400)
        return _json(project_body(self.add_project(), title))

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        """307 to a freshly signed fife URL for a finished video."""
        name = request.query.get("name", "")
        if not name:
            return _json(trpc_error(400, "BAD_REQUEST", "Invalid input", "media.getMediaUrlRedirect"), status=400)
        gen = self._find(name)
        if gen is None or gen.state != "SUCCESSFUL":
            return _json(trpc_error(404, "NOT_FOUND", "Media not found", "media.getMediaUrlRedirect"), status=404)
        return web.Response(status=307, headers={"Location": self._fife_url(gen, "mp4")})

    async def _signin(self, request: web.Request) -> web.StreamResponse:
        return _html()

    async def _tools(self, request: web.Request) -> web.StreamResponse:
        signed_out = not self._cookie_ok(request)
        return tool_page(migrated=self._migrated, signed_out=signed_out, sign_in_redirect=self.tool_page_signs_in)

    # ----------------------------------------------------------------- aisandbox-pa handlers

    async def _credits(self, request: web.Request) -> web.StreamResponse:
        return _json(credits_body(self.credits, self.tier))

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        """Validate like Flow (400 / 403 / 429), charge, and start one generation per `requests[]` element."""
        record = request[_RECORD]
        try:
            body = _json_body(request, record.text)
            parsed = parse_generate(body, require_scene_id=self.protocol == "operations")
            if parsed.project_id not in self.projects:
                raise BadRequest(
                    [("client_context.project_id", f"Project {parsed.project_id!r} not found for this user.")]
                )
        except BadRequest as err:
            return _json(bad_request_envelope(err.violations), status=400)
        if any(not self._model_allowed(r) for r in parsed.requests):
            return _json(model_denied_envelope(), status=403)
        running = sum(1 for g in self.generations.values() if g.running)
        if self.max_concurrent is not None and running + len(parsed.requests) > self.max_concurrent:
            body = error_envelope(429, reason="PUBLIC_ERROR_CONCURRENT_LIMIT_REACHED")
            return _json(body, status=429)
        cost = sum(self._cost(r.model_key) for r in parsed.requests)
        if cost > self.credits:
            return _json(quota_envelope(), status=429)
        self.credits -= cost
        gens = [self._start_generation(parsed, r) for r in parsed.requests]
        if self.protocol == "operations":
            return _json(generate_operations_body(gens, self.credits))
        return _json(generate_media_body(gens, self.credits))

    async def _status(self, request: web.Request) -> web.StreamResponse:
        """Advance each named generation once per call and report it; the other protocol's body gets 400.

        Unknown names come back as FAILED entries with error code 5 (NOT_FOUND): our choice, no capture.
        """
        record = request[_RECORD]
        try:
            body = _json_body(request, record.text)
            refs = parse_status_operations(body) if self.protocol == "operations" else parse_status_media(body)
        except BadRequest as err:
            return _json(bad_request_envelope(err.violations), status=400)
        advanced: set[str] = set()
        entries: list[dict[str, Any]] = []
        any_success = False
        for name, extra in refs:
            gen = self.generations.get(name)
            if gen is not None and self.protocol == "media" and gen.project_id != extra:
                gen = None
            if gen is None:
                unknown = unknown_operation_entry if self.protocol == "operations" else unknown_media_entry
                entries.append(unknown(name, extra))
                continue
            if name not in advanced:
                self._advance(gen)
                advanced.add(name)
            any_success = any_success or gen.state == "SUCCESSFUL"
            entries.append(self._status_entry(gen))
        result: dict[str, Any] = {"operations" if self.protocol == "operations" else "media": entries}
        if any_success:
            result["remainingCredits"] = self.credits
        return _json(result)

    async def _media_get(self, request: web.Request) -> web.StreamResponse:
        """Operations-era media as base64 `encodedVideo`; media-era ids get the captured 400."""
        gen = self._find(request.match_info["media_id"])
        if (gen is None and self.protocol == "media") or (gen is not None and gen.protocol == "media"):
            return _json(error_envelope(400), status=400)
        if gen is None or gen.state != "SUCCESSFUL":
            return _json(error_envelope(404), status=404)
        data = await asyncio.to_thread(self._video(gen).read_all)
        encoded = base64.b64encode(data).decode("ascii")
        body = media_get_body(gen, encoded, self._fife_url(gen, "mp4"), self._fife_url(gen, "jpg"))
        return _json(body)

    async def _fife(self, request: web.Request) -> web.StreamResponse:
        """A signed-URL media host like GCS: no auth, 400 once expired, the video streamed in chunks."""
        file = request.match_info["file"]
        refused = self._check_signature(file, request.query)
        if refused is not None:
            return refused
        stem, _, ext = file.rpartition(".")
        gen = self.generations.get(stem)
        if gen is None or gen.state != "SUCCESSFUL" or ext not in ("mp4", "jpg"):
            xml = gcs_error_xml("NoSuchKey", "The specified key does not exist.", f"No such object: {file}")
            return web.Response(status=404, text=xml, content_type="application/xml", charset="UTF-8")
        if ext == "jpg":
            return web.Response(body=THUMBNAIL, content_type="image/jpeg")
        return await self._stream_video(request, gen)

    # ----------------------------------------------------------------- helpers

    def _take_fault(self, route: str) -> Fault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        armed = queue[0]
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining <= 0:
                queue.pop(0)
        return armed.fault

    async def _hold(self) -> None:
        release = self._hang_release
        self._hung += 1
        try:
            await release.wait()
        finally:
            self._hung -= 1

    async def _closed_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _bearer_ok(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expiry is not None and self._clock() < expiry

    def _cookie_ok(self, request: web.Request) -> bool:
        if self._session_dead:
            return False
        jar = parse_cookie_headers(request.headers.getall("Cookie", []))
        return any(secrets.compare_digest(v, self._session_cookie) for v in session_values(jar))

    def _cookie_refused(self, route: str, request: web.Request) -> web.StreamResponse:
        """What labs.google does with dead cookies: `{}` for the session, 401 for tRPC, sign-in for media."""
        if route == "session":
            return _json({})
        if route == "redirect":
            callback = quote(request.path_qs, safe="")
            return web.Response(status=307, headers={"Location": f"/fx/api/auth/signin?callbackUrl={callback}"})
        return _json(trpc_error(401, "UNAUTHORIZED", "UNAUTHORIZED", "project.createProject"), status=401)

    def _model_allowed(self, request: VideoRequest) -> bool:
        key = request.model_key
        portrait_key = "_portrait" in key
        if portrait_key != (request.aspect == "VIDEO_ASPECT_RATIO_PORTRAIT"):
            return False
        return "_ultra" not in key or self.tier == TIER_TWO

    def _cost(self, model_key: str) -> int:
        if "_relaxed" in model_key:
            return 0
        return self.cost_fast if "fast" in model_key else self.cost_quality

    def _outcome_for(self, prompt: str) -> Outcome:
        for needle, outcome in self._rules:
            if needle in prompt:
                return outcome
        return Outcome.success()

    def _start_generation(self, parsed: GenerateBody, request: VideoRequest) -> Generation:
        media_name = str(uuid.uuid4())
        name = uuid.uuid4().hex if self.protocol == "operations" else media_name
        workflow_id = str(uuid.uuid4())
        outcome = self._outcome_for(request.prompt)
        gen = Generation(
            name=name,
            protocol=self.protocol,
            scene_id=request.scene_id,
            media_name=media_name,
            media_generation_id=media_generation_id(parsed.project_id, workflow_id, media_name),
            prompt=request.prompt,
            seed=request.seed,
            model_key=request.model_key,
            aspect=request.aspect,
            project_id=parsed.project_id,
            workflow_id=workflow_id,
            batch_id=parsed.batch_id or str(uuid.uuid4()),
            cost=self._cost(request.model_key),
            outcome=outcome,
            video_size=outcome.video_size if outcome.video_size is not None else self.video_size,
            created_at=self._clock(),
            structured_prompt=request.structured,
        )
        self.generations[name] = gen
        return gen

    def _advance(self, gen: Generation) -> None:
        """One poll: PENDING -> ACTIVE ... -> the outcome after `polls_to_finish` polls; failures refunded."""
        gen.polls += 1
        if not gen.running:
            return
        if gen.outcome.kind == "stuck" or gen.polls < self.polls_to_finish:
            gen.state = "ACTIVE"
        elif gen.outcome.kind == "success":
            gen.state = "SUCCESSFUL"
        else:
            gen.state = "FAILED"
            self.credits += gen.cost

    def _status_entry(self, gen: Generation) -> dict[str, Any]:
        if self.protocol == "media":
            return status_media_entry(gen)
        if gen.state == "SUCCESSFUL":
            return status_operation_entry(gen, self._fife_url(gen, "mp4"), self._fife_url(gen, "jpg"))
        return status_operation_entry(gen, "", "")

    def _find(self, media_id: str) -> Generation | None:
        """Look a generation up by operation name, media name or mediaGenerationId."""
        gen = self.generations.get(media_id)
        if gen is not None:
            return gen
        for candidate in self.generations.values():
            if media_id in (candidate.media_name, candidate.media_generation_id):
                return candidate
        return None

    def _video(self, gen: Generation) -> VideoSource:
        return VideoSource(gen.name, gen.video_size)

    def _fife_url(self, gen: Generation, ext: str) -> str:
        file = f"{gen.name}.{ext}"
        expires = int(self._clock() + self.fife_lifetime)
        signature = secrets.token_hex(64)
        self._fife_signatures[signature] = (file, expires)
        query = urlencode({"GoogleAccessId": _GCS_ACCESS_ID, "Expires": expires, "Signature": signature})
        return f"{self.api_base}/fife/{file}?{query}"

    def _check_signature(self, file: str, query: Any) -> web.Response | None:
        signature = query.get("Signature", "")
        signed = self._fife_signatures.get(signature)
        if signature in self._revoked_signatures or (signed is not None and self._clock() > signed[1]):
            xml = gcs_error_xml(
                "ExpiredToken",
                "Invalid argument.",
                "The provided token has expired. Request signature expired.",
            )
            return web.Response(status=400, text=xml, content_type="application/xml", charset="UTF-8")
        if signed is None or signed[0] != file or query.get("Expires") != str(signed[1]):
            xml = gcs_error_xml(
                "SignatureDoesNotMatch",
                "Access denied.",
                "The request signature we calculated does not match the signature you provided.",
            )
            return web.Response(status=403, text=xml, content_type="application/xml", charset="UTF-8")
        return None

    async def _stream_video(self, request: web.Request, gen: Generation) -> web.StreamResponse:
        """Stream with a correct Content-Length; a truncated fault stops early and drops the connection."""
        cut_after = request.get(_CUT_AFTER)
        if cut_after is not None and cut_after < 0:
            cut_after = gen.video_size // 2
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = gen.video_size
        await response.prepare(request)
        sent = 0
        for chunk in self._video(gen).chunks():
            if self._closing.is_set():
                return _drop(request, response)
            if cut_after is not None and sent + len(chunk) > cut_after:
                await response.write(chunk[: max(cut_after - sent, 0)])
                return _drop(request, response)
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
        return response


# --------------------------------------------------------------------- module helpers


def _json(body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    extra = dict(headers or {})
    if any(key.lower() == "content-type" for key in extra):
        return web.Response(text=json.dumps(body), status=status, headers=extra)
    return web.Response(
        text=json.dumps(body), status=status, headers=extra, content_type="application/json", charset="UTF-8"
    )


def _html() -> web.Response:
    return web.Response(text=SIGN_IN_HTML, content_type="text/html", charset="utf-8")


def _drop(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection without (the rest of) a response."""
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response(status=499)


def _json_body(request: web.Request, text: str) -> dict[str, Any]:
    if request.content_type not in _JSON_TYPES:
        raise BadRequest([(None, f"Invalid JSON payload received. Unsupported content type {request.content_type}.")])
    return parse_json_object(text)


def _stale_token() -> str:
    return "ya29.a0stale" + secrets.token_urlsafe(60)
