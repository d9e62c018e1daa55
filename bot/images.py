"""Input images for generations: fetched from Discord's CDN, checked by their bytes, kept under VEO_DATA_DIR.

An image is accepted only when its bytes are a PNG, JPEG or WebP (the file name and the content type are the
uploader's word, not evidence), it is not empty, not over the size cap, and Pillow can decode all of it. It is
then written atomically to ``VEO_DATA_DIR/inputs/<uuid>.<ext>`` so the job it belongs to survives a restart.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import uuid
from pathlib import Path
from typing import Literal, NamedTuple

import aiohttp
from PIL import Image

#: Largest image we download; Discord allows bigger uploads, Veo has no use for them.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: Largest image in pixels we decode (Pillow's own bomb guard is higher and only warns below 2x).
MAX_PIXELS = 40_000_000
CHUNK = 64 * 1024
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=20)

Mime = Literal["image/png", "image/jpeg", "image/webp"]
RefusalKind = Literal["not_image", "empty", "too_large", "undecodable", "download_failed"]

_EXTENSIONS: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_PIL_FORMATS: dict[str, str] = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


class ImageRefused(Exception):
    """An input image we will not use; ``message`` is one polite sentence for the user."""

    def __init__(self, kind: RefusalKind, what: str = "The image", *, limit: int = MAX_IMAGE_BYTES) -> None:
        self.kind = kind
        self.message = _refusal_text(kind, what, limit)
        super().__init__(self.message)


def _refusal_text(kind: RefusalKind, what: str, limit: int) -> str:
    if kind == "not_image":
        return f"{what} is not a PNG, JPEG or WebP picture; please attach one of those."
    if kind == "empty":
        return f"{what} is an empty file; please attach the picture again."
    if kind == "too_large":
        return f"{what} is larger than {limit // (1024 * 1024)} MB; please attach a smaller picture."
    if kind == "undecodable":
        return f"{what} is damaged or cut off and cannot be read; please export it again and attach it."
    return f"{what} could not be downloaded from Discord; please try again in a moment."


class SavedImage(NamedTuple):
    path: Path
    mime: Mime


def sniff(head: bytes) -> Mime | None:
    """The image type the bytes themselves declare, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


async def fetch_image(
    session: aiohttp.ClientSession,
    url: str,
    data_dir: Path,
    *,
    what: str = "The image",
    max_bytes: int = MAX_IMAGE_BYTES,
    client_timeout: aiohttp.ClientTimeout = DOWNLOAD_TIMEOUT,
    stem: str | None = None,
) -> SavedImage:
    """Download, check and store one image; raises ImageRefused (nothing is left on disk then).

    ``stem`` names the file (default: a fresh uuid), for callers that must find it again after a restart.
    """
    data = await _download(session, url, what=what, max_bytes=max_bytes, client_timeout=client_timeout)
    return await asyncio.to_thread(store_image, data, data_dir, what=what, max_bytes=max_bytes, stem=stem)


async def _download(
    session: aiohttp.ClientSession, url: str, *, what: str, max_bytes: int, client_timeout: aiohttp.ClientTimeout
) -> bytes:
    try:
        async with session.get(url, timeout=client_timeout, allow_redirects=True) as resp:
            if resp.status != 200:
                raise ImageRefused("download_failed", what)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise ImageRefused("too_large", what, limit=max_bytes)
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                buf += chunk
                if len(buf) > max_bytes:
                    # Stop reading now: closing the response drops the connection instead of draining it.
                    resp.close()
                    raise ImageRefused("too_large", what, limit=max_bytes)
            return bytes(buf)
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ImageRefused("download_failed", what) from err


def check_image(data: bytes, *, what: str = "The image", max_bytes: int = MAX_IMAGE_BYTES) -> Mime:
    """The image's type when the bytes are a whole, decodable PNG, JPEG or WebP; ImageRefused otherwise."""
    if not data:
        raise ImageRefused("empty", what)
    if len(data) > max_bytes:
        raise ImageRefused("too_large", what, limit=max_bytes)
    mime = sniff(data[:16])
    if mime is None:
        raise ImageRefused("not_image", what)
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[mime]]) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageRefused("too_large", what, limit=max_bytes)
            img.verify()  # structure and checksums, without decoding pixels
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[mime]]) as img:
            img.load()  # every pixel: a truncated file fails here
    except ImageRefused:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # Pillow reports damage as OSError ("truncated"), SyntaxError (bad chunks) or ValueError.
        raise ImageRefused("undecodable", what) from err
    return mime


def store_image(
    data: bytes, data_dir: Path, *, what: str = "The image", max_bytes: int = MAX_IMAGE_BYTES, stem: str | None = None
) -> SavedImage:
    """Check the bytes and write them atomically to ``data_dir/inputs/<uuid>.<ext>`` (blocking: run in a thread)."""
    mime = check_image(data, what=what, max_bytes=max_bytes)
    folder = data_dir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{stem or uuid.uuid4().hex}.{_EXTENSIONS[mime]}"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".in-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return SavedImage(dest, mime)
