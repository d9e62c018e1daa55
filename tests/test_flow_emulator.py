"""The Flow emulator behaves like the captured Flow: driven with plain aiohttp requests over loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from tests.fakes._flow_video import VideoSource
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome, RecordedRequest

BODIES = Path(__file__).parent / "fakes" / "flow_bodies"
LANDSCAPE = "VIDEO_ASPECT_RATIO_LANDSCAPE"
PORTRAIT = "VIDEO_ASPECT_RATIO_PORTRAIT"
GENERATE = "/v1/video:batchAsyncGenerateVideoText"
STATUS = "/v1/video:batchCheckAsyncVideoGenerationStatus"
SESSION = "/fx/api/auth/session"
PROJECT = "/fx/api/trpc/project.createProject"
REDIRECT = "/fx/api/trpc/media.getMediaUrlRedirect"
ISO_EXPIRES = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------- helpers


def capture(name: str) -> Any:
    return json.loads((BODIES / name).read_text(encoding="utf-8"))


def schema(key: str) -> Any:
    return capture("schema-capture_2026-08_flowgraph.json")[key]["res"]


def paths(obj: Any, prefix: str = "") -> set[str]:
    """Every node path of a JSON value (lists as `[]`); schema list markers like "<list len=1>" are skipped."""
    found = {prefix} if prefix else set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            found |= paths(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, str) and item.startswith("<list"):
                continue
            found |= paths(item, f"{prefix}[]")
    return found


def assert_shape(body: Any, *, like: list[Any], within: list[Any] | None = None) -> None:
    """Every path of each `like` capture is in `body`; every path of `body` is in some `like`/`within` capture."""
    ours = paths(body)
    for sample in like:
        missing = paths(sample) - ours
        assert not missing, f"missing paths {sorted(missing)}"
    allowed = set().union(*(paths(s) for s in [*like, *(within or [])]))
    extra = ours - allowed
    assert not extra, f"paths no capture has: {sorted(extra)}"


class Clock:
    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Flow:
    """Plain aiohttp calls against the emulator, the way Flow's web app makes them."""

    def __init__(self, emu: FlowEmulator, http: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.http = http
        self.token = emu.issue_token()

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", "origin": "https://labs.google"}

    def cookie(self, value: str | None = None) -> dict[str, str]:
        return {"Cookie": f"{self.emu.session_cookie_name}={value or self.emu.session_cookie}; _ga=GA1.1.1"}

    async def call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        data = None if body is None else json.dumps(body)
        hdrs = {"content-type": "text/plain;charset=UTF-8"} if body is not None else {}
        hdrs.update(headers or {})
        async with self.http.request(method, self.emu.api_base + path, data=data, headers=hdrs, **kw) as resp:
            raw = await resp.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
            return resp.status, parsed, resp

    async def project(self) -> str:
        status, body, _ = await self.call(
            "POST", PROJECT, body={"json": {"projectTitle": "t", "toolName": "PINHOLE"}}, headers=self.cookie()
        )
        assert status == 200
        return body["result"]["data"]["json"]["result"]["projectId"]

    @staticmethod
    def request(prompt: str = "a fox in the snow", **over: Any) -> dict[str, Any]:
        req: dict[str, Any] = {
            "aspectRatio": LANDSCAPE,
            "seed": 1234,
            "textInput": {"prompt": prompt},
            "videoModelKey": "veo_3_1_t2v_fast",
            "metadata": {"sceneId": "5f0c2a9e-3c61-4f0b-9d3e-2f1a7c9b8e10"},
        }
        req.update(over)
        return req

    async def generate(self, *requests: dict[str, Any], project_id: str | None = None) -> tuple[int, Any]:
        pid = project_id or await self.project()
        body = {"clientContext": {"projectId": pid, "tool": "PINHOLE"}, "requests": list(requests or [self.request()])}
        status, parsed, _ = await self.call("POST", GENERATE, body=body, headers=self.bearer)
        return status, parsed

    async def poll(self, started: Any) -> tuple[int, Any]:
        """Echo what generate returned, in the emulator's protocol."""
        if "operations" in started:
            body: dict[str, Any] = {"operations": started["operations"]}
        else:
            body = {"media": [{"name": m["name"], "projectId": m["projectId"]} for m in started["media"]]}
        status, parsed, _ = await self.call("POST", STATUS, body=body, headers=self.bearer)
        return status, parsed

    async def get(self, url: str, **kw: Any) -> tuple[int, bytes, aiohttp.ClientResponse]:
        async with self.http.get(url, **kw) as resp:
            return resp.status, await resp.read(), resp


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Any]]:
    started: list[FlowEmulator] = []

    async def factory(**kw: Any) -> Flow:
        emu = FlowEmulator(**kw)
        await emu.start()
        started.append(emu)
        return Flow(emu, http)

    yield factory
    for emu in started:
        await emu.close()


@pytest.fixture
async def ops(make: Callable[..., Any]) -> Flow:
    return await make(protocol="operations")


@pytest.fixture
async def media(make: Callable[..., Any]) -> Flow:
    return await make(protocol="media")


def fife_url(done: Any) -> str:
    return done["operations"][0]["operation"]["metadata"]["video"]["fifeUrl"]


async def finished(flow: Flow, *requests: dict[str, Any]) -> tuple[Any, Any]:
    """Generate, then poll until the first job is no longer running; return (generate body, last status body)."""
    status, started = await flow.generate(*requests)
    assert status == 200, started
    for _ in range(flow.emu.polls_to_finish):
        status, polled = await flow.poll(started)
        assert status == 200, polled
    return started, polled


# --------------------------------------------------------------------------- session and credentials


async def test_session_answers_like_the_capture_with_a_usable_token(ops: Flow) -> None:
    status, body, resp = await ops.call("GET", SESSION, headers=ops.cookie())
    assert status == 200
    assert resp.content_type == "application/json"
    assert_shape(
        body, like=[capture("session_success_2026-08-27.json"), schema("GET https://labs.google/fx/api/auth/session")]
    )
    assert ISO_EXPIRES.match(body["expires"])
    assert body["access_token"].startswith("ya29.")
    status, _, _ = await ops.call("GET", "/v1/credits", headers={"authorization": f"Bearer {body['access_token']}"})
    assert status == 200


async def test_each_session_call_issues_a_new_token_and_older_ones_stay_valid(ops: Flow) -> None:
    tokens = [(await ops.call("GET", SESSION, headers=ops.cookie()))[1]["access_token"] for _ in range(3)]
    assert len(set(tokens)) == 3
    for token in tokens:
        status, _, _ = await ops.call("GET", "/v1/credits", headers={"authorization": f"Bearer {token}"})
        assert status == 200


async def test_session_expires_and_token_lifetime_follow_the_injected_clock(make: Callable[..., Any]) -> None:
    clock = Clock(1_763_181_964.0)  # 2025-11-15T04:46:04Z
    flow = await make(clock=clock, token_lifetime=86400.0)
    _, body, _ = await flow.call("GET", SESSION, headers=flow.cookie())
    assert body["expires"] == "2025-11-16T04:46:04.000Z"
    auth = {"authorization": f"Bearer {body['access_token']}"}
    clock.now += 86399
    assert (await flow.call("GET", "/v1/credits", headers=auth))[0] == 200
    clock.now += 2
    status, err, _ = await flow.call("GET", "/v1/credits", headers=auth)
    assert (status, err) == (401, capture("error_401_unauthenticated_DOC-ASSERTED.json"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Cookie": "__Secure-next-auth.session-token=forged"},
        {"Cookie": "unrelated=1"},
    ],
)
async def test_session_without_a_valid_cookie_is_empty(ops: Flow, headers: dict[str, str]) -> None:
    status, body, _ = await ops.call("GET", SESSION, headers=headers)
    assert (status, body) == (200, {})


async def test_session_accepts_the_chunked_cookie(ops: Flow) -> None:
    value = ops.emu.session_cookie
    name = ops.emu.session_cookie_name
    cookie = f"{name}.0={value[:100]}; other=x; {name}.1={value[100:]}"
    _, body, _ = await ops.call("GET", SESSION, headers={"Cookie": cookie})
    assert "access_token" in body
    wrong = f"{name}.0={value[100:]}; {name}.1={value[:100]}"
    assert (await ops.call("GET", SESSION, headers={"Cookie": wrong}))[1] == {}


async def test_kill_session_empties_session_and_refuses_cookie_routes(ops: Flow) -> None:
    ops.emu.kill_session()
    assert (await ops.call("GET", SESSION, headers=ops.cookie()))[1] == {}
    status, body, _ = await ops.call(
        "POST", PROJECT, body={"json": {"projectTitle": "t", "toolName": "PINHOLE"}}, headers=ops.cookie()
    )
    assert status == 401
    assert body["error"]["json"]["data"]["code"] == "UNAUTHORIZED"
    status, html, resp = await ops.get(
        ops.emu.labs_base + REDIRECT + "?name=x&mediaUrlType=MEDIA_URL_TYPE_FULL_MEDIA", headers=ops.cookie()
    )
    assert status == 200
    assert resp.content_type == "text/html"
    assert b"Sign in" in html
    assert resp.history[0].status == 307


async def test_refresh_needed_gives_a_stale_token_until_switched_off(ops: Flow) -> None:
    ops.emu.refresh_needed()
    _, body, _ = await ops.call("GET", SESSION, headers=ops.cookie())
    assert body["error"] == "ACCESS_TOKEN_REFRESH_NEEDED"
    assert set(capture("session_access_token_refresh_needed_FIXTURE.json")) <= set(body)
    status, _, _ = await ops.call("GET", "/v1/credits", headers={"authorization": f"Bearer {body['access_token']}"})
    assert status == 401
    ops.emu.refresh_needed(False)
    _, body, _ = await ops.call("GET", SESSION, headers=ops.cookie())
    assert "error" not in body
    assert body["access_token"]


async def test_rotate_cookie_sets_a_new_cookie_and_only_that_is_accepted(ops: Flow) -> None:
    ops.emu.rotate_cookie = True
    old = ops.emu.session_cookie
    _, body, resp = await ops.call("GET", SESSION, headers=ops.cookie(old))
    assert body["access_token"]
    new = ops.emu.session_cookie
    assert new != old
    assert resp.headers.getall("Set-Cookie") == [
        f"__Secure-next-auth.session-token={new}; Path=/; HttpOnly; Secure; SameSite=Lax"
    ]
    assert (await ops.call("GET", SESSION, headers=ops.cookie(old)))[1] == {}
    ops.emu.rotate_cookie = False
    _, body, resp = await ops.call("GET", SESSION, headers=ops.cookie(new))
    assert body["access_token"]
    assert "Set-Cookie" not in resp.headers


async def test_expire_tokens_makes_every_issued_bearer_401(ops: Flow) -> None:
    _, body, _ = await ops.call("GET", SESSION, headers=ops.cookie())
    ops.emu.expire_tokens()
    for token in (ops.token, body["access_token"]):
        status, err, _ = await ops.call("GET", "/v1/credits", headers={"authorization": f"Bearer {token}"})
        assert (status, err) == (401, capture("error_401_unauthenticated_DOC-ASSERTED.json"))
    fresh = ops.emu.issue_token()
    assert (await ops.call("GET", "/v1/credits", headers={"authorization": f"Bearer {fresh}"}))[0] == 200


@pytest.mark.parametrize("headers", [{}, {"authorization": "ya29.raw"}, {"authorization": "Bearer ya29.unknown"}])
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/credits"), ("POST", GENERATE), ("POST", STATUS), ("GET", "/v1/media/abc")]
)
async def test_v1_routes_need_a_valid_bearer(ops: Flow, headers: dict[str, str], method: str, path: str) -> None:
    status, body, _ = await ops.call(method, path, body={} if method == "POST" else None, headers=headers)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(("fmt", "chunked"), [("list", False), ("list", True), ("object", False)])
async def test_written_cookie_file_works_against_the_session_endpoint(
    ops: Flow, tmp_path: Path, fmt: str, chunked: bool
) -> None:
    path = tmp_path / "cookie.json"
    ops.emu.write_cookie_file(path, fmt=fmt, chunked=chunked)
    data = json.loads(path.read_text())
    pairs = {c["name"]: c["value"] for c in data} if fmt == "list" else dict(data)
    bearer = pairs.pop("authorization")
    assert bearer.startswith("Bearer ya29.")
    assert (await ops.call("GET", "/v1/credits", headers={"authorization": bearer}))[0] == 200
    names = set(pairs)
    expected = (
        {"__Secure-next-auth.session-token.0", "__Secure-next-auth.session-token.1"}
        if chunked
        else {"__Secure-next-auth.session-token"}
    )
    assert expected <= names
    assert len(names - expected) >= 2  # unrelated cookies come along
    if fmt == "list":
        keys = {
            "name",
            "value",
            "domain",
            "path",
            "expirationDate",
            "hostOnly",
            "httpOnly",
            "secure",
            "session",
            "sameSite",
            "storeId",
        }
        assert all(set(c) == keys for c in data if c["name"] != "authorization")
        assert {c["domain"] for c in data if "next-auth" in c["name"]} == {"labs.google"}
        assert data[-1] == {"name": "authorization", "value": bearer}
    cookie = "; ".join(f"{k}={v}" for k, v in pairs.items())
    assert (await ops.call("GET", SESSION, headers={"Cookie": cookie}))[1]["access_token"]


async def test_cookie_file_with_a_given_token_or_without_authorization(ops: Flow, tmp_path: Path) -> None:
    ops.emu.write_cookie_file(tmp_path / "a.json", token="ya29.given")
    assert {"name": "authorization", "value": "Bearer ya29.given"} in json.loads((tmp_path / "a.json").read_text())
    ops.emu.write_cookie_file(tmp_path / "b.json", with_authorization=False)
    assert all(c["name"] != "authorization" for c in json.loads((tmp_path / "b.json").read_text()))


# --------------------------------------------------------------------------- credits and projects


@pytest.mark.parametrize(
    ("tier", "sample"),
    [
        ("PAYGATE_TIER_NOT_PAID", "credits_free_tier_2026.json"),
        ("PAYGATE_TIER_TWO", "credits_paid_ultra_2026-02.json"),
        ("PAYGATE_TIER_ONE", "credits_paid_ultra_2026-02.json"),
    ],
)
async def test_credits_look_like_the_captures(make: Callable[..., Any], tier: str, sample: str) -> None:
    flow = await make(tier=tier, credits=737)
    status, body, _ = await flow.call("GET", "/v1/credits", headers=flow.bearer)
    assert status == 200
    assert (body["credits"], body["userPaygateTier"]) == (737, tier)
    assert_shape(body, like=[capture(sample)], within=[capture("credits_free_tier_2026.json")])
    if tier != "PAYGATE_TIER_ONE":
        assert (body["sku"], body["serviceTier"]) == (capture(sample)["sku"], capture(sample)["serviceTier"])


async def test_create_project_answers_like_the_capture(ops: Flow) -> None:
    request = capture("trpc_createProject_request_2026-02-01.json")
    status, body, _ = await ops.call("POST", PROJECT, body=request, headers=ops.cookie())
    assert status == 200
    assert_shape(body, like=[capture("trpc_createProject_response_2026-02-01.json")])
    result = body["result"]["data"]["json"]["result"]
    assert UUID.match(result["projectId"])
    assert result["projectInfo"]["projectTitle"] == "Feb 01 - 02:49"
    assert ops.emu.projects == [result["projectId"]]


@pytest.mark.parametrize("body", [{}, {"json": {"projectTitle": 3, "toolName": "PINHOLE"}}, {"json": "x"}])
async def test_create_project_rejects_bad_input(ops: Flow, body: Any) -> None:
    status, err, _ = await ops.call("POST", PROJECT, body=body, headers=ops.cookie())
    assert status == 400
    assert err["error"]["json"]["data"]["code"] == "BAD_REQUEST"
    assert ops.emu.projects == []


# --------------------------------------------------------------------------- generate


async def test_generate_operations_protocol_matches_capture_and_charges(ops: Flow) -> None:
    status, body = await ops.generate(Flow.request(), Flow.request("second", videoModelKey="veo_3_1_t2v"))
    assert status == 200
    assert_shape(body, like=[capture("generate_t2v_response_2025-10-30.json")])
    names = [op["operation"]["name"] for op in body["operations"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in names)
    assert body["operations"][0]["sceneId"] == Flow.request()["metadata"]["sceneId"]
    assert {op["status"] for op in body["operations"]} == {"MEDIA_GENERATION_STATUS_PENDING"}
    assert body["remainingCredits"] == 1000 - 20 - 100 == ops.emu.credits
    gen = ops.emu.generations[names[0]]
    assert (gen.prompt, gen.seed, gen.model_key, gen.aspect, gen.state) == (
        "a fox in the snow",
        1234,
        "veo_3_1_t2v_fast",
        LANDSCAPE,
        "PENDING",
    )
    assert gen.project_id == ops.emu.projects[0]


async def test_generate_media_protocol_matches_media_only_captures(media: Flow) -> None:
    req = Flow.request(textInput={"structuredPrompt": {"parts": [{"text": "a fox"}]}}, metadata={})
    status, body = await media.generate(req)
    assert status == 200
    assert "operations" not in body
    assert_shape(
        body,
        like=[schema("POST https://aisandbox-pa.googleapis.com/v1/video:batchAsyncGenerateVideoText")],
        within=[
            capture("generate_r2v_response_media_only_2026-08-28.json"),
            capture("generate_t2v_response_2026-05-08.json"),
        ],
    )
    entry = body["media"][0]
    assert UUID.match(entry["name"])
    assert entry["mediaMetadata"]["mediaStatus"]["mediaGenerationStatus"] == "MEDIA_GENERATION_STATUS_SCHEDULED"
    assert entry["projectId"] == body["workflows"][0]["projectId"] == media.emu.projects[0]
    assert body["workflows"][0]["metadata"]["primaryMediaId"] == entry["name"]
    assert entry["workflowId"] == body["workflows"][0]["name"]
    assert media.emu.generations[entry["name"]].prompt == "a fox"


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "application/json"])
async def test_generate_accepts_both_content_types(ops: Flow, content_type: str) -> None:
    pid = await ops.project()
    body = {"clientContext": {"projectId": pid, "tool": "PINHOLE"}, "requests": [Flow.request()]}
    status, _, _ = await ops.call("POST", GENERATE, body=body, headers={**ops.bearer, "content-type": content_type})
    assert status == 200


async def test_generate_rejects_other_content_types_and_non_json(ops: Flow) -> None:
    pid = await ops.project()
    body = {"clientContext": {"projectId": pid, "tool": "PINHOLE"}, "requests": [Flow.request()]}
    form = {**ops.bearer, "content-type": "application/x-www-form-urlencoded"}
    assert (await ops.call("POST", GENERATE, body=body, headers=form))[0] == 400
    async with ops.http.post(ops.emu.api_base + GENERATE, data="{not json", headers=ops.bearer) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"
    assert ops.emu.generations == {}


@pytest.mark.parametrize(
    ("sample", "tier", "protocol"),
    [
        ("generate_t2v_request_2025-10-11.json", "PAYGATE_TIER_ONE", "operations"),
        ("generate_t2v_request_2025-10-30.json", "PAYGATE_TIER_ONE", "operations"),
        ("generate_t2v_request_2026-02_abridged.json", "PAYGATE_TIER_TWO", "operations"),
        ("generate_t2v_request_2026-05-08.json", "PAYGATE_TIER_ONE", "media"),
    ],
)
async def test_generate_accepts_the_captured_request_bodies(
    make: Callable[..., Any], sample: str, tier: str, protocol: str
) -> None:
    flow = await make(tier=tier, protocol=protocol)
    body = capture(sample)
    body["clientContext"]["projectId"] = await flow.project()
    status, answer, _ = await flow.call("POST", GENERATE, body=body, headers=flow.bearer)
    assert status == 200, answer
    (gen,) = flow.emu.generations.values()
    assert gen.seed == body["requests"][0]["seed"]
    cost = 0 if "relaxed" in gen.model_key else 20
    assert flow.emu.credits == 1000 - cost


async def test_generate_without_a_project_id_is_rejected(ops: Flow) -> None:
    body = capture("generate_t2v_request_2026-08-27_probe.json")
    status, err, _ = await ops.call("POST", GENERATE, body=body, headers=ops.bearer)
    assert status == 400
    fields = {v.get("field") for v in err["error"]["details"][0]["fieldViolations"]}
    assert {"client_context.project_id", "requests[0].metadata.scene_id"} <= fields


def _without(key: str) -> dict[str, Any]:
    req = Flow.request()
    del req[key]
    return req


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        (Flow.request(aspectRatio="VIDEO_ASPECT_RATIO_SQUARE"), "requests[0].aspect_ratio"),
        (_without("aspectRatio"), "requests[0].aspect_ratio"),
        (Flow.request(seed="abc"), "requests[0].seed"),
        (Flow.request(seed=1.5), "requests[0].seed"),
        (Flow.request(seed=2**31), "requests[0].seed"),
        (_without("seed"), "requests[0].seed"),
        (Flow.request(textInput={}), "requests[0].text_input.prompt"),
        (Flow.request(textInput={"prompt": ""}), "requests[0].text_input.prompt"),
        (Flow.request(textInput={"structuredPrompt": {"parts": []}}), "requests[0].text_input.structured_prompt.parts"),
        (_without("textInput"), "requests[0].text_input"),
        (_without("videoModelKey"), "requests[0].video_model_key"),
        (Flow.request(metadata={}), "requests[0].metadata.scene_id"),
        (_without("metadata"), "requests[0].metadata"),
        (Flow.request(count=2), "requests[0]"),
        (Flow.request(textInput={"prompt": "x", "negative": "y"}), "requests[0].text_input"),
    ],
)
async def test_generate_rejects_invalid_requests_like_flow(ops: Flow, request_body: Any, field: str) -> None:
    status, err = await ops.generate(request_body)
    assert status == 400
    assert_shape(err, like=[], within=[capture("error_400_invalid_argument_fieldViolations_2026-08-27.json")])
    assert err["error"]["status"] == "INVALID_ARGUMENT"
    violations = err["error"]["details"][0]["fieldViolations"]
    assert field in {v.get("field") for v in violations}
    assert err["error"]["message"] == "\n".join(v["description"] for v in violations)
    assert ops.emu.generations == {}
    assert ops.emu.credits == 1000


@pytest.mark.parametrize(
    "body",
    [
        {"requests": [Flow.request()]},
        {
            "clientContext": {"projectId": "11111111-2222-3333-4444-555555555555", "tool": "PINHOLE"},
            "requests": [Flow.request()],
        },
        {"clientContext": {"projectId": "P", "tool": "PINHOLE"}, "requests": []},
        {"clientContext": {"tool": "PINHOLE"}, "requests": [Flow.request()], "extra": 1},
    ],
)
async def test_generate_rejects_bad_client_context_and_unknown_names(ops: Flow, body: Any) -> None:
    status, err, _ = await ops.call("POST", GENERATE, body=body, headers=ops.bearer)
    assert status == 400
    assert err["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


async def test_generate_unknown_top_level_name_message_matches_capture(ops: Flow) -> None:
    pid = await ops.project()
    body = {"clientContext": {"projectId": pid, "tool": "PINHOLE"}, "requests": [Flow.request()], "bogus": True}
    _, err, _ = await ops.call("POST", GENERATE, body=body, headers=ops.bearer)
    assert err["error"]["details"][0]["fieldViolations"] == [
        {"description": 'Invalid JSON payload received. Unknown name "bogus": Cannot find field.'}
    ]


async def test_media_protocol_does_not_need_scene_id_and_takes_snake_case(media: Flow) -> None:
    pid = await media.project()
    body = {
        "client_context": {"project_id": pid, "tool": "PINHOLE"},
        "requests": [
            {
                "aspect_ratio": PORTRAIT,
                "seed": "77",
                "text_input": {"prompt": "p"},
                "video_model_key": "veo_3_1_t2v_fast_portrait",
            }
        ],
    }
    status, answer, _ = await media.call("POST", GENERATE, body=body, headers=media.bearer)
    assert status == 200, answer
    (gen,) = media.emu.generations.values()
    assert (gen.seed, gen.scene_id, gen.aspect) == (77, "", PORTRAIT)


@pytest.mark.parametrize(
    ("tier", "aspect", "model", "allowed"),
    [
        ("PAYGATE_TIER_ONE", LANDSCAPE, "veo_3_1_t2v_fast", True),
        ("PAYGATE_TIER_ONE", PORTRAIT, "veo_3_1_t2v_fast_portrait", True),
        ("PAYGATE_TIER_ONE", PORTRAIT, "veo_3_1_t2v_fast", False),
        ("PAYGATE_TIER_ONE", LANDSCAPE, "veo_3_1_t2v_portrait", False),
        ("PAYGATE_TIER_ONE", LANDSCAPE, "veo_3_1_t2v_fast_ultra", False),
        ("PAYGATE_TIER_NOT_PAID", PORTRAIT, "veo_3_1_t2v_fast_portrait_ultra_relaxed", False),
        ("PAYGATE_TIER_TWO", LANDSCAPE, "veo_3_1_t2v_fast_ultra", True),
        ("PAYGATE_TIER_TWO", PORTRAIT, "veo_3_1_t2v_portrait_ultra", True),
    ],
)
async def test_model_keys_must_fit_orientation_and_tier(
    make: Callable[..., Any], tier: str, aspect: str, model: str, allowed: bool
) -> None:
    flow = await make(tier=tier)
    status, body = await flow.generate(Flow.request(aspectRatio=aspect, videoModelKey=model))
    if allowed:
        assert status == 200
    else:
        assert status == 403
        assert body["error"]["details"][0]["reason"] == "PUBLIC_ERROR_MODEL_ACCESS_DENIED"
        assert flow.emu.credits == 1000
        assert flow.emu.generations == {}


@pytest.mark.parametrize(
    ("model", "cost"),
    [("veo_3_1_t2v_fast", 20), ("veo_3_1_t2v", 100), ("veo_3_1_t2v_fast_ultra_relaxed", 0)],
)
async def test_generate_costs_per_request(make: Callable[..., Any], model: str, cost: int) -> None:
    flow = await make(tier="PAYGATE_TIER_TWO")
    status, body = await flow.generate(*(Flow.request(videoModelKey=model) for _ in range(3)))
    assert status == 200
    assert body["remainingCredits"] == flow.emu.credits == 1000 - 3 * cost
    assert len(body["operations"]) == 3
    assert len(flow.emu.generations) == 3


async def test_generate_without_enough_credits_is_a_quota_error(make: Callable[..., Any]) -> None:
    flow = await make(credits=30)
    status, body = await flow.generate(Flow.request(), Flow.request())
    assert status == 429
    assert body["error"]["details"][0]["reason"] == "PUBLIC_ERROR_USER_QUOTA_REACHED"
    assert flow.emu.credits == 30
    assert flow.emu.generations == {}


async def test_max_concurrent_limits_running_generations(make: Callable[..., Any]) -> None:
    flow = await make(max_concurrent=2, polls_to_finish=1)
    status, started = await flow.generate(Flow.request(), Flow.request())
    assert status == 200
    status, body = await flow.generate(Flow.request())
    assert status == 429
    assert body["error"]["details"][0]["reason"] == "PUBLIC_ERROR_CONCURRENT_LIMIT_REACHED"
    await flow.poll(started)
    assert (await flow.generate(Flow.request()))[0] == 200


# --------------------------------------------------------------------------- status


async def test_operations_status_runs_pending_active_successful_like_the_captures(ops: Flow) -> None:
    _, started = await ops.generate()
    name = started["operations"][0]["operation"]["name"]
    status, active = await ops.poll(started)
    assert status == 200
    assert active["operations"][0]["status"] == "MEDIA_GENERATION_STATUS_ACTIVE"
    assert_shape(active, like=[capture("status_response_active_2025-10-12.json")])
    assert ops.emu.generations[name].state == "ACTIVE"
    status, done = await ops.poll(started)
    assert_shape(
        done,
        like=[capture("status_response_successful_2025-10-12.json")],
        within=[capture("status_response_successful_i2v_2025-10-29.json")],
    )
    entry = done["operations"][0]
    assert entry["status"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL"
    video = entry["operation"]["metadata"]["video"]
    assert entry["mediaGenerationId"] == video["mediaGenerationId"] == entry["operation"]["metadata"]["name"]
    assert done["remainingCredits"] == 980
    assert re.match(
        rf"^{re.escape(ops.emu.api_base)}/fife/{name}\.mp4\?.*Expires=\d+.*&Signature=\w+", video["fifeUrl"]
    )
    gen = ops.emu.generations[name]
    assert (gen.state, gen.polls) == ("SUCCESSFUL", 2)
    raw = base64.urlsafe_b64decode(entry["mediaGenerationId"] + "==")
    assert gen.project_id.encode() in raw
    assert gen.media_name.encode() in raw


def _media_within() -> list[Any]:
    return [
        capture("status_response_successful_media_2026-08-27_curated.json"),
        schema("POST https://aisandbox-pa.googleapis.com/v1/video:batchCheckAsyncVideoGenerationStatus"),
        {"media": capture("generate_t2v_response_2026-05-08.json")["media"]},
    ]


async def test_media_status_runs_active_then_successful_without_any_url(media: Flow) -> None:
    _, started = await media.generate()
    status, active = await media.poll(started)
    assert status == 200
    assert_shape(
        active,
        like=[schema("POST https://aisandbox-pa.googleapis.com/v1/video:batchCheckAsyncVideoGenerationStatus")],
        within=_media_within(),
    )
    assert active["media"][0]["mediaMetadata"]["mediaStatus"]["mediaGenerationStatus"] == (
        "MEDIA_GENERATION_STATUS_ACTIVE"
    )
    assert "remainingCredits" not in active
    _, done = await media.poll(started)
    assert_shape(
        done, like=[capture("status_response_successful_media_2026-08-27_curated.json")], within=_media_within()
    )
    entry = done["media"][0]
    assert entry["mediaMetadata"]["mediaStatus"]["mediaGenerationStatus"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL"
    assert entry["mediaMetadata"]["mediaBlobSize"] == str(64 * 1024)
    assert entry["video"]["operation"]["name"] == entry["name"]
    assert "http" not in json.dumps(done)
    assert done["remainingCredits"] == 980


async def test_status_takes_many_operations_per_call_and_advances_each_once(make: Callable[..., Any]) -> None:
    flow = await make(polls_to_finish=3)
    _, started = await flow.generate(*(Flow.request(f"p{i}") for i in range(5)))
    doubled = {"operations": started["operations"] + started["operations"][:1]}
    status, body, _ = await flow.call("POST", STATUS, body=doubled, headers=flow.bearer)
    assert status == 200
    assert len(body["operations"]) == 6
    assert [g.polls for g in flow.emu.generations.values()] == [1] * 5


@pytest.mark.parametrize("polls", [0, 1, 4])
async def test_polls_to_finish_sets_how_many_polls_a_job_takes(make: Callable[..., Any], polls: int) -> None:
    flow = await make(polls_to_finish=polls)
    _, started = await flow.generate()
    seen = []
    for _ in range(max(polls, 1) + 1):
        seen.append((await flow.poll(started))[1]["operations"][0]["status"].removeprefix("MEDIA_GENERATION_STATUS_"))
    assert seen == ["ACTIVE"] * (max(polls, 1) - 1) + ["SUCCESSFUL"] * 2


async def test_status_rejects_the_other_protocols_body(ops: Flow, media: Flow) -> None:
    media_body = capture("status_request_media_2026-05_documented.json")
    status, err, _ = await ops.call("POST", STATUS, body=media_body, headers=ops.bearer)
    assert status == 400
    assert 'Unknown name "media"' in err["error"]["message"]
    ops_body = capture("status_request_operations_2025-10-12.json")
    status, err, _ = await media.call("POST", STATUS, body=ops_body, headers=media.bearer)
    assert status == 400
    assert 'Unknown name "operations"' in err["error"]["message"]


async def test_status_reports_unknown_names_as_not_found_failures(ops: Flow, media: Flow) -> None:
    status, body, _ = await ops.call(
        "POST", STATUS, body=capture("status_request_operations_2025-10-12.json"), headers=ops.bearer
    )
    assert status == 200
    entry = body["operations"][0]
    assert entry["status"] == "MEDIA_GENERATION_STATUS_FAILED"
    assert entry["operation"]["error"]["code"] == 5
    _, started = await media.generate()
    wrong_project = {"media": [{"name": started["media"][0]["name"], "projectId": "other"}]}
    status, body, _ = await media.call("POST", STATUS, body=wrong_project, headers=media.bearer)
    assert body["media"][0]["mediaMetadata"]["mediaStatus"]["error"]["code"] == 5
    assert media.emu.generations[started["media"][0]["name"]].polls == 0


# --------------------------------------------------------------------------- outcomes


async def test_failed_outcome_reports_the_reason_and_refunds(ops: Flow) -> None:
    ops.emu.outcome_for("nsfw", Outcome.failed("PUBLIC_ERROR_SEXUAL"))
    ops.emu.outcome_for("ns", Outcome.internal())  # a later rule loses
    _, done = await finished(ops, Flow.request("very nsfw"))
    entry = done["operations"][0]
    assert entry["status"] == "MEDIA_GENERATION_STATUS_FAILED"
    assert entry["operation"]["error"] == {"code": 3, "message": "PUBLIC_ERROR_SEXUAL"}
    assert "remainingCredits" not in done
    assert ops.emu.credits == 1000
    (gen,) = ops.emu.generations.values()
    assert gen.state == "FAILED"


async def test_internal_outcome_carries_the_captured_code_13_trace(ops: Flow, media: Flow) -> None:
    for flow in (ops, media):
        flow.emu.outcome_for("boom", Outcome.internal())
        _, done = await finished(flow, Flow.request("boom"))
        if flow is ops:
            error = done["operations"][0]["operation"]["error"]
        else:
            error = done["media"][0]["mediaMetadata"]["mediaStatus"]["error"]
        assert error == capture("status_response_failed_code13_2026-02-08_fragment.json")
        assert flow.emu.credits == 1000


async def test_media_failed_outcome_matches_the_media_fragment(media: Flow) -> None:
    media.emu.outcome_for("logo", Outcome.media_failed())
    media.emu.outcome_for("gore", Outcome.failed("PUBLIC_ERROR_VIOLENCE_FILTER"))
    _, done = await finished(media, Flow.request("a logo"), Flow.request("gore"), Flow.request("fine"))
    first, second, third = done["media"]
    assert (
        first["mediaMetadata"]["mediaStatus"]
        == capture("status_response_failed_media_2026-05_fragment.json")["mediaStatus"]
    )
    assert first["mediaMetadata"]["visibility"] == "FILTERED"
    assert second["mediaMetadata"]["mediaStatus"]["error"] == {"code": 3, "message": "PUBLIC_ERROR_VIOLENCE_FILTER"}
    assert second["mediaMetadata"]["mediaStatus"]["failureReasons"] == ["VIOLENCE_FILTER"]
    assert third["mediaMetadata"]["mediaStatus"]["mediaGenerationStatus"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL"
    assert media.emu.credits == 1000 - 20


async def test_media_failed_outcome_in_the_operations_protocol(ops: Flow) -> None:
    ops.emu.outcome_for("logo", Outcome.media_failed())
    _, done = await finished(ops, Flow.request("logo"))
    assert done["operations"][0]["operation"]["error"] == {"code": 3, "message": "PUBLIC_ERROR_IP_INPUT_IMAGE"}


async def test_stuck_outcome_stays_active_until_changed(ops: Flow) -> None:
    ops.emu.outcome_for("", Outcome.stuck())
    _, started = await ops.generate()
    for _ in range(6):
        _, body = await ops.poll(started)
        assert body["operations"][0]["status"] == "MEDIA_GENERATION_STATUS_ACTIVE"
    name = started["operations"][0]["operation"]["name"]
    assert ops.emu.credits == 980
    ops.emu.set_outcome(name, Outcome.success())
    _, body = await ops.poll(started)
    assert body["operations"][0]["status"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL"


async def test_success_outcome_can_size_the_video(ops: Flow) -> None:
    ops.emu.outcome_for("tiny", Outcome.success(video_size=100))
    _, done = await finished(ops, Flow.request("tiny"))
    status, data, _ = await ops.get(fife_url(done))
    assert (status, len(data)) == (200, 100)


# --------------------------------------------------------------------------- media: fife, media_get, redirect


async def test_fife_url_streams_the_generations_video(ops: Flow) -> None:
    started, done = await finished(ops)
    name = started["operations"][0]["operation"]["name"]
    status, data, resp = await ops.get(fife_url(done))
    assert status == 200
    assert resp.content_type == "video/mp4"
    assert resp.headers["Content-Length"] == str(64 * 1024)
    assert data == ops.emu.video_bytes(name)
    assert data[4:8] == b"ftyp"
    assert hashlib.sha256(data).hexdigest() == ops.emu.video_sha256(name)
    thumb = done["operations"][0]["operation"]["metadata"]["video"]["servingBaseUri"]
    status, image, resp = await ops.get(thumb)
    assert (status, resp.content_type, image[:2]) == (200, "image/jpeg", b"\xff\xd8")


async def test_fife_urls_expire_like_gcs_and_a_new_poll_signs_a_fresh_one(ops: Flow) -> None:
    started, done = await finished(ops)
    old = fife_url(done)
    ops.emu.expire_fife_urls()
    status, data, resp = await ops.get(old)
    assert status == 400
    assert resp.content_type == "application/xml"
    assert b"<Code>ExpiredToken</Code>" in data
    _, again = await ops.poll(started)
    assert fife_url(again) != old
    assert (await ops.get(fife_url(again)))[0] == 200


async def test_fife_url_expires_by_the_clock_and_rejects_forged_signatures(make: Callable[..., Any]) -> None:
    clock = Clock()
    flow = await make(clock=clock, fife_lifetime=100.0)
    _, done = await finished(flow)
    url = fife_url(done)
    status, data, _ = await flow.get(re.sub(r"Signature=\w+", "Signature=00", url))
    assert (status, b"SignatureDoesNotMatch" in data) == (403, True)
    clock.now += 101
    assert (await flow.get(url))[0] == 400


async def test_fife_needs_a_signature_for_that_very_object(ops: Flow) -> None:
    ops.emu.outcome_for("stuck", Outcome.stuck())
    _, started = await ops.generate(Flow.request("stuck"))
    stuck = started["operations"][0]["operation"]["name"]
    assert (await ops.get(f"{ops.emu.api_base}/fife/{stuck}.mp4"))[0] == 403
    started, done = await finished(ops)
    name = started["operations"][0]["operation"]["name"]
    assert (await ops.get(fife_url(done).replace(name, stuck)))[0] == 403


async def test_a_200_mb_video_streams_without_the_emulator_holding_it(ops: Flow) -> None:
    size = 200 * 1024 * 1024
    ops.emu.outcome_for("big", Outcome.success(video_size=size))
    started, done = await finished(ops, Flow.request("big"))
    name = started["operations"][0]["operation"]["name"]
    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    digest = hashlib.sha256()
    received = 0
    async with ops.http.get(fife_url(done)) as resp:
        assert resp.headers["Content-Length"] == str(size)
        async for chunk in resp.content.iter_chunked(1024 * 1024):
            digest.update(chunk)
            received += len(chunk)
            if received % (16 * 1024 * 1024) < len(chunk):
                peak = max(peak, process.memory_info().rss)
    assert received == size
    assert digest.hexdigest() == ops.emu.video_sha256(name)
    assert peak - baseline < 64 * 1024 * 1024, f"RSS grew {(peak - baseline) >> 20} MiB while streaming"


async def test_media_get_returns_the_video_base64_like_the_capture(ops: Flow) -> None:
    started, done = await finished(ops)
    name = started["operations"][0]["operation"]["name"]
    media_id = done["operations"][0]["mediaGenerationId"]
    status, body, _ = await ops.call("GET", f"/v1/media/{media_id}?clientContext.tool=PINHOLE", headers=ops.bearer)
    assert status == 200
    assert_shape(body, like=[capture("media_get_video_response_2025-10.json")])
    assert base64.b64decode(body["video"]["encodedVideo"]) == ops.emu.video_bytes(name)
    assert body["mediaGenerationId"]["mediaKey"] == ops.emu.generations[name].media_name
    assert isinstance(body["video"]["mediaGenerationId"], str)


async def test_media_get_answers_400_for_media_era_ids_and_404_for_unknown(ops: Flow, media: Flow) -> None:
    _, started = await media.generate()
    await media.poll(started)
    await media.poll(started)
    status, body, _ = await media.call("GET", f"/v1/media/{started['media'][0]['name']}", headers=media.bearer)
    assert (status, body) == (400, capture("error_400_media_get_invalid_argument_2026-08-12.json"))
    status, body, _ = await ops.call("GET", "/v1/media/CAUSJnope", headers=ops.bearer)
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("protocol", ["operations", "media"])
async def test_redirect_sends_a_307_to_the_signed_video(make: Callable[..., Any], protocol: str) -> None:
    flow = await make(protocol=protocol)
    await finished(flow)
    name = next(iter(flow.emu.generations))
    media_name = flow.emu.generations[name].media_name
    url = f"{flow.emu.labs_base}{REDIRECT}?name={media_name}&mediaUrlType=MEDIA_URL_TYPE_FULL_MEDIA"
    status, _, resp = await flow.get(url, headers=flow.cookie(), allow_redirects=False)
    assert status == 307
    assert resp.headers["Location"].startswith(f"{flow.emu.api_base}/fife/{name}.mp4?")
    status, data, resp = await flow.get(url, headers=flow.cookie())
    assert (status, resp.content_type) == (200, "video/mp4")
    assert data == flow.emu.video_bytes(name)


async def test_redirect_for_unknown_media_is_a_trpc_404(ops: Flow) -> None:
    status, body, _ = await ops.call("GET", REDIRECT + "?name=nope", headers=ops.cookie())
    assert status == 404
    assert body["error"]["json"]["data"]["httpStatus"] == 404


# --------------------------------------------------------------------------- faults


CAPTURED_FAULTS = [
    (Fault.unauthorized(), 401, "error_401_unauthenticated_DOC-ASSERTED.json"),
    (Fault.server_error(), 500, "error_500_internal_2026-04-17.json"),
    (Fault.verification(), 403, "error_403_recaptcha_PUBLIC_ERROR_UNUSUAL_ACTIVITY_2026-04-20.json"),
    (
        Fault.verification("something_went_wrong"),
        403,
        "error_403_recaptcha_PUBLIC_ERROR_SOMETHING_WENT_WRONG_2026-02-14.json",
    ),
    (Fault.verification("no_details"), 403, "error_403_recaptcha_no_details_2025-12-18.json"),
    (
        Fault.verification("429_recaptcha"),
        429,
        "error_429_recaptcha_PUBLIC_ERROR_UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC_2026-07-17.json",
    ),
    (Fault.bad_request(), 400, "error_400_invalid_argument_fieldViolations_2026-08-27.json"),
]


@pytest.mark.parametrize(("fault", "code", "sample"), CAPTURED_FAULTS, ids=lambda v: getattr(v, "name", None))
async def test_faults_answer_with_the_captured_bodies(ops: Flow, fault: Fault, code: int, sample: str) -> None:
    ops.emu.inject("generate", fault)
    status, body = await ops.generate()
    assert (status, body) == (code, capture(sample))
    assert ops.emu.generations == {}
    assert ops.emu.calls("generate")[-1].fault == fault.name
    assert (await ops.generate())[0] == 200


@pytest.mark.parametrize(
    ("fault", "code", "reason", "status_name"),
    [
        (Fault.quota(), 429, "PUBLIC_ERROR_USER_QUOTA_REACHED", "RESOURCE_EXHAUSTED"),
        (Fault.model_denied(), 403, "PUBLIC_ERROR_MODEL_ACCESS_DENIED", "PERMISSION_DENIED"),
        (Fault.rate_limited(), 429, "PUBLIC_ERROR_USER_REQUESTS_THROTTLED", "RESOURCE_EXHAUSTED"),
        (Fault.server_error(503), 503, None, "UNAVAILABLE"),
        (Fault.server_error(504), 504, None, "DEADLINE_EXCEEDED"),
    ],
)
async def test_error_faults_use_googles_envelope(
    ops: Flow, fault: Fault, code: int, reason: str | None, status_name: str
) -> None:
    ops.emu.inject("credits", fault)
    status, body, _ = await ops.call("GET", "/v1/credits", headers=ops.bearer)
    assert status == code
    assert_shape(body, like=[], within=[capture("error_403_recaptcha_PUBLIC_ERROR_UNUSUAL_ACTIVITY_2026-04-20.json")])
    assert (body["error"]["code"], body["error"]["status"]) == (code, status_name)
    assert [d["reason"] for d in body["error"].get("details", [])] == ([reason] if reason else [])


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (0.5, "0.5"), (None, None)])
async def test_rate_limited_sends_retry_after(ops: Flow, retry_after: float | None, header: str | None) -> None:
    ops.emu.inject("status", Fault.rate_limited(retry_after))
    status, _, resp = await ops.call("POST", STATUS, body={}, headers=ops.bearer)
    assert status == 429
    assert resp.headers.get("Retry-After") == header


async def test_status_fault_with_custom_body_and_headers(ops: Flow) -> None:
    ops.emu.inject("credits", Fault.status(502, {"oops": True}, {"X-Test": "1"}))
    ops.emu.inject("credits", Fault.status(418))
    status, body, resp = await ops.call("GET", "/v1/credits", headers=ops.bearer)
    assert (status, body, resp.headers["X-Test"]) == (502, {"oops": True}, "1")
    status, body, _ = await ops.call("GET", "/v1/credits", headers=ops.bearer)
    assert (status, body["error"]["code"]) == (418, 418)


@pytest.mark.parametrize("route", ["session", "credits", "project", "generate", "status", "media_get"])
async def test_malformed_and_wrong_shape_faults(ops: Flow, route: str) -> None:
    method, path = {
        "session": ("GET", SESSION),
        "credits": ("GET", "/v1/credits"),
        "project": ("POST", PROJECT),
        "generate": ("POST", GENERATE),
        "status": ("POST", STATUS),
        "media_get": ("GET", "/v1/media/x"),
    }[route]
    headers = {**ops.bearer, **ops.cookie()}
    ops.emu.inject(route, Fault.malformed())
    ops.emu.inject(route, Fault.wrong_shape())
    async with ops.http.request(method, ops.emu.api_base + path, headers=headers) as resp:
        assert (resp.status, resp.content_type) == (200, "application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(await resp.text())
    status, body, _ = await ops.call(method, path, headers=headers)
    assert status == 200
    # Valid JSON, but the key a reader needs holds the wrong type.
    key, expected_type = {
        "session": ("access_token", str),
        "credits": ("credits", int),
        "project": ("result", dict),
        "generate": ("operations", list),
        "status": ("operations", list),
        "media_get": ("video", dict),
    }[route]
    assert key in body
    assert not isinstance(body[key], expected_type)


async def test_wrong_shape_in_media_protocol_and_with_a_given_body(media: Flow) -> None:
    media.emu.inject("status", Fault.wrong_shape())
    media.emu.inject("status", Fault.wrong_shape({"media": [{"name": 5}]}))
    assert (await media.call("POST", STATUS, body={}, headers=media.bearer))[1] == {"media": "nope"}
    assert (await media.call("POST", STATUS, body={}, headers=media.bearer))[1] == {"media": [{"name": 5}]}


@pytest.mark.parametrize("route", ["fife", "redirect", "media_get", "session"])
async def test_html_fault_serves_a_sign_in_page(ops: Flow, route: str) -> None:
    _, done = await finished(ops)
    name = next(iter(ops.emu.generations))
    url = {
        "fife": fife_url(done),
        "redirect": f"{ops.emu.labs_base}{REDIRECT}?name={name}",
        "media_get": f"{ops.emu.api_base}/v1/media/{name}",
        "session": ops.emu.labs_base + SESSION,
    }[route]
    ops.emu.inject(route, Fault.html())
    status, data, resp = await ops.get(url, headers={**ops.bearer, **ops.cookie()})
    assert (status, resp.content_type) == (200, "text/html")
    assert b"Sign in" in data
    assert (await ops.get(url, headers={**ops.bearer, **ops.cookie()}))[2].content_type != "text/html"


async def test_one_shot_session_faults(ops: Flow) -> None:
    ops.emu.inject("session", Fault.refresh_needed())
    ops.emu.inject("session", Fault.empty_session())
    bodies = [(await ops.call("GET", SESSION, headers=ops.cookie()))[1] for _ in range(3)]
    assert bodies[0]["error"] == "ACCESS_TOKEN_REFRESH_NEEDED"
    assert bodies[1] == {}
    assert bodies[2]["access_token"]
    assert [r.fault for r in ops.emu.calls("session")] == ["refresh_needed", "empty_session", None]


async def test_fault_times_and_clear_faults(ops: Flow) -> None:
    ops.emu.inject("credits", Fault.server_error(), times=2)
    ops.emu.inject("credits", Fault.quota())
    codes = [(await ops.call("GET", "/v1/credits", headers=ops.bearer))[0] for _ in range(4)]
    assert codes == [500, 500, 429, 200]
    ops.emu.inject("credits", Fault.unauthorized(), times=None)
    codes = [(await ops.call("GET", "/v1/credits", headers=ops.bearer))[0] for _ in range(3)]
    assert codes == [401, 401, 401]
    ops.emu.clear_faults()
    assert (await ops.call("GET", "/v1/credits", headers=ops.bearer))[0] == 200
    assert [r.fault for r in ops.emu.calls("credits")] == [
        "server_error:500",
        "server_error:500",
        "quota",
        None,
        "unauthorized",
        "unauthorized",
        "unauthorized",
        None,
    ]


def test_inject_rejects_unknown_routes_and_misplaced_faults() -> None:
    emu = FlowEmulator()
    with pytest.raises(ValueError, match="unknown route"):
        emu.inject("generat", Fault.quota())
    with pytest.raises(ValueError, match="fife"):
        emu.inject("credits", Fault.truncated())
    with pytest.raises(ValueError, match="times"):
        emu.inject("credits", Fault.quota(), times=0)


async def test_hang_holds_the_request_until_released(ops: Flow) -> None:
    ops.emu.inject("generate", Fault.hang())
    pid = await ops.project()
    body = {"clientContext": {"projectId": pid, "tool": "PINHOLE"}, "requests": [Flow.request()]}
    task = asyncio.create_task(ops.call("POST", GENERATE, body=body, headers=ops.bearer))
    await ops.emu.wait_for_calls("generate")
    assert ops.emu.hung_count == 1
    assert not task.done()
    assert ops.emu.generations == {}
    ops.emu.release_hung()
    status, _, _ = await task
    assert status == 200
    assert len(ops.emu.generations) == 1  # released: Flow accepted it after all
    assert ops.emu.hung_count == 0


async def test_close_drops_hung_and_slow_requests(make: Callable[..., Any]) -> None:
    flow = await make()
    flow.emu.inject("credits", Fault.hang())
    flow.emu.inject("session", Fault.slow(3600))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        hung = asyncio.create_task(http.get(flow.emu.api_base + "/v1/credits", headers=flow.bearer))
        slow = asyncio.create_task(http.get(flow.emu.labs_base + SESSION, headers=flow.cookie()))
        await flow.emu.wait_for_calls("credits")
        await flow.emu.wait_for_calls("session")
        await flow.emu.close()
        for task in (hung, slow):
            with pytest.raises(aiohttp.ClientConnectionError):
                await task


async def test_slow_answers_normally(ops: Flow) -> None:
    ops.emu.inject("credits", Fault.slow(0.01))
    status, body, _ = await ops.call("GET", "/v1/credits", headers=ops.bearer)
    assert (status, body["credits"]) == (200, 1000)
    assert ops.emu.calls("credits")[0].fault == "slow"


async def test_disconnect_closes_without_an_answer_and_has_no_effect(ops: Flow) -> None:
    pid = await ops.project()
    ops.emu.inject("generate", Fault.disconnect())
    body = {"clientContext": {"projectId": pid, "tool": "PINHOLE"}, "requests": [Flow.request()]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.post(ops.emu.api_base + GENERATE, data=json.dumps(body), headers=ops.bearer)
    assert ops.emu.generations == {}
    assert ops.emu.credits == 1000
    assert ops.emu.calls("generate")[0].fault == "disconnect"


async def test_truncated_fife_download_fails_mid_body(ops: Flow) -> None:
    _, done = await finished(ops)
    ops.emu.inject("fife", Fault.truncated(1000))
    async with ops.http.get(fife_url(done)) as resp:
        assert resp.headers["Content-Length"] == str(64 * 1024)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


# --------------------------------------------------------------------------- recording and video bytes


async def test_requests_are_recorded_with_route_headers_query_and_body(make: Callable[..., Any]) -> None:
    clock = Clock(5.0)
    flow = await make(clock=clock)
    await flow.generate()
    await flow.call("GET", "/v1/credits?key=abc", headers={"X-Browser-Channel": "stable", **flow.bearer})
    await flow.call("GET", "/nowhere")
    routes = [r.route for r in flow.emu.requests]
    assert routes == ["project", "generate", "credits", "unknown"]
    gen: RecordedRequest = flow.emu.calls("generate")[0]
    assert gen.method == "POST"
    assert gen.path == GENERATE
    assert gen.json["requests"][0]["seed"] == 1234
    assert json.loads(gen.text) == gen.json
    assert gen.headers["authorization"] == f"Bearer {flow.token}"
    assert gen.at == 5.0
    credits = flow.emu.calls("credits")[0]
    assert credits.query == {"key": "abc"}
    assert credits.headers["x-browser-channel"] == "stable"
    assert credits.json is None


def test_video_bytes_are_deterministic_mp4_looking_and_exactly_sized() -> None:
    a = VideoSource("abc", 300_001).read_all()
    assert len(a) == 300_001
    assert a == VideoSource("abc", 300_001).read_all()
    assert a != VideoSource("abd", 300_001).read_all()
    assert a[4:12] == b"ftypisom"
    assert a[36:40] == b"mdat"
    assert int.from_bytes(a[32:36], "big") == 300_001 - 32
    assert len(VideoSource("x", 10).read_all()) == 10
    assert b"".join(VideoSource("x", 1_000_000).chunks(4096)) == VideoSource("x", 1_000_000).read_all()
    huge = next(iter(VideoSource("h", 2**32 + 100).chunks()))
    assert huge[36:40] == b"mdat"
    assert int.from_bytes(huge[32:36], "big") == 1
    assert int.from_bytes(huge[40:48], "big") == 2**32 + 100 - 32


async def test_async_context_manager_serves_and_closes() -> None:
    async with FlowEmulator() as emu, aiohttp.ClientSession() as http:
        token = emu.issue_token()
        async with http.get(emu.api_base + "/v1/credits", headers={"authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(emu.api_base + "/v1/credits"):
            pass
