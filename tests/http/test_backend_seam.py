"""The API asks the configured backend what it can do (refusals before queueing, cost estimates) and extends
only where it can. A tiny in-test backend answers validate/estimate/can_extend/check; the worker still drives the
Flow emulator through the production wiring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from openai import BadRequestError

from bot.backends.base import Balance, Cost, GenerationRequest, Outcome, Submission
from bot.backends.errors import BackendError, NotSupported
from storage import JobState
from tests.fakes.flow_emulator import FlowEmulator
from tests.http.conftest import Api, auth, running_api


class VertexLikeRules:
    """Validation and pricing in Vertex AI's shape (vertex-veo.md): lite has no 4k; USD per second."""

    name = "vertex"
    max_concurrent = 10
    price = {"fast": 0.10, "quality": 0.40, "lite": 0.05}

    def __init__(self, *, extend: bool) -> None:
        self.extend = extend

    def validate(self, request: GenerationRequest) -> None:
        if request.model == "lite" and request.resolution == "4k":
            raise NotSupported("The lite model makes 720p or 1080p videos; choose one of those, or fast or quality.")

    def estimate(self, request: GenerationRequest) -> Cost:
        return Cost(amount=self.price[request.model] * request.duration, unit="usd")

    def can_extend(self) -> bool:
        return self.extend

    async def submit(self, requests: Sequence[GenerationRequest]) -> list[Submission | BackendError]:
        raise AssertionError("the worker talks to Flow in these tests")

    async def poll(self, refs: Sequence[str]) -> list[Outcome]:
        raise AssertionError("the worker talks to Flow in these tests")

    async def fetch(self, ref: str, outcome: Outcome | None, dest: Path) -> int:
        raise AssertionError("the worker talks to Flow in these tests")

    async def check(self) -> None:
        return None

    async def balance(self) -> Balance | None:
        return None


async def test_what_the_backend_cannot_do_is_refused_with_its_sentence(vapi: Api, key: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        await vapi.client(key).videos.create(prompt="a cat", model="lite", size="3840x2160")
    assert "720p or 1080p" in str(caught.value)
    assert await vapi.job_count() == 0


async def test_the_estimate_is_stored_and_the_vertex_ids_name_our_tiers(vapi: Api, key: str) -> None:
    video = await vapi.client(key).videos.create(
        prompt="a cat", model="veo-3.1-generate-001", seconds="6", size="1920x1080"
    )
    job = await vapi.store.get_job(int(video.id.removeprefix("video_")))
    assert job is not None and job.model.value == "quality" and job.options.resolution == "1080p"
    assert (job.cost, job.cost_unit) == (pytest.approx(2.4), "usd")
    assert video.model == "quality" and video.size == "1920x1080" and video.seconds == "6"


async def test_extend_a_completed_video_as_json_or_as_the_sdk_form_encodes_it(vapi: Api, key: str) -> None:
    # openai 3.60's `videos.extend(video={"id": ...})` fails inside the SDK (it wants a file there), so this
    # sends what the SDK's multipart encoding makes of a nested object (`video[id]`), and the JSON shape.
    client = vapi.client(key)
    source = await client.videos.create(prompt="a kite")
    done = await vapi.wait_state(int(source.id.removeprefix("video_")), JobState.DELIVERED)
    form = aiohttp.FormData()
    for name, value in (("prompt", "the kite climbs"), ("seconds", "8"), ("video[id]", source.id)):
        form.add_field(name, value)
    bodies = [{"data": form}, {"json": {"prompt": "the kite dives", "video": {"id": source.id}}}]
    for body in bodies:
        resp = await vapi.http.post(f"{vapi.base}/v1/videos/extensions", headers=auth(key), **body)
        assert resp.status == 200, await resp.text()
        extended = await resp.json()
        job = await vapi.store.get_job(int(extended["id"].removeprefix("video_")))
        assert job is not None and job.options.extends_job == done.id and job.options.video == done.file_path
    assert await vapi.job_count() == 3


async def test_no_extension_where_the_backend_cannot_extend(tmp_path: Path, emu: FlowEmulator) -> None:
    async with running_api(tmp_path, emu, backend=VertexLikeRules(extend=False)) as api:
        _, secret = await api.new_key("noext")
        client = api.client(secret)
        source = await client.videos.create(prompt="a kite")
        await api.wait_state(int(source.id.removeprefix("video_")), JobState.DELIVERED)
        ext = {"prompt": "the kite climbs", "video": {"id": source.id}}
        resp = await api.http.post(f"{api.base}/v1/videos/extensions", headers=auth(secret), json=ext)
        assert resp.status == 400 and "cannot extend" in (await resp.json())["error"]["message"]
        assert await api.job_count() == 1
