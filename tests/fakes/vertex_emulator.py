"""A loopback Vertex AI speaking vertex-veo.md §2 for Veo: submit, poll, the model read, faults and recording.

One catch-all route serves /v1 and /v1beta1; each request goes: record -> fault -> auth -> handler.
Auth accepts ``x-goog-api-key: <api_key>`` or ``Authorization: Bearer <bearer_token>``; anything else is 401.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes._flow_video import VideoSource
from tests.fakes._vertex_faults import (
    ERROR_INFO,
    FILTERED_REASON,
    Ending,
    Fault,
    envelope,
    model_not_found,
)

__all__ = ["Ending", "Fault", "Operation", "RecordedRequest", "VertexEmulator"]

ROUTES = ("submit", "poll", "model")
DEFAULT_MODELS = ("veo-3.1-fast-generate-001", "veo-3.1-generate-001", "veo-3.1-lite-generate-001")
_MODEL_PATH = r"publishers/google/models/(?P<model>[^/:]+)"
_PARENT = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/"
_SUBMIT = re.compile(f"^{_PARENT}{_MODEL_PATH}:predictLongRunning$")
_POLL = re.compile(f"^{_PARENT}{_MODEL_PATH}:fetchPredictOperation$")
_MODEL = re.compile(f"^(?:{_PARENT})?{_MODEL_PATH}$")
_SECRET_HEADERS = frozenset({"authorization", "x-goog-api-key"})
NOT_AN_MP4 = b"<!DOCTYPE html><html><body>Sorry, something went wrong.</body></html>"


@dataclass
class RecordedRequest:
    """One request as received; secret header values are replaced by ``<redacted>``."""

    route: str
    method: str
    path: str
    version: str
    headers: dict[str, str]
    json: Any
    at: float
    auth: str = "none"  # "api_key", "bearer" or "none"
    fault: str | None = None

    @property
    def instance(self) -> dict[str, Any]:
        return self.json["instances"][0]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.json["parameters"]


@dataclass
class Operation:
    name: str
    model: str
    instance: dict[str, Any]
    parameters: dict[str, Any]
    ending: Ending
    video_size: int
    polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class VertexEmulator:
    """Vertex AI on 127.0.0.1 for Veo operations, with faults, per-prompt endings and recording."""

    def __init__(
        self,
        *,
        project: str = "test-project",
        location: str = "us-central1",
        api_key: str = "AIzaTEST-vertex-key-0123456789",
        bearer_token: str = "ya29.test-vertex-token",
        polls_to_finish: int = 1,
        video_size: int = 4096,
        models: tuple[str, ...] = DEFAULT_MODELS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project = project
        self.location = location
        self.api_key = api_key
        self.bearer_token = bearer_token
        self.polls_to_finish = polls_to_finish
        self.video_size = video_size
        self.models = set(models)
        self.requests: list[RecordedRequest] = []
        self.operations: dict[str, Operation] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._clock = clock
        self._faults: dict[str, list[list[Any]]] = {}
        self._rules: list[tuple[str, Ending]] = []
        self._release = asyncio.Event()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{version:v1|v1beta1}/{rest:.+}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        self._closing.set()
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> VertexEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """Stands in for https://LOCATION-aiplatform.googleapis.com (VERTEX_API_BASE)."""
        if self._port is None:
            raise RuntimeError("VertexEmulator is not started")
        return f"http://127.0.0.1:{self._port}"

    # ----------------------------------------------------------------- control

    def inject(self, route: str, fault: Fault, times: int | None = 1) -> None:
        """The next ``times`` requests to ``route`` get ``fault`` (None: until cleared); faults queue per route."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(ROUTES)}")
        if fault.accept and route != "submit":
            raise ValueError("accept=True applies to the submit route only")
        self._faults.setdefault(route, []).append([fault, times])

    def clear_faults(self) -> None:
        self._faults.clear()

    def release_hung(self) -> None:
        self._release.set()
        self._release = asyncio.Event()

    def ending_for(self, prompt_contains: str, ending: Ending, *, first: bool = False) -> None:
        """Operations created from now on whose prompt contains the text end so; the first rule wins
        (``first``: put this rule before the others)."""
        self._rules.insert(0 if first else len(self._rules), (prompt_contains, ending))

    def forget_ending(self, prompt_contains: str) -> None:
        """Drop the rules for this text (operations already created keep their ending)."""
        self._rules = [(needle, e) for needle, e in self._rules if needle != prompt_contains]

    def set_ending(self, name: str, ending: Ending) -> None:
        """Change how an existing operation ends (a stuck one finishes, a bad download becomes good)."""
        self.operations[name].ending = ending

    async def wait_for_calls(self, route: str, count: int = 1) -> list[RecordedRequest]:
        """Wait (without polling) until `route` has been requested at least `count` times."""
        while len(found := self.calls(route)) < count:
            await self._changed.wait()
        return found

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (without polling) until `predicate()` holds; it is re-checked after every request."""
        while not predicate():
            await self._changed.wait()

    def calls(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    def count(self, route: str) -> int:
        return len(self.calls(route))

    def video_bytes(self, name: str) -> bytes:
        return VideoSource(name, self.operations[name].video_size).read_all()

    # ----------------------------------------------------------------- request path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route, match = _route(request.method, request.match_info["rest"])
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            route=route,
            method=request.method,
            path=request.path,
            version=request.match_info["version"],
            headers={
                k.lower(): ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in request.headers.items()
            },
            json=parsed,
            at=self._clock(),
        )
        self.requests.append(record)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if match is None:
            return _json(envelope(404, "The requested URL was not found on this server."), 404)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._handle(request, record, match, parsed)
        finally:
            self.in_flight -= 1

    async def _handle(
        self, request: web.Request, record: RecordedRequest, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        fault = self._take_fault(record.route)
        record.fault = fault.name if fault else None
        refused = self._check_auth(request, record)
        if refused is not None:
            return refused
        if fault is not None and fault.accept:
            self._submit(match, body)  # the operation exists; the client never learns its name
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        elif fault is not None:
            return await self._fault_answer(request, fault)
        if record.route == "model":
            model = match["model"]
            if model not in self.models:
                return _json(model_not_found(model), 404)
            return _json({"name": f"publishers/google/models/{model}", "versionId": "001", "launchStage": "GA"})
        if record.route == "submit":
            return self._submit_answer(match, body)
        return self._poll_answer(match, body)

    async def _fault_answer(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "status":
            return _json(fault.body or {}, fault.status)
        if fault.kind == "garbage":
            return web.Response(text='{"name": "projects/', content_type="application/json")
        if fault.kind == "hang":
            release = self._release
            await release.wait()
            if self._closing.is_set():
                return _drop(request)
            return _json(envelope(503, "The service is currently unavailable."), 503)
        return _drop(request)

    def _check_auth(self, request: web.Request, record: RecordedRequest) -> web.Response | None:
        key = request.headers.get("x-goog-api-key")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if key is not None:
            record.auth = "api_key"
            ok = key == self.api_key
        elif scheme.lower() == "bearer":
            record.auth = "bearer"
            ok = token.strip() == self.bearer_token
        else:
            ok = False
        if ok:
            return None
        details = [{"@type": ERROR_INFO, "reason": "API_KEY_INVALID" if key is not None else "ACCESS_TOKEN_INVALID"}]
        return _json(envelope(401, "Request had invalid authentication credentials.", details=details), 401)

    # ----------------------------------------------------------------- routes

    def _submit_answer(self, match: re.Match[str], body: Any) -> web.Response:
        if match["model"] not in self.models:
            return _json(model_not_found(match["model"]), 404)
        problem = _invalid(match["model"], body)
        if problem is not None:
            return _json(envelope(400, problem), 400)
        return _json({"name": self._submit(match, body).name})

    def _submit(self, match: re.Match[str], body: Any) -> Operation:
        instance = body["instances"][0]
        name = f"{match.string.rpartition(':')[0]}/operations/{uuid.uuid4()}"
        ending = next((e for needle, e in self._rules if needle in instance.get("prompt", "")), Ending.video())
        op = Operation(name, match["model"], instance, body.get("parameters", {}), ending, self.video_size)
        self.operations[name] = op
        return op

    def _poll_answer(self, match: re.Match[str], body: Any) -> web.Response:
        name = body.get("operationName") if isinstance(body, dict) else None
        op = self.operations.get(name) if isinstance(name, str) else None
        if op is None or op.model != match["model"]:
            return _json(envelope(404, f"Operation {name} not found."), 404)
        op.polls += 1
        if op.ending.kind == "never" or op.polls < self.polls_to_finish:
            return _json({"name": op.name, "done": False} if op.polls % 2 else {"name": op.name})
        return _json({"name": op.name, "done": True, **self._result(op)})

    def _result(self, op: Operation) -> dict[str, Any]:
        kind = op.ending.kind
        if kind == "error":
            return {"error": {"code": op.ending.error_code, "message": op.ending.error_message}}
        response: dict[str, Any] = {"@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"}
        if kind == "filtered":
            return {"response": {**response, "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTERED_REASON]}}
        count = int(op.parameters.get("sampleCount", 1))
        videos: list[dict[str, Any]] = []
        for i in range(count):
            if kind == "gcs":
                videos.append({"gcsUri": f"gs://bucket/{op.name.rpartition('/')[2]}/sample_{i}.mp4"})
                continue
            data = (
                NOT_AN_MP4
                if kind == "not_mp4"
                else VideoSource(op.name if i == 0 else f"{op.name}#{i}", op.video_size).read_all()
            )
            videos.append({"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": "video/mp4"})
        return {"response": {**response, "raiMediaFilteredCount": 0, "videos": videos}}

    def _take_fault(self, route: str) -> Fault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        armed = queue[0]
        if armed[1] is not None:
            armed[1] -= 1
            if armed[1] <= 0:
                queue.pop(0)
        return armed[0]


def _route(method: str, rest: str) -> tuple[str, re.Match[str] | None]:
    if method == "POST" and (m := _SUBMIT.match(rest)):
        return "submit", m
    if method == "POST" and (m := _POLL.match(rest)):
        return "poll", m
    if method == "GET" and (m := _MODEL.match(rest)):
        return "model", m
    return "unknown", None


def _invalid(model: str, body: Any) -> str | None:
    """The documented constraints (vertex-veo.md §3); a message like Google's INVALID_ARGUMENT otherwise."""
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or len(body["instances"]) != 1:
        return "instances must hold exactly one instance."
    instance, params = body["instances"][0], body.get("parameters", {})
    if not isinstance(instance.get("prompt"), str) and "image" not in instance and "video" not in instance:
        return "A prompt, an image or a video is required."
    if params.get("sampleCount", 1) not in (1, 2, 3, 4):
        return "sampleCount must be between 1 and 4."
    duration, resolution = params.get("durationSeconds", 8), params.get("resolution", "720p")
    if duration not in (4, 6, 8) or resolution not in ("720p", "1080p", "4k"):
        return "Unsupported duration or resolution."
    if params.get("aspectRatio", "16:9") not in ("16:9", "9:16"):
        return "Unsupported aspect ratio."
    needs_eight = resolution != "720p" or "referenceImages" in instance or "video" in instance
    if needs_eight and duration != 8:
        return "This combination requires durationSeconds 8."
    if "lite" in model and (resolution == "4k" or {"lastFrame", "referenceImages", "video"} & instance.keys()):
        return "The lite model does not support this input or resolution."
    if len(instance.get("referenceImages", [])) > 3:
        return "At most 3 reference images are supported."
    if "referenceImages" in instance and "lastFrame" in instance:
        return "referenceImages cannot be combined with lastFrame."
    return None


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json", charset="UTF-8")


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)
