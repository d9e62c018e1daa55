"""Deterministic fake MP4 bodies, generated chunk by chunk so a 200 MB video never sits in memory."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

# A prime period, so the payload does not repeat on any power-of-two boundary: a client that drops, repeats or
# reorders chunks gets a different hash.
_PERIOD = 65_521
_CHUNK = 256 * 1024

_FTYP = struct.pack(">I4s4sI4s4s4s4s", 32, b"ftyp", b"isom", 0x200, b"isom", b"iso2", b"avc1", b"mp41")


def _header(size: int) -> bytes:
    """`ftyp` box, then an `mdat` box header spanning the rest of the file (64-bit size when needed)."""
    rest = size - len(_FTYP)
    large = rest >= 2**32
    mdat = struct.pack(">I4sQ", 1, b"mdat", rest) if large else struct.pack(">I4s", max(rest, 8), b"mdat")
    return (_FTYP + mdat)[:size]


class VideoSource:
    """The bytes of one generated video: an MP4-looking header, then a name-seeded repeating pattern."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._header = _header(size)
        pattern = hashlib.shake_256(b"flow-emulator-video:" + name.encode()).digest(_PERIOD)
        # Enough repeats that any chunk of up to _CHUNK bytes is one slice, whatever its phase.
        self._tile = pattern * (_CHUNK // _PERIOD + 2)

    def chunks(self, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """Yield the video in pieces of at most `chunk_size` (<= 256 KiB) bytes."""
        chunk_size = min(chunk_size, _CHUNK)
        head = self._header
        if head:
            yield head
        offset = len(head)
        while offset < self.size:
            n = min(chunk_size, self.size - offset)
            start = (offset - len(head)) % _PERIOD
            yield self._tile[start : start + n]
            offset += n

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


# A minimal JPEG-looking thumbnail for `servingBaseUri`.
THUMBNAIL = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32 + b"\xff\xd9"
