"""Videos to disk: the MP4 sniff, and streamed or whole downloads written to a temp file then renamed into place."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path
from typing import IO

import aiohttp

from bot.backends.flow.errors import NotAVideo


def check_mp4(head: bytes, content_type: str | None) -> None:
    """Refuse an HTML page (a dead session's login redirect) or anything not shaped like an MP4."""
    if content_type and "text/html" in content_type.lower():
        raise NotAVideo("download returned an HTML page, not a video", field_path="$content-type")
    if len(head) < 8 or head[4:8] != b"ftyp":
        raise NotAVideo(f"download did not return an MP4 ({content_type or 'no content type'})", field_path="$body")


async def stream_to_file(resp: aiohttp.ClientResponse, dest: Path, chunk_size: int) -> int:
    """Stream the body to a temp file beside ``dest`` (writes in a worker thread), then rename into place."""
    content_type = resp.headers.get("Content-Type")
    if content_type and "text/html" in content_type.lower():
        check_mp4(b"", content_type)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    handle: IO[bytes] | None = None
    written = 0
    buf = bytearray()
    try:
        async for piece in resp.content.iter_chunked(chunk_size):
            buf += piece
            if handle is None:
                if len(buf) < 8:
                    continue
                check_mp4(bytes(buf[:8]), content_type)
                handle = await asyncio.to_thread(_open_tmp, tmp)
            if len(buf) >= chunk_size:
                await asyncio.to_thread(handle.write, buf)
                written += len(buf)
                buf = bytearray()
        if handle is None:
            check_mp4(bytes(buf), content_type)
            handle = await asyncio.to_thread(_open_tmp, tmp)
        if buf:
            await asyncio.to_thread(handle.write, buf)
            written += len(buf)
        await asyncio.to_thread(_commit, handle, tmp, dest)
        handle = None
        return written
    except BaseException:
        if handle is not None:
            await asyncio.shield(asyncio.to_thread(_discard, handle, tmp))
        raise


def _open_tmp(tmp: Path) -> IO[bytes]:
    return tmp.open("xb")


def _commit(handle: IO[bytes], tmp: Path, dest: Path) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()
    os.replace(tmp, dest)


def _discard(handle: IO[bytes], tmp: Path) -> None:
    handle.close()
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def write_bytes_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    try:
        with tmp.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
