"""The finished video: decoded once from the poll answer, then written to disk (MP4 check, atomic replace).

Vertex returns the video inline, base64 in the JSON of the operation. Left to the SDK, one 60 MB video is held as
the JSON text, the parsed base64 string and *two* decoded copies at once (the operation's ``response`` and
``result`` are validated separately): 3.3x the file size in RSS. `InlineVideoOperation` takes the base64 out of the
parsed answer before the SDK validates it and decodes it once, dropping the string as soon as it is decoded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Self

from google.genai import types

from bot.backends.errors import BadResponse, NotAVideo

_INLINE = "bytesBase64Encoded"


class InlineVideoOperation(types.GenerateVideosOperation):
    """A GenerateVideosOperation whose inline videos are decoded by us, once, instead of by the SDK, twice.

    Pass an instance to ``operations.get``: the SDK builds its answer through this class's ``from_api_response``.
    """

    @classmethod
    def from_api_response(cls, api_response: Any, is_vertex_ai: bool = False) -> Self:
        encoded = _take_inline(api_response) if is_vertex_ai else {}
        op = super().from_api_response(api_response, is_vertex_ai=is_vertex_ai)
        if not encoded:
            return op
        targets = [r for r in (op.response, op.result) if r is not None and r.generated_videos]
        for index in sorted(encoded):
            data = _decode(encoded.pop(index))  # the string goes as soon as its bytes exist
            for response in targets:
                videos = response.generated_videos or []
                if index < len(videos) and videos[index].video is not None:
                    videos[index].video.video_bytes = data  # type: ignore[union-attr]  # one object, shared
        return op


def _take_inline(api_response: Any) -> dict[int, str]:
    """Remove each video's base64 from the parsed answer (so nothing else keeps it), by position."""
    response = api_response.get("response") if isinstance(api_response, dict) else None
    videos = response.get("videos") if isinstance(response, dict) else None
    if not isinstance(videos, list):
        return {}
    taken: dict[int, str] = {}
    for index, video in enumerate(videos):
        if isinstance(video, dict) and isinstance(video.get(_INLINE), str):
            taken[index] = video.pop(_INLINE)
    return taken


def _decode(text: str) -> bytes:
    """Standard base64 straight from the ASCII string (no intermediate copy); URL-safe as the fallback."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError):
        raise BadResponse("Vertex AI returned a video that is not valid base64.", field_path=_INLINE) from None


def is_mp4(data: bytes) -> bool:
    """Every MP4 starts with a box whose type is ``ftyp`` (ISO/IEC 14496-12)."""
    return len(data) >= 8 and data[4:8] == b"ftyp"


def write_mp4(data: bytes, dest: Path) -> int:
    """Write ``data`` to ``dest`` atomically after checking it is an MP4; nothing is left behind on failure."""
    if not is_mp4(data):
        raise NotAVideo("Vertex AI returned bytes that are not an MP4 video.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(memoryview(data))  # no copy of the video on its way to the file
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return len(data)
