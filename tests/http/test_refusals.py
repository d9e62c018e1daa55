"""Every refusal answers `{"error": {"code", "message"}}` with its status and changes nothing: no job, no file."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import BadRequestError
from PIL import Image

from storage import JobState
from tests.fakes.flow_emulator import Outcome
from tests.http.conftest import Api, auth


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(out, format=fmt)
    return out.getvalue()


PNG, JPEG, WEBP = _image("PNG"), _image("JPEG"), _image("WEBP")
#: The right magic bytes with nothing behind them: sniffing alone would take it for a PNG.
FAKE_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)


def inputs(api: Api) -> list[str]:
    folder = api.settings.veo_data_dir / "inputs"
    return sorted(os.listdir(folder)) if folder.exists() else []


async def refused(api: Api, resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return body["error"]


def form(fields: dict[str, str], file: tuple[str, bytes, str] | None = None) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        data.add_field(name, value)
    if file is not None:
        data.add_field("input_reference", file[1], filename=file[0], content_type=file[2])
    return data


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ({}, "invalid_request", "prompt is required"),
        ({"prompt": ""}, "invalid_prompt", "prompt"),
        ({"prompt": " \u200b\n\t"}, "invalid_prompt", "prompt"),
        ({"prompt": "x" * 2001}, "invalid_prompt", "2000"),
        ({"prompt": "a cat", "model": "sora-2"}, "invalid_request", "model"),
        ({"prompt": "a cat", "size": "1792x1024"}, "invalid_request", "size"),
        ({"prompt": "a cat", "seconds": "12"}, "invalid_request", "seconds"),
        ({"prompt": "a cat", "seed": -1}, "invalid_request", "seed"),
        ({"prompt": "a cat", "negative_prompt": "n" * 501}, "invalid_request", "negative_prompt"),
    ],
)
async def test_bad_fields_are_400_and_queue_nothing(
    api: Api, key: str, body: dict[str, Any], code: str, where: str
) -> None:
    for send in ("json", "multipart"):
        kwargs: dict[str, Any] = (
            {"json": body} if send == "json" else {"data": form({k: str(v) for k, v in body.items()})}
        )
        resp = await api.http.post(f"{api.base}/v1/videos", headers=auth(key), **kwargs)
        error = await refused(api, resp, 400)
        assert error["code"] == code and where in error["message"], (send, error)
    assert await api.job_count() == 0


async def test_the_sdk_sees_a_bad_request_as_bad_request_error(api: Api, key: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        await api.client(key).videos.create(prompt="a cat", size="1792x1024")  # an OpenAI size we do not make
    assert caught.value.status_code == 400 and "size" in str(caught.value)
    assert await api.job_count() == 0


async def test_malformed_json_and_multipart_are_400(api: Api, key: str) -> None:
    url = f"{api.base}/v1/videos"
    cases = [
        ({"Content-Type": "application/json"}, b'{"prompt": "a cat"'),
        ({"Content-Type": "application/json"}, b'["a", "list"]'),
        ({"Content-Type": "application/json"}, b"\xff\xfe not utf-8"),
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\nContent-Disposition: garbage\r\n\r\n"),
        ({"Content-Type": "multipart/form-data"}, b"no boundary at all"),
        ({"Content-Type": "text/plain"}, b"prompt=a cat"),
    ]
    for headers, raw in cases:
        resp = await api.http.post(url, headers={**auth(key), **headers}, data=raw)
        error = await refused(api, resp, 400)
        assert error["code"] == "invalid_request", (headers, raw, error)
    assert await api.job_count() == 0


async def test_uploads_that_are_not_images_or_too_large_are_refused(api: Api, key: str) -> None:
    url = f"{api.base}/v1/videos"
    not_image = form({"prompt": "a cat"}, ("cat.png", b"<html>not a png</html>", "image/png"))
    error = await refused(api, await api.http.post(url, headers=auth(key), data=not_image), 400)
    assert error["code"] == "invalid_image"
    magic_only = form({"prompt": "a cat"}, ("cat.png", FAKE_PNG, "image/png"))
    error = await refused(api, await api.http.post(url, headers=auth(key), data=magic_only), 400)
    assert error["code"] == "invalid_image" and "damaged" in error["message"]
    as_text = form({"prompt": "a cat", "input_reference": "cat.png"})
    error = await refused(api, await api.http.post(url, headers=auth(key), data=as_text), 400)
    assert error["code"] == "invalid_image"
    # over the 256 KiB upload cap, under the 512 KiB body cap
    big = form({"prompt": "a cat"}, ("cat.png", PNG + bytes(300 * 1024), "image/png"))
    error = await refused(api, await api.http.post(url, headers=auth(key), data=big), 413)
    assert error["code"] == "file_too_large"
    assert await api.job_count() == 0 and inputs(api) == []


async def test_a_body_over_the_cap_is_413_declared_or_streamed(api: Api, key: str) -> None:
    url = f"{api.base}/v1/videos"
    huge = json.dumps({"prompt": "a cat", "pad": "x" * (600 * 1024)}).encode()
    error = await refused(
        api, await api.http.post(url, headers={**auth(key), "Content-Type": "application/json"}, data=huge), 413
    )
    assert error["code"] == "request_too_large"

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: the stream itself passes the cap
        for i in range(0, len(huge), 64 * 1024):
            yield huge[i : i + 64 * 1024]

    resp = await api.http.post(url, headers={**auth(key), "Content-Type": "application/json"}, data=chunks())
    assert (await refused(api, resp, 413))["code"] == "request_too_large"
    big_upload = form({"prompt": "a cat"}, ("cat.png", PNG + bytes(600 * 1024), "image/png"))
    assert await refused(api, await api.http.post(url, headers=auth(key), data=big_upload), 413)
    assert await api.job_count() == 0 and inputs(api) == []


@pytest.mark.parametrize(
    ("name", "data", "ext"), [("a.png", PNG, "png"), ("b.jpg", JPEG, "jpg"), ("c.webp", WEBP, "webp")]
)
async def test_an_image_upload_is_kept_under_the_data_dir_with_the_job(
    vapi: Api, key: str, name: str, data: bytes, ext: str
) -> None:
    """With a backend that takes a first frame (Vertex-like rules, tests/http/test_backend_seam.py)."""
    api = vapi
    # the declared content type is ignored: the bytes decide
    upload = form({"prompt": "animate this", "size": "720x1280"}, (name, data, "application/octet-stream"))
    resp = await api.http.post(f"{api.base}/v1/videos", headers=auth(key), data=upload)
    assert resp.status == 200, await resp.text()
    video = await resp.json()
    job = await api.store.get_job(int(video["id"].removeprefix("video_")))
    assert job is not None and job.options.image is not None and job.aspect.value == "portrait"
    path = Path(job.options.image)
    assert path.parent == api.settings.veo_data_dir / "inputs" and path.suffix == f".{ext}"
    assert path.read_bytes() == data


async def test_quota_is_429_with_retry_after_and_changes_nothing(vapi: Api) -> None:
    api = vapi  # a backend that takes images: the upload passes validation and is dropped by the quota refusal
    _, secret = await api.new_key("one-a-day", daily=1)
    url = f"{api.base}/v1/videos"
    ok = await api.http.post(url, headers=auth(secret), json={"prompt": "a cat"})
    assert ok.status == 200
    upload = form({"prompt": "another cat"}, ("cat.png", PNG, "image/png"))
    resp = await api.http.post(url, headers=auth(secret), data=upload)
    error = await refused(api, resp, 429)
    assert error["code"] == "quota_exceeded"
    assert 86_000 < int(resp.headers["Retry-After"]) <= 86_400
    assert await api.job_count() == 1 and inputs(api) == []


async def test_active_limit_is_429_with_retry_after(api: Api) -> None:
    api.emu.outcome_for("slow", Outcome.stuck())
    _, secret = await api.new_key("busy")
    url = f"{api.base}/v1/videos"
    for _ in range(api.settings.veo_max_active_per_user):
        assert (await api.http.post(url, headers=auth(secret), json={"prompt": "slow cat"})).status == 200
    resp = await api.http.post(url, headers=auth(secret), json={"prompt": "slow cat"})
    assert (await refused(api, resp, 429))["code"] == "too_many_active"
    assert int(resp.headers["Retry-After"]) > 0
    assert await api.job_count() == api.settings.veo_max_active_per_user


async def test_content_before_completion_is_409(api: Api, key: str) -> None:
    api.emu.outcome_for("stuck", Outcome.stuck())
    resp = await api.http.post(f"{api.base}/v1/videos", headers=auth(key), json={"prompt": "a stuck cat"})
    vid = (await resp.json())["id"]
    content = await api.http.get(f"{api.base}/v1/videos/{vid}/content", headers=auth(key))
    assert (await refused(api, content, 409))["code"] == "not_ready"
    await api.wait_state(int(vid.removeprefix("video_")), JobState.RUNNING)
    content = await api.http.get(f"{api.base}/v1/videos/{vid}/content", headers=auth(key))
    assert (await refused(api, content, 409))["code"] == "not_ready"
    assert await api.job_count() == 1


async def test_an_image_the_backend_cannot_use_is_refused_with_its_sentence_and_not_kept(api: Api, key: str) -> None:
    upload = form({"prompt": "animate this"}, ("a.png", PNG, "image/png"))
    resp = await api.http.post(f"{api.base}/v1/videos", headers=auth(key), data=upload)
    error = await refused(api, resp, 400)
    assert error["code"] == "unsupported" and "Flow" in error["message"]
    assert await api.job_count() == 0 and inputs(api) == []
