"""Writing a finished video to disk: MP4 check first, then an atomic replace (run these in a thread)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from bot.backends.errors import NotAVideo


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
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return len(data)
