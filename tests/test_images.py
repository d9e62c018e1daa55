"""bot/images.py over real loopback HTTP: what is accepted, what is refused, and that refusals stop early."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.images import ImageRefused, fetch_image, sniff

CAP = 256 * 1024  # a small cap keeps the too-large cases fast; the logic is the same at 20 MB


def picture(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A real image made by Pillow, with enough detail that its compressed form is not trivial."""
    img = Image.new("RGB", size)
    img.putdata([((x * 7) % 256, (y * 13) % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])])
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@dataclass
class Cdn:
    """A loopback server standing in for Discord's CDN; counts what it managed to send of streamed bodies."""

    base: str = ""
    bodies: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    streamed_bytes: int = 0
    stream_total: int = 0
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, name: str) -> str:
        return f"{self.base}/attachments/1/2/{name}"


@pytest.fixture
async def cdn() -> AsyncIterator[Cdn]:
    state = Cdn()

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name.startswith("stream"):
            return await stream(request)
        if name not in state.bodies:
            return web.Response(status=404, text="Not Found")
        body, ctype = state.bodies[name]
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def stream(request: web.Request) -> web.StreamResponse:
        """A huge body without Content-Length, written chunk by chunk until the client hangs up."""
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024 - 8)
        try:
            while state.streamed_bytes < state.stream_total:
                await resp.write(chunk)
                state.streamed_bytes += len(chunk)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            state.stream_done.set()
        return resp

    app = web.Application()
    app.router.add_get("/attachments/{c}/{a}/{name}", serve)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    state.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.parametrize(
    ("fmt", "mime", "ext"), [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")]
)
async def test_good_images_are_stored_byte_for_byte(
    cdn: Cdn, session: aiohttp.ClientSession, tmp_path: Path, fmt: str, mime: str, ext: str
) -> None:
    body = picture(fmt)
    # The name and the content type lie on purpose: only the bytes count.
    cdn.bodies["upload.bin"] = (body, "application/octet-stream")
    saved = await fetch_image(session, cdn.url("upload.bin"), tmp_path, max_bytes=CAP)
    assert saved.mime == mime
    assert saved.path.parent == tmp_path / "inputs"
    assert saved.path.suffix == f".{ext}"
    assert saved.path.read_bytes() == body
    assert [p.name for p in (tmp_path / "inputs").iterdir()] == [saved.path.name]  # no temp file left


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def truncated_png() -> bytes:
    body = picture("PNG", (128, 96))
    return body[: len(body) // 2]


def garbage_png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16


def garbage_jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0" + b"\x13\x37" * 500


@pytest.mark.parametrize(
    ("name", "body", "ctype", "kind"),
    [
        ("anim.gif", gif(), "image/gif", "not_image"),
        ("page.png", b"<!doctype html><html><body>not a picture</body></html>", "image/png", "not_image"),
        ("empty.png", b"", "image/png", "empty"),
        ("cut.png", truncated_png(), "image/png", "undecodable"),
        ("noise.png", garbage_png(), "image/png", "undecodable"),
        ("noise.jpg", garbage_jpeg(), "image/jpeg", "undecodable"),
        ("big.png", picture("PNG", (8, 8)) + bytes(CAP), "image/png", "too_large"),
    ],
)
async def test_bad_images_are_refused_and_nothing_is_stored(
    cdn: Cdn, session: aiohttp.ClientSession, tmp_path: Path, name: str, body: bytes, ctype: str, kind: str
) -> None:
    cdn.bodies[name] = (body, ctype)
    with pytest.raises(ImageRefused) as caught:
        await fetch_image(session, cdn.url(name), tmp_path, what="The first frame", max_bytes=CAP)
    assert caught.value.kind == kind
    message = caught.value.message
    assert message.startswith("The first frame ")
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    inputs = tmp_path / "inputs"
    assert not inputs.exists() or list(inputs.iterdir()) == []


async def test_a_404_is_a_failed_download(cdn: Cdn, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    with pytest.raises(ImageRefused) as caught:
        await fetch_image(session, cdn.url("gone.png"), tmp_path)
    assert caught.value.kind == "download_failed"
    assert "try again" in caught.value.message


async def test_a_refused_connection_is_a_failed_download(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(ImageRefused) as caught:
        await fetch_image(session, f"http://127.0.0.1:{port}/a.png", tmp_path)
    assert caught.value.kind == "download_failed"


async def test_an_endless_body_stops_being_read_soon_after_the_cap(
    cdn: Cdn, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cdn.stream_total = 512 * 1024 * 1024  # 512 MiB on offer
    with pytest.raises(ImageRefused) as caught:
        await fetch_image(session, cdn.url("stream.png"), tmp_path, max_bytes=CAP)
    assert caught.value.kind == "too_large"
    await asyncio.wait_for(cdn.stream_done.wait(), 10)
    # The server could push the cap plus what the socket buffers hold, nowhere near the whole body.
    assert cdn.streamed_bytes < 32 * 1024 * 1024
    assert cdn.streamed_bytes < cdn.stream_total


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    cdn: Cdn, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cdn.bodies["huge.png"] = (picture("PNG") + bytes(4 * CAP), "image/png")
    with pytest.raises(ImageRefused) as caught:
        await fetch_image(session, cdn.url("huge.png"), tmp_path, max_bytes=CAP)
    assert caught.value.kind == "too_large"


def test_sniff_ignores_everything_but_the_magic() -> None:
    assert sniff(picture("PNG")[:16]) == "image/png"
    assert sniff(picture("JPEG")[:16]) == "image/jpeg"
    assert sniff(picture("WEBP")[:16]) == "image/webp"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # a RIFF that is not WebP
    assert sniff(b"GIF89a") is None
    assert sniff(b"") is None
