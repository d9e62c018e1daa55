"""/health (503 when the backend's credentials die), /metrics through prometheus-client's own parser, /docs,
the seed's two routes, and Discord and API jobs sharing one fair queue."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.http.app import HEALTH_TTL
from storage import JobState
from tests.fakes.flow_emulator import FlowEmulator
from tests.http.conftest import Api, auth, running_api

DISCORD_USER = 1200000000000000002


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_health_is_ok_then_503_when_the_credentials_die(api: Api) -> None:
    resp = await api.http.get(f"{api.base}/health")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "ok" and body["credentials"] == "ok" and body["database"] == "ok"
    assert body["backend"] == "flow" and body["discord"] == "not configured" and body["queue"]["queued"] == 0

    api.emu.kill_session()
    api.emu.expire_tokens()
    cached = await api.http.get(f"{api.base}/health")
    assert cached.status == 200  # one check per HEALTH_TTL: a health probe cannot hammer the backend
    api.clock.advance(HEALTH_TTL)
    resp = await api.http.get(f"{api.base}/health")
    body = await resp.json()
    assert resp.status == 503 and body["status"] == "degraded" and body["credentials"] == "failed"
    metrics = samples(await (await api.http.get(f"{api.base}/metrics")).text())
    assert metrics[("veo_backend_credentials_ok", (("backend", "flow"),))] == 0


async def test_metrics_parse_and_count_jobs_generations_and_seconds(api: Api, key: str) -> None:
    client = api.client(key)
    video = await client.videos.create(prompt="a cat")
    await api.wait_state(int(video.id.removeprefix("video_")), JobState.DELIVERED)
    await client.videos.create(prompt="a queued dog")
    cancel = await client.videos.create(prompt="a cancelled cow")  # the key's limit is 2 active: the dog + the cow
    await client.videos.delete(cancel.id)

    resp = await api.http.get(f"{api.base}/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    found = samples(await resp.text())
    assert found[("veo_jobs", (("state", "delivered"),))] == 1
    assert found[("veo_jobs", (("state", "cancelled"),))] == 1
    results = {dict(labels)["result"]: v for (name, labels), v in found.items() if name == "veo_generations_total"}
    assert results == {"succeeded": 1, "cancelled": 1}
    assert sum(v for (name, _), v in found.items() if name == "veo_generation_seconds_count") == 1
    assert ("veo_queue_depth", ()) in found and ("veo_queue_paused", ()) in found
    assert found[("veo_estimated_spend_month", (("unit", "credits"),))] >= 0


async def test_docs_and_openapi_describe_the_routes(api: Api) -> None:
    assert (await api.http.get(f"{api.base}/docs")).status == 200
    spec = await (await api.http.get(f"{api.base}/openapi.json")).json()
    paths = ["/v1/videos", "/v1/videos/{vid}", "/v1/videos/{vid}/content", "/v1/videos/{vid}/remix"]
    paths += ["/v1/videos/extensions", "/generate-video", "/generation-status", "/health", "/metrics"]
    for path in paths:
        assert path in spec["paths"], path
    create = spec["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(create) == {"application/json", "multipart/form-data"}


async def test_the_seed_routes_are_views_of_the_same_jobs(api: Api, key: str) -> None:
    resp = await api.http.post(
        f"{api.base}/generate-video", headers=auth(key), json={"prompt": "two cats", "aspect": "portrait", "count": 2}
    )
    assert resp.status == 200, await resp.text()
    jobs = (await resp.json())["jobs"]
    assert [j["status"] for j in jobs] == ["queued", "queued"]
    for j in jobs:
        await api.wait_state(int(j["id"].removeprefix("video_")), JobState.DELIVERED)
    resp = await api.http.post(
        f"{api.base}/generation-status", headers=auth(key), json={"ids": [j["id"] for j in jobs]}
    )
    statuses = (await resp.json())["jobs"]
    assert [s["status"] for s in statuses] == ["completed", "completed"]
    served = {api.emu.video_bytes(name) for name in api.emu.generations}
    for s in statuses:
        content = await api.http.get(s["content_url"], headers=auth(key))
        assert content.status == 200 and await content.read() in served
    same = await api.client(key).videos.retrieve(jobs[0]["id"])
    assert same.status == "completed" and same.size == "720x1280"
    bad = await api.http.post(f"{api.base}/generate-video", headers=auth(key), json={"prompt": "x", "count": 5})
    assert bad.status == 400 and await api.job_count() == 2


async def test_discord_and_api_jobs_share_one_fair_queue(tmp_path: Path, emu: FlowEmulator) -> None:
    """A Discord user who queued first and an API key alternate: the key's videos sit at 2, 4, 6 and are taken so."""
    async with running_api(tmp_path, emu, veo_max_active_per_user=5, start_worker=False) as api:
        discord_jobs = await api.store.create_jobs(
            user_id=DISCORD_USER,
            guild_id=1,
            channel_id=2,
            prompt="a discord cat",
            aspect="landscape",
            model="fast",
            seeds=[1, 2, 3],
            daily_quota=10,
            max_active=5,
        )
        _, secret = await api.new_key("fair")
        client = api.client(secret)
        videos = [await client.videos.create(prompt=f"an api cat {i}") for i in range(3)]
        assert [v.queue_position for v in videos] == [2, 4, 6]
        assert [(await client.videos.retrieve(v.id)).queue_position for v in videos] == [2, 4, 6]
        claimed = await api.store.claim_next(6)
        owners = ["discord" if j.user_id == DISCORD_USER else "api" for j in claimed]
        assert owners == ["discord", "api"] * 3
        assert {j.id for j in claimed if j.user_id == DISCORD_USER} == {j.id for j in discord_jobs}
