"""The Vertex AI emulator speaks vertex-veo.md §2: driven with plain aiohttp requests over loopback."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes._flow_video import VideoSource
from tests.fakes.vertex_emulator import Ending, Fault, VertexEmulator

MODEL = "veo-3.1-fast-generate-001"
PARENT = "projects/test-project/locations/us-central1/publishers/google/models"


@pytest.fixture
async def emu() -> AsyncIterator[VertexEmulator]:
    async with VertexEmulator(polls_to_finish=2, video_size=1000) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def body(prompt: str = "a cat", **params: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": {"sampleCount": 1, "durationSeconds": 8} | params}


async def call(
    http: aiohttp.ClientSession,
    emu: VertexEmulator,
    path: str,
    payload: dict[str, Any] | None = None,
    *,
    version: str = "v1beta1",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    auth = headers if headers is not None else {"x-goog-api-key": emu.api_key}
    method = "POST" if payload is not None else "GET"
    async with http.request(method, f"{emu.base_url}/{version}/{path}", json=payload, headers=auth) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize("auth", ["api_key", "bearer"])
async def test_submit_then_poll_to_an_inline_mp4(
    emu: VertexEmulator, http: aiohttp.ClientSession, version: str, auth: str
) -> None:
    headers = {"x-goog-api-key": emu.api_key} if auth == "api_key" else {"Authorization": f"Bearer {emu.bearer_token}"}
    status, op = await call(http, emu, f"{PARENT}/{MODEL}:predictLongRunning", body(), version=version, headers=headers)
    assert status == 200 and op["name"].startswith(f"{PARENT}/{MODEL}/operations/")
    poll = f"{PARENT}/{MODEL}:fetchPredictOperation"
    status, running = await call(http, emu, poll, {"operationName": op["name"]}, version=version, headers=headers)
    assert status == 200 and not running.get("done")
    status, done = await call(http, emu, poll, {"operationName": op["name"]}, version=version, headers=headers)
    assert done["done"] is True and done["response"]["raiMediaFilteredCount"] == 0
    [video] = done["response"]["videos"]
    data = base64.b64decode(video["bytesBase64Encoded"])
    assert data == VideoSource(op["name"], 1000).read_all() and data[4:8] == b"ftyp"
    assert [r.auth for r in emu.requests] == [auth] * 3
    assert all(r.headers.get("x-goog-api-key", "<redacted>") == "<redacted>" for r in emu.requests)
    assert (emu.count("submit"), emu.count("poll")) == (1, 2)


async def test_wrong_or_missing_credentials_are_401(emu: VertexEmulator, http: aiohttp.ClientSession) -> None:
    path = f"{PARENT}/{MODEL}:predictLongRunning"
    for headers in ({"x-goog-api-key": "nope"}, {"Authorization": "Bearer nope"}, {}):
        status, answer = await call(http, emu, path, body(), headers=headers)
        assert status == 401 and answer["error"]["status"] == "UNAUTHENTICATED"
    assert not emu.operations


async def test_model_read_on_both_path_forms(emu: VertexEmulator, http: aiohttp.ClientSession) -> None:
    status, model = await call(http, emu, f"publishers/google/models/{MODEL}")
    assert status == 200 and model["name"] == f"publishers/google/models/{MODEL}"
    assert (await call(http, emu, f"{PARENT}/{MODEL}"))[0] == 200
    status, missing = await call(http, emu, "publishers/google/models/veo-3.0-generate-preview")
    assert status == 404 and "was not found" in missing["error"]["message"]
    assert emu.count("model") == 3


@pytest.mark.parametrize(
    "params",
    [{"durationSeconds": 4, "resolution": "1080p"}, {"sampleCount": 5}, {"aspectRatio": "1:1"}],
    ids=repr,
)
async def test_submit_enforces_documented_constraints(
    emu: VertexEmulator, http: aiohttp.ClientSession, params: dict[str, Any]
) -> None:
    status, answer = await call(http, emu, f"{PARENT}/{MODEL}:predictLongRunning", body(**params))
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"


async def test_lite_refuses_4k(emu: VertexEmulator, http: aiohttp.ClientSession) -> None:
    path = f"{PARENT}/veo-3.1-lite-generate-001:predictLongRunning"
    assert (await call(http, emu, path, body(resolution="4k")))[0] == 400


async def test_fault_after_accepting_creates_the_operation(emu: VertexEmulator, http: aiohttp.ClientSession) -> None:
    emu.inject("submit", Fault.server_error(503, accept=True))
    status, _ = await call(http, emu, f"{PARENT}/{MODEL}:predictLongRunning", body())
    assert status == 503 and len(emu.operations) == 1
    assert emu.calls("submit")[0].fault == "503 accept=True"


async def test_endings_filtered_and_blocked(emu: VertexEmulator, http: aiohttp.ClientSession) -> None:
    emu.polls_to_finish = 1
    emu.ending_for("filtered", Ending.filtered())
    emu.ending_for("blocked", Ending.blocked())
    answers = {}
    for prompt in ("filtered", "blocked"):
        _, op = await call(http, emu, f"{PARENT}/{MODEL}:predictLongRunning", body(prompt))
        _, answers[prompt] = await call(
            http, emu, f"{PARENT}/{MODEL}:fetchPredictOperation", {"operationName": op["name"]}
        )
    assert answers["filtered"]["response"]["raiMediaFilteredCount"] == 1
    assert "Support codes: 42237218" in answers["filtered"]["response"]["raiMediaFilteredReasons"][0]
    assert answers["blocked"]["error"]["code"] == 3


async def test_unknown_operation_is_404(emu: VertexEmulator, http: aiohttp.ClientSession) -> None:
    name = f"{PARENT}/{MODEL}/operations/nope"
    status, _ = await call(http, emu, f"{PARENT}/{MODEL}:fetchPredictOperation", {"operationName": name})
    assert status == 404
