"""FlowClient over real loopback HTTP against the Flow emulator: errors, retries, batching, downloads."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from bot.backends.flow.client import FlowClient
from bot.backends.flow.credentials import Credentials
from bot.backends.flow.errors import (
    AuthExpired,
    BadRequest,
    BadResponse,
    CookiesExpired,
    FlowError,
    MediaExpired,
    ModelNotAllowed,
    NotAVideo,
    QuotaExhausted,
    RateLimited,
    UpstreamUnavailable,
    VerificationRequired,
)
from bot.backends.flow.keys import ASPECT_RATIOS, check_overrides, model_key
from bot.backends.flow.models import GenerationSpec, GenerationState, PollRef, PollResult, Submitted
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome

TIMEOUT = aiohttp.ClientTimeout(total=5, sock_read=2)
SHORT_TIMEOUT = aiohttp.ClientTimeout(total=0.4)


class SleepRecorder:
    """Injected sleep: records what the client asked for and returns at once (never wall time)."""

    def __init__(self, hook: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.calls: list[float] = []
        self.hook = hook

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.hook is not None:
            await self.hook(seconds)


@dataclass
class Env:
    emu: FlowEmulator
    creds: Credentials
    client: FlowClient
    sleeps: SleepRecorder
    project: str
    tmp: Path
    errors: list[BaseException] = field(default_factory=list)


Factory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[Factory]:
    emulators: list[FlowEmulator] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(
        protocol: str = "operations",
        *,
        timeout: aiohttp.ClientTimeout = TIMEOUT,
        emu_kwargs: dict[str, Any] | None = None,
        rand: Callable[[], float] = lambda: 0.5,
        sleep_hook: Callable[[float], Awaitable[None]] | None = None,
        api_base: str | None = None,
        http: aiohttp.ClientSession | None = None,
        **client_kwargs: Any,
    ) -> Env:
        emu = FlowEmulator(protocol=protocol, **(emu_kwargs or {}))  # type: ignore[arg-type]
        await emu.start()
        emulators.append(emu)
        if http is None:
            http = aiohttp.ClientSession(timeout=timeout)
        sessions.append(http)
        cookie_file = tmp_path / f"cookie-{len(emulators)}.json"
        emu.write_cookie_file(cookie_file)
        creds = Credentials(cookie_file, http, labs_base=emu.labs_base)
        await creds.load()
        sleeps = SleepRecorder(sleep_hook)
        client = FlowClient(
            http,
            creds,
            api_base=api_base or emu.api_base,
            labs_base=emu.labs_base,
            sleep=sleeps,
            rand=rand,
            **client_kwargs,
        )
        media = tmp_path / f"media-{len(emulators)}"
        media.mkdir()
        return Env(emu, creds, client, sleeps, emu.add_project(), media)

    yield factory
    for s in sessions:
        await s.close()
    for e in emulators:
        await e.close()


def spec(prompt: str = "a calm lake at dawn", scene: str = "scene-1", **kw: Any) -> GenerationSpec:
    values: dict[str, Any] = {"aspect": "landscape", "model": "fast", "seed": 1234}
    values.update(kw)
    return GenerationSpec(prompt=prompt, scene_id=scene, **values)


async def poll_until_done(env: Env, submitted: list[Submitted], limit: int = 10) -> list[PollResult]:
    refs = [s.poll_ref() for s in submitted]
    for _ in range(limit):
        results = await env.client.check_status(refs)
        if results and all(r.state is not GenerationState.RUNNING for r in results):
            return results
    raise AssertionError("generations did not finish")


# -- the happy paths, both protocol eras ------------------------------------------------------------------------


async def test_credits_reads_balance_and_caches_tier(make_env: Factory) -> None:
    env = await make_env(emu_kwargs={"credits": 777, "tier": "PAYGATE_TIER_TWO"})
    credits = await env.client.credits()
    assert (credits.credits, credits.tier) == (777, "PAYGATE_TIER_TWO")
    assert await env.client.tier() == "PAYGATE_TIER_TWO"
    assert len(env.emu.calls("credits")) == 1


async def test_generate_sends_one_element_per_spec_in_one_call_with_browser_headers(make_env: Factory) -> None:
    env = await make_env()
    specs = [spec("a", "s-1"), spec("b", "s-2", aspect="portrait"), spec("c", "s-3", model="quality")]
    submitted = await env.client.generate(env.project, specs)
    [call] = env.emu.calls("generate")
    body = call.json
    assert [r["metadata"]["sceneId"] for r in body["requests"]] == ["s-1", "s-2", "s-3"]
    assert [r["videoModelKey"] for r in body["requests"]] == [
        "veo_3_1_t2v_fast",
        "veo_3_1_t2v_fast_portrait",
        "veo_3_1_t2v",
    ]
    assert body["clientContext"]["projectId"] == env.project
    assert body["clientContext"]["tool"] == "PINHOLE"
    assert body["clientContext"]["userPaygateTier"] == "PAYGATE_TIER_ONE"
    assert body["clientContext"]["sessionId"].startswith(";")
    assert "recaptcha" not in call.text.lower()
    headers = call.headers
    assert headers["authorization"].startswith("Bearer ya29.")
    assert headers["content-type"] == "text/plain;charset=UTF-8"
    assert headers["accept"] == "*/*"
    assert headers["origin"] == env.emu.labs_base
    assert headers["referer"] == env.emu.labs_base + "/"
    assert not [h for h in headers if h.startswith(("x-browser", "x-client-data"))]
    assert [s.scene_id for s in submitted] == ["s-1", "s-2", "s-3"]
    assert all(s.protocol == "operations" and s.operation_name in env.emu.generations for s in submitted)


async def test_ultra_tier_uses_ultra_keys_and_overrides_win(make_env: Factory) -> None:
    env = await make_env(
        emu_kwargs={"tier": "PAYGATE_TIER_TWO"},
        model_key_overrides={"quality.portrait": "veo_3_1_t2v_portrait_ultra_relaxed"},
    )
    await env.client.generate(env.project, [spec(scene="a"), spec(scene="b", model="quality", aspect="portrait")])
    keys = [r["videoModelKey"] for r in env.emu.calls("generate")[0].json["requests"]]
    assert keys == ["veo_3_1_t2v_fast_ultra", "veo_3_1_t2v_portrait_ultra_relaxed"]


async def test_operations_era_generate_poll_download(make_env: Factory) -> None:
    env = await make_env(emu_kwargs={"video_size": 300 * 1024})
    [sub] = await env.client.generate(env.project, [spec()])
    first = await env.client.check_status([sub.poll_ref()])
    assert [r.state for r in first] == [GenerationState.RUNNING]
    [done] = await poll_until_done(env, [sub])
    assert done.state is GenerationState.SUCCEEDED
    assert done.fife_url is not None
    assert done.remaining_credits == env.emu.credits
    dest = env.tmp / "out.mp4"
    written = await env.client.download(done, dest, chunk_size=64 * 1024)
    assert written == 300 * 1024
    assert dest.read_bytes() == env.emu.video_bytes(sub.operation_name)
    assert sorted(p.name for p in env.tmp.iterdir()) == ["out.mp4"]  # no temp file left
    [fife] = env.emu.calls("fife")
    assert "authorization" not in fife.headers
    assert "cookie" not in fife.headers


async def test_media_era_generate_poll_download_through_redirect(make_env: Factory) -> None:
    env = await make_env("media")
    [sub] = await env.client.generate(env.project, [spec()])
    assert sub.protocol == "media"
    assert sub.media_name == sub.operation_name
    assert sub.project_id == env.project
    [done] = await poll_until_done(env, [sub])
    assert env.emu.calls("status")[0].json == {"media": [{"name": sub.media_name, "projectId": env.project}]}
    assert done.state is GenerationState.SUCCEEDED
    assert done.fife_url is None
    assert done.media_name == sub.media_name
    dest = env.tmp / "media.mp4"
    await env.client.download(done, dest)
    assert dest.read_bytes() == env.emu.video_bytes(sub.operation_name)
    [redirect] = env.emu.calls("redirect")
    assert "cookie" in redirect.headers
    assert "authorization" not in redirect.headers
    # The signed URL the redirect points at gets no cookies.
    [fife] = env.emu.calls("fife")
    assert "cookie" not in fife.headers
    assert env.emu.calls("media_get") == []


async def test_expired_fife_url_falls_back_to_media_get(make_env: Factory) -> None:
    env = await make_env()
    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    env.emu.expire_fife_urls()
    dest = env.tmp / "v.mp4"
    await env.client.download(done, dest)
    assert dest.read_bytes() == env.emu.video_bytes(sub.operation_name)
    assert len(env.emu.calls("media_get")) == 1
    assert env.sleeps.calls == []  # an expired URL is not retried


async def test_download_without_url_uses_media_get(make_env: Factory) -> None:
    env = await make_env()
    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    dest = env.tmp / "v.mp4"
    await env.client.download(done.model_copy(update={"fife_url": None}), dest)
    assert dest.read_bytes() == env.emu.video_bytes(sub.operation_name)
    assert env.emu.calls("fife") == []


async def test_truncated_download_is_retried_whole(make_env: Factory) -> None:
    env = await make_env(emu_kwargs={"video_size": 200 * 1024})
    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    env.emu.inject("fife", Fault.truncated())
    dest = env.tmp / "v.mp4"
    await env.client.download(done, dest)
    assert dest.read_bytes() == env.emu.video_bytes(sub.operation_name)
    assert len(env.emu.calls("fife")) == 2
    assert len(env.sleeps.calls) == 1
    assert sorted(p.name for p in env.tmp.iterdir()) == ["v.mp4"]


@pytest.mark.parametrize("fault", [Fault.html(), Fault.wrong_shape()], ids=["html", "json"])
async def test_not_a_video_raises_and_leaves_no_file(make_env: Factory, fault: Fault) -> None:
    env = await make_env()
    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    env.emu.inject("fife", fault)
    with pytest.raises(NotAVideo):
        await env.client.download(done, env.tmp / "v.mp4")
    assert list(env.tmp.iterdir()) == []


async def test_media_era_dead_session_redirects_to_sign_in_which_is_not_a_video(make_env: Factory) -> None:
    env = await make_env("media")
    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    env.emu.kill_session()
    with pytest.raises(NotAVideo):
        await env.client.download(done, env.tmp / "v.mp4")
    assert list(env.tmp.iterdir()) == []
    assert env.emu.calls("signin")[0].headers.get("cookie") is None


# -- failures reported by status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "reason", "category"),
    [
        (Outcome.failed("PUBLIC_ERROR_DANGER_FILTER"), "PUBLIC_ERROR_DANGER_FILTER", "content_filter"),
        (Outcome.failed("PUBLIC_ERROR_AUDIO_FILTERED"), "PUBLIC_ERROR_AUDIO_FILTERED", "content_filter"),
        (
            Outcome.failed("PUBLIC_ERROR_PROMINENT_PEOPLE_FILTER_FAILED"),
            "PUBLIC_ERROR_PROMINENT_PEOPLE_FILTER_FAILED",
            "content_filter",
        ),
        (Outcome.failed("PUBLIC_ERROR_UNSAFE_GENERATION"), "PUBLIC_ERROR_UNSAFE_GENERATION", "content_filter"),
        (Outcome.failed("PUBLIC_ERROR_SEXUAL"), "PUBLIC_ERROR_SEXUAL", "content_filter"),
        (Outcome.failed("PUBLIC_ERROR_MINOR"), "PUBLIC_ERROR_MINOR", "content_filter"),
        (Outcome.failed("PUBLIC_ERROR_HIGH_TRAFFIC"), "PUBLIC_ERROR_HIGH_TRAFFIC", "transient"),
        (
            Outcome.failed("PUBLIC_ERROR_VIDEO_GENERATION_TIMED_OUT"),
            "PUBLIC_ERROR_VIDEO_GENERATION_TIMED_OUT",
            "transient",
        ),
        (Outcome.internal(), "INTERNAL", "internal"),
    ],
)
async def test_failed_generation_reports_reason_and_category(
    make_env: Factory, outcome: Outcome, reason: str, category: str
) -> None:
    env = await make_env()
    env.emu.outcome_for("storm", outcome)
    [sub] = await env.client.generate(env.project, [spec("a storm")])
    [done] = await poll_until_done(env, [sub])
    assert done.state is GenerationState.FAILED
    assert (done.failure_reason, done.failure_category) == (reason, category)


async def test_media_era_failure_reads_media_status(make_env: Factory) -> None:
    env = await make_env("media")
    env.emu.outcome_for("logo", Outcome.media_failed())
    [sub] = await env.client.generate(env.project, [spec("a famous logo")])
    [done] = await poll_until_done(env, [sub])
    assert done.state is GenerationState.FAILED
    assert done.failure_reason == "PUBLIC_ERROR_IP_INPUT_IMAGE"
    assert done.failure_category == "content_filter"


async def test_stuck_generation_stays_running(make_env: Factory) -> None:
    env = await make_env()
    env.emu.outcome_for("forever", Outcome.stuck())
    [sub] = await env.client.generate(env.project, [spec("forever")])
    for _ in range(4):
        [r] = await env.client.check_status([sub.poll_ref()])
        assert r.state is GenerationState.RUNNING
    assert r.raw_status == "MEDIA_GENERATION_STATUS_ACTIVE"


# -- batching ---------------------------------------------------------------------------------------------------


async def test_120_operations_with_batch_50_take_exactly_3_status_calls(make_env: Factory) -> None:
    env = await make_env(emu_kwargs={"credits": 10**6})
    specs = [spec(f"prompt {i}", f"scene-{i}") for i in range(120)]
    submitted = await env.client.generate(env.project, specs)
    refs = [s.poll_ref() for s in submitted]
    results = await env.client.check_status(refs)
    calls = env.emu.calls("status")
    assert len(calls) == 3
    assert [len(c.json["operations"]) for c in calls] == [50, 50, 20]
    assert [r.operation_name for r in results] == [s.operation_name for s in submitted]


async def test_status_batch_size_is_configurable(make_env: Factory) -> None:
    env = await make_env(status_batch_size=2)
    submitted = await env.client.generate(env.project, [spec(scene=f"s{i}") for i in range(5)])
    await env.client.check_status([s.poll_ref() for s in submitted])
    assert [len(c.json["operations"]) for c in env.emu.calls("status")] == [2, 2, 1]


# -- error classes from emulator faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fault", "error"),
    [
        ("generate", Fault.verification("unusual_activity"), VerificationRequired),
        ("generate", Fault.verification("something_went_wrong"), VerificationRequired),
        ("generate", Fault.verification("no_details"), VerificationRequired),
        ("generate", Fault.verification("429_recaptcha"), VerificationRequired),
        ("generate", Fault.quota(), QuotaExhausted),
        ("generate", Fault.model_denied(), ModelNotAllowed),
        ("generate", Fault.bad_request(), BadRequest),
        ("generate", Fault.malformed(), BadResponse),
        ("generate", Fault.wrong_shape(), BadResponse),
        ("status", Fault.wrong_shape(), BadResponse),
        ("status", Fault.html(), BadResponse),
        ("credits", Fault.wrong_shape(), BadResponse),
        ("project", Fault.wrong_shape(), BadResponse),
    ],
    ids=lambda v: v.name if isinstance(v, Fault) else v.__name__ if isinstance(v, type) else v,
)
async def test_fault_maps_to_error_class_without_retry(
    make_env: Factory, route: str, fault: Fault, error: type[FlowError]
) -> None:
    env = await make_env()
    await env.client.credits()
    [sub] = await env.client.generate(env.project, [spec(scene="warm-up")]) if route == "status" else [None]
    env.emu.inject(route, fault)
    before = len(env.emu.calls(route))
    actions: dict[str, Callable[[], Awaitable[Any]]] = {
        "generate": lambda: env.client.generate(env.project, [spec()]),
        "status": lambda: env.client.check_status([sub.poll_ref()] if sub else []),
        "credits": env.client.credits,
        "project": env.client.create_project,
    }
    with pytest.raises(error) as info:
        await actions[route]()
    assert type(info.value) is error
    assert len(env.emu.calls(route)) == before + 1
    assert env.sleeps.calls == []
    assert info.value.__cause__ is not None  # raised from its cause
    if isinstance(info.value, BadResponse):
        assert info.value.field_path
        assert "nope" not in str(info.value)  # the field path, never the body


async def test_wrong_shape_names_the_offending_field(make_env: Factory) -> None:
    env = await make_env()
    env.emu.inject("credits", Fault.wrong_shape({"credits": 5, "userPaygateTier": 2}))
    with pytest.raises(BadResponse) as info:
        await env.client.credits()
    assert info.value.field_path == "userPaygateTier"


async def test_401_refreshes_exactly_once_and_retries_once(make_env: Factory) -> None:
    env = await make_env()
    await env.client.credits()
    sessions_before = len(env.emu.calls("session"))
    env.emu.expire_tokens()
    credits = await env.client.credits()
    assert credits.credits == 1000
    assert len(env.emu.calls("session")) == sessions_before + 1
    first, second = env.emu.calls("credits")[-2:]
    assert first.headers["authorization"] != second.headers["authorization"]
    assert env.sleeps.calls == []


async def test_401_after_refresh_is_auth_expired(make_env: Factory) -> None:
    env = await make_env()
    await env.client.credits()
    sessions_before = len(env.emu.calls("session"))
    calls_before = len(env.emu.calls("credits"))
    env.emu.inject("credits", Fault.unauthorized(), times=2)
    with pytest.raises(AuthExpired):
        await env.client.credits()
    assert len(env.emu.calls("session")) == sessions_before + 1
    assert len(env.emu.calls("credits")) == calls_before + 2


async def test_generate_is_resent_once_after_401(make_env: Factory) -> None:
    env = await make_env()
    await env.client.credits()
    env.emu.expire_tokens()
    [sub] = await env.client.generate(env.project, [spec()])
    assert len(env.emu.calls("generate")) == 2
    assert list(env.emu.generations) == [sub.operation_name]  # charged once


async def test_dead_cookies_on_project_create_are_cookies_expired(make_env: Factory) -> None:
    env = await make_env()
    env.emu.kill_session()
    with pytest.raises(CookiesExpired):
        await env.client.create_project()
    assert len(env.emu.calls("project")) == 1


async def test_create_project_uses_cookies_not_bearer(make_env: Factory) -> None:
    env = await make_env()
    project = await env.client.create_project("My title")
    assert project in env.emu.projects
    [call] = env.emu.calls("project")
    assert call.json == {"json": {"projectTitle": "My title", "toolName": "PINHOLE"}}
    assert "authorization" not in call.headers
    assert call.headers["cookie"]


# -- retries ----------------------------------------------------------------------------------------------------


async def test_retry_after_is_honoured_through_the_injected_sleep(make_env: Factory) -> None:
    env = await make_env()
    env.emu.inject("credits", Fault.rate_limited(7))
    assert (await env.client.credits()).credits == 1000
    assert env.sleeps.calls == [7.0]
    assert len(env.emu.calls("credits")) == 2


async def test_retry_after_is_capped(make_env: Factory) -> None:
    env = await make_env(max_retry_after=12.0)
    env.emu.inject("credits", Fault.rate_limited(3600))
    await env.client.credits()
    assert env.sleeps.calls == [12.0]


async def test_persistent_429_gives_up_with_rate_limited(make_env: Factory) -> None:
    env = await make_env(max_attempts=3, max_retry_after=5.0)
    env.emu.inject("credits", Fault.rate_limited(9), times=None)
    with pytest.raises(RateLimited) as info:
        await env.client.credits()
    assert info.value.retry_after == 5.0
    assert env.sleeps.calls == [5.0, 5.0]
    assert len(env.emu.calls("credits")) == 3


async def test_status_5xx_backs_off_with_bounded_full_jitter(make_env: Factory) -> None:
    rng = random.Random(42)
    draws: list[float] = []

    def rand() -> float:
        draws.append(rng.random())
        return draws[-1]

    env = await make_env(rand=rand, backoff_base=0.5, backoff_cap=30.0)
    [sub] = await env.client.generate(env.project, [spec()])
    env.emu.inject("status", Fault.server_error(503), times=3)
    [r] = await env.client.check_status([sub.poll_ref()])
    assert r.state is GenerationState.RUNNING
    assert len(env.emu.calls("status")) == 4
    assert env.sleeps.calls == pytest.approx([draws[0] * 0.5, draws[1] * 1.0, draws[2] * 2.0])
    assert all(0 <= d <= 0.5 * 2**i for i, d in enumerate(env.sleeps.calls))


async def test_backoff_is_capped_and_gives_up_after_max_attempts(make_env: Factory) -> None:
    env = await make_env(rand=lambda: 1.0, backoff_base=0.5, backoff_cap=1.5, max_attempts=5)
    env.emu.inject("credits", Fault.server_error(500), times=None)
    with pytest.raises(UpstreamUnavailable):
        await env.client.credits()
    assert env.sleeps.calls == [0.5, 1.0, 1.5, 1.5]
    assert len(env.emu.calls("credits")) == 5


@pytest.mark.parametrize("fault", [Fault.server_error(500), Fault.server_error(503), Fault.disconnect()])
async def test_generate_is_not_resent_after_5xx_or_disconnect(make_env: Factory, fault: Fault) -> None:
    env = await make_env()
    await env.client.credits()
    env.emu.inject("generate", fault)
    with pytest.raises(UpstreamUnavailable) as info:
        await env.client.generate(env.project, [spec()])
    assert info.value.maybe_accepted is True
    assert len(env.emu.calls("generate")) == 1
    assert env.sleeps.calls == []


async def test_generate_is_not_resent_after_a_timeout(make_env: Factory) -> None:
    env = await make_env(timeout=SHORT_TIMEOUT)
    await env.client.credits()
    env.emu.inject("generate", Fault.hang())
    with pytest.raises(UpstreamUnavailable) as info:
        await env.client.generate(env.project, [spec()])
    assert info.value.maybe_accepted is True
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)
    assert len(env.emu.calls("generate")) == 1
    assert env.sleeps.calls == []
    env.emu.release_hung()


async def test_generate_is_resent_after_429(make_env: Factory) -> None:
    env = await make_env()
    await env.client.credits()
    env.emu.inject("generate", Fault.rate_limited(2))
    [sub] = await env.client.generate(env.project, [spec()])
    assert len(env.emu.calls("generate")) == 2
    assert env.sleeps.calls == [2.0]
    assert list(env.emu.generations) == [sub.operation_name]


async def test_create_project_is_not_resent_after_5xx(make_env: Factory) -> None:
    env = await make_env()
    env.emu.inject("project", Fault.server_error(502))
    with pytest.raises(UpstreamUnavailable) as info:
        await env.client.create_project()
    assert info.value.maybe_accepted is True
    assert len(env.emu.calls("project")) == 1


async def test_hung_response_times_out_as_upstream_unavailable(make_env: Factory) -> None:
    env = await make_env(timeout=SHORT_TIMEOUT, max_attempts=2)
    env.emu.inject("credits", Fault.hang(), times=None)
    with pytest.raises(UpstreamUnavailable):
        await env.client.credits()
    assert len(env.emu.calls("credits")) == 2  # a safe call: retried once, then given up
    assert len(env.sleeps.calls) == 1
    env.emu.clear_faults()
    env.emu.release_hung()


class Proxy:
    """A loopback reverse proxy on a fixed port that can be switched off, so connections are refused."""

    def __init__(self, target: str, port: int) -> None:
        self.target = target
        self.port = port
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self.http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self.http.request(
            request.method, self.target + request.path_qs, headers=headers, data=await request.read()
        ) as resp:
            body = await resp.read()
            keep = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "retry-after")}
            return web.Response(status=resp.status, body=body, headers=keep)

    async def start(self) -> None:
        self.http = self.http or aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def close(self) -> None:
        await self.stop()
        if self.http is not None:
            await self.http.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_generate_is_resent_after_connection_refused(make_env: Factory) -> None:
    port = free_port()
    proxy: Proxy | None = None

    async def restart_proxy(_: float) -> None:
        assert proxy is not None
        await proxy.start()

    http = aiohttp.ClientSession(timeout=TIMEOUT, connector=aiohttp.TCPConnector(force_close=True))
    env = await make_env(api_base=f"http://127.0.0.1:{port}", sleep_hook=restart_proxy, http=http)
    proxy = Proxy(env.emu.api_base, port)
    try:
        await proxy.start()
        await env.client.credits()  # tier cached through the proxy
        await proxy.stop()  # now nothing listens: the next connect is refused
        [sub] = await env.client.generate(env.project, [spec()])
        assert len(env.sleeps.calls) == 1  # one refused attempt, then the retry got through
        assert len(env.emu.calls("generate")) == 1
        assert list(env.emu.generations) == [sub.operation_name]
    finally:
        await proxy.close()


# -- secrets ----------------------------------------------------------------------------------------------------


def _chain(err: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


async def test_no_secret_in_exceptions_or_logs(make_env: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = await make_env("media", max_attempts=2)
    texts: list[str] = []

    async def expect(error: type[FlowError], action: Awaitable[Any]) -> None:
        with pytest.raises(error) as info:
            await action
        texts.extend(_chain(info.value))

    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    env.emu.inject("credits", Fault.unauthorized(), times=2)
    await expect(AuthExpired, env.client.credits())
    env.emu.inject("credits", Fault.rate_limited(1), times=None)
    await expect(RateLimited, env.client.credits())
    env.emu.clear_faults()
    env.emu.inject("generate", Fault.verification("no_details"))
    await expect(VerificationRequired, env.client.generate(env.project, [spec(scene="x")]))
    env.emu.inject("status", Fault.server_error(500), times=None)
    await expect(UpstreamUnavailable, env.client.check_status([sub.poll_ref()]))
    env.emu.clear_faults()
    env.emu.inject("fife", Fault.html())
    await expect(NotAVideo, env.client.download(done, env.tmp / "v.mp4"))
    # An expired signed URL with no other route: the error must not quote the URL.
    used = env.emu.calls("fife")[-1]
    env.emu.expire_fife_urls()
    expired = PollResult(
        operation_name="x",
        state=GenerationState.SUCCEEDED,
        raw_status="MEDIA_GENERATION_STATUS_SUCCESSFUL",
        fife_url=f"{env.emu.api_base}{used.path}?{urlencode(used.query)}",
    )
    await expect(MediaExpired, env.client.download(expired, env.tmp / "w.mp4"))
    env.emu.kill_session()
    await expect(CookiesExpired, env.client.create_project())

    secrets_ = [s for s in env.creds.secret_values() if len(s) >= 8]
    secrets_ += [env.emu.session_cookie]
    secrets_ += [c.headers["authorization"].split(" ", 1)[1] for c in env.emu.requests if "authorization" in c.headers]
    signatures = [c.query["Signature"] for c in env.emu.calls("fife") if "Signature" in c.query]
    assert secrets_
    assert signatures
    haystack = "\n".join(texts) + "\n" + caplog.text
    for secret in {*secrets_, *signatures}:
        assert secret not in haystack
    assert "Signature=" not in haystack


async def test_poll_ref_round_trips_through_json() -> None:
    ref = PollRef(operation_name="op", scene_id="s", media_name="m", project_id="p", protocol="media")
    assert PollRef.model_validate_json(ref.model_dump_json()) == ref


async def test_download_timeout_overrides_a_short_session_timeout(make_env: Factory) -> None:
    env = await make_env(timeout=SHORT_TIMEOUT, download_timeout=aiohttp.ClientTimeout(total=10))
    [sub] = await env.client.generate(env.project, [spec()])
    [done] = await poll_until_done(env, [sub])
    env.emu.inject("fife", Fault.slow(0.6))  # longer than the session's 0.4 s total
    await env.client.download(done, env.tmp / "v.mp4")
    assert (env.tmp / "v.mp4").read_bytes() == env.emu.video_bytes(sub.operation_name)
    assert env.sleeps.calls == []


# -- the model-key table (pure) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "aspect", "tier", "key"),
    [
        ("fast", "landscape", "PAYGATE_TIER_ONE", "veo_3_1_t2v_fast"),
        ("fast", "portrait", "PAYGATE_TIER_NOT_PAID", "veo_3_1_t2v_fast_portrait"),
        ("quality", "landscape", "PAYGATE_TIER_ONE", "veo_3_1_t2v"),
        ("quality", "portrait", "PAYGATE_TIER_ONE", "veo_3_1_t2v_portrait"),
        ("fast", "landscape", "PAYGATE_TIER_TWO", "veo_3_1_t2v_fast_ultra"),
        ("quality", "portrait", "PAYGATE_TIER_TWO", "veo_3_1_t2v_portrait_ultra"),
    ],
)
def test_model_key_table(model: Any, aspect: Any, tier: str, key: str) -> None:
    assert model_key(model, aspect, tier) == key


def test_model_key_overrides_tier_specific_first() -> None:
    overrides = {"fast.landscape": "veo_4_fast", "fast.landscape.PAYGATE_TIER_TWO": "veo_4_fast_ultra"}
    assert model_key("fast", "landscape", "PAYGATE_TIER_ONE", overrides) == "veo_4_fast"
    assert model_key("fast", "landscape", "PAYGATE_TIER_TWO", overrides) == "veo_4_fast_ultra"
    assert model_key("fast", "portrait", "PAYGATE_TIER_ONE", overrides) == "veo_3_1_t2v_fast_portrait"
    assert ASPECT_RATIOS == {"landscape": "VIDEO_ASPECT_RATIO_LANDSCAPE", "portrait": "VIDEO_ASPECT_RATIO_PORTRAIT"}


def test_unknown_override_name_is_rejected() -> None:
    check_overrides({"quality.portrait": "x", "fast.landscape.PAYGATE_TIER_TWO": "y"})
    with pytest.raises(ValueError, match=r"fast\.square"):
        check_overrides({"fast.square": "veo"})
    with pytest.raises(ValueError, match="unknown model"):
        model_key("turbo", "landscape", "PAYGATE_TIER_ONE")  # type: ignore[arg-type]
