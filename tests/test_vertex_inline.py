"""The inline video of a finished Vertex operation: decoded once, shared by `response` and `result`, checked."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bot.backends.errors import BadResponse
from bot.backends.vertex._files import InlineVideoOperation

VIDEO = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 8


def answer(*videos: dict[str, Any]) -> dict[str, Any]:
    response = {"@type": "x.GenerateVideoResponse", "raiMediaFilteredCount": 0, "videos": list(videos)}
    return {
        "name": "projects/p/locations/l/publishers/google/models/m/operations/1",
        "done": True,
        "response": response,
    }


def inline(data: bytes, encode: Any = base64.b64encode) -> dict[str, Any]:
    return {"bytesBase64Encoded": encode(data).decode("ascii"), "mimeType": "video/mp4"}


def test_the_video_is_decoded_once_and_shared_by_response_and_result() -> None:
    raw = answer(inline(VIDEO))
    op = InlineVideoOperation.from_api_response(raw, is_vertex_ai=True)
    assert op.response is not None and op.result is not None
    first = op.response.generated_videos[0].video  # type: ignore[index]
    again = op.result.generated_videos[0].video  # type: ignore[index]
    assert first is not None and again is not None
    assert first.video_bytes == VIDEO
    assert first.video_bytes is again.video_bytes
    assert "bytesBase64Encoded" not in raw["response"]["videos"][0]  # the string is not kept alive by the answer


def test_each_sample_keeps_its_own_bytes_next_to_a_storage_uri() -> None:
    other = VIDEO[::-1]
    op = InlineVideoOperation.from_api_response(
        answer({"gcsUri": "gs://b/0.mp4"}, inline(VIDEO), inline(other, base64.urlsafe_b64encode)), is_vertex_ai=True
    )
    videos = op.response.generated_videos  # type: ignore[union-attr]
    assert videos is not None
    assert [v.video.video_bytes for v in videos] == [None, VIDEO, other]  # type: ignore[union-attr]
    assert videos[0].video.uri == "gs://b/0.mp4"  # type: ignore[union-attr]


def test_base64_that_does_not_decode_is_a_bad_response() -> None:
    with pytest.raises(BadResponse):
        InlineVideoOperation.from_api_response(
            answer({"bytesBase64Encoded": "not*base64!", "mimeType": "video/mp4"}), is_vertex_ai=True
        )


def test_a_running_operation_passes_through() -> None:
    op = InlineVideoOperation.from_api_response({"name": "operations/1", "done": False}, is_vertex_ai=True)
    assert op.done is False and op.response is None
