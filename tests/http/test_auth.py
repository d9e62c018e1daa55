"""Authentication: no key, a wrong key, a revoked key (at once), and another key's jobs (404 like a missing one)."""

from __future__ import annotations

import logging
import sqlite3

import aiohttp
import pytest
from openai import AuthenticationError

from storage.apikeys import KEY_PREFIX, hash_key
from tests.http.conftest import Api, auth

ROUTES = [
    ("POST", "/v1/videos"),
    ("GET", "/v1/videos"),
    ("GET", "/v1/videos/video_1"),
    ("GET", "/v1/videos/video_1/content"),
    ("DELETE", "/v1/videos/video_1"),
    ("POST", "/v1/videos/video_1/remix"),
    ("POST", "/v1/videos/extensions"),
    ("POST", "/generate-video"),
    ("POST", "/generation-status"),
]


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, object]]:
    return resp.status, await resp.json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer veo_not-a-real-key"},
        {"Authorization": "Bearer sk-proj-0123456789"},
    ],
)
async def test_no_key_or_a_wrong_key_is_401_on_every_route(api: Api, key: str, headers: dict[str, str]) -> None:
    for method, path in ROUTES:
        resp = await api.http.request(method, api.base + path, headers=headers, json={"prompt": "a cat"})
        status, body = await answer(resp)
        assert status == 401, (method, path, body)
        assert body["error"]["code"] in ("missing_api_key", "invalid_api_key")  # type: ignore[index]
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert await api.job_count() == 0


async def test_a_revoked_key_is_refused_from_the_next_request(api: Api, key: str) -> None:
    client = api.client(key)
    video = await client.videos.create(prompt="a cat")
    assert await api.keys.revoke("tests")
    with pytest.raises(AuthenticationError):
        await client.videos.retrieve(video.id)
    with pytest.raises(AuthenticationError):
        await client.videos.create(prompt="another cat")
    assert await api.job_count() == 1


async def test_another_keys_video_answers_exactly_like_a_missing_one(api: Api, key: str) -> None:
    _, other = await api.new_key("other")
    mine = await api.client(key).videos.create(prompt="my cat")
    missing = "video_999999"
    for method, suffix, body in [
        ("GET", "", None),
        ("GET", "/content", None),
        ("DELETE", "", None),
        ("POST", "/remix", {"prompt": "their cat"}),
    ]:
        theirs = await answer(
            await api.http.request(method, f"{api.base}/v1/videos/{mine.id}{suffix}", headers=auth(other), json=body)
        )
        none = await answer(
            await api.http.request(method, f"{api.base}/v1/videos/{missing}{suffix}", headers=auth(other), json=body)
        )
        assert theirs == none and theirs[0] == 404, (method, suffix, theirs)
    ext = {"prompt": "more", "video": {"id": mine.id}}
    resp = await api.http.post(f"{api.base}/v1/videos/extensions", headers=auth(other), json=ext)
    assert resp.status == 404
    listed = await api.client(other).videos.list()
    assert listed.data == []
    status = await api.http.post(f"{api.base}/generation-status", headers=auth(other), json={"ids": [mine.id]})
    assert (await status.json())["jobs"] == [{"id": mine.id, "status": "not_found", "content_url": None, "error": None}]
    job = await api.store.get_job(int(mine.id.removeprefix("video_")))
    assert job is not None and not job.terminal  # their DELETE changed nothing
    assert await api.job_count() == 1


async def test_keys_are_stored_as_hashes_and_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    record, secret = await api.new_key("logged")
    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    await api.client(secret).videos.create(prompt="a cat")
    await api.http.get(f"{api.base}/v1/videos", headers={"Authorization": f"Bearer {secret}x"})
    assert secret not in caplog.text
    with sqlite3.connect(api.store.path) as db:
        dump = "\n".join(db.iterdump())
        (stored,) = db.execute("SELECT hash FROM api_keys WHERE id = ?", (record.id,)).fetchone()
    assert secret not in dump and secret[len(KEY_PREFIX) :] not in dump
    assert bytes(stored) == hash_key(secret)
    (listed,) = [k for k in await api.keys.list() if k.name == "logged"]
    assert listed.usage_count == 1 and listed.last_used_at is not None
