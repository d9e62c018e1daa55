"""Cookie-file I/O, run in worker threads: the size-limited read and the atomic, mode-0600 write."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from bot.backends.flow._cookie_rules import MAX_COOKIE_FILE_BYTES
from bot.backends.flow.errors import CookieFileError

# Logged under the public module's name, as before the split, so log filters keep matching.
logger = logging.getLogger("bot.backends.flow._cookies")


def read_limited(path: Path) -> bytes:
    """Read at most 1 MiB + 1 byte of a regular file, with a CookieFileError naming the path on failure."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise CookieFileError(f"cookie file {path} is a directory: point FLOW_COOKIE_FILE at the JSON file")
        if not stat.S_ISREG(info.st_mode):
            raise CookieFileError(f"cookie file {path} is not a regular file: point FLOW_COOKIE_FILE at the JSON file")
        if info.st_size > MAX_COOKIE_FILE_BYTES:
            raise CookieFileError(
                f"cookie file {path} is larger than 1 MiB ({info.st_size} bytes): export only the labs.google cookies"
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_COOKIE_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CookieFileError(
            f"cookie file {path} does not exist: export the labs.google cookies there or set FLOW_COOKIE_FILE"
        ) from None
    except PermissionError:
        raise CookieFileError(
            f"cookie file {path} cannot be read (permission denied): the bot needs read and write access"
        ) from None
    except IsADirectoryError:
        raise CookieFileError(f"cookie file {path} is a directory: point FLOW_COOKIE_FILE at the JSON file") from None
    except OSError as err:
        raise CookieFileError(f"cookie file {path} cannot be read: {err.strerror or type(err).__name__}") from err
    if len(data) > MAX_COOKIE_FILE_BYTES:
        raise CookieFileError(f"cookie file {path} is larger than 1 MiB: export only the labs.google cookies")
    return data


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` atomically: temp file (created ``mode``) in the same folder, fsync, rename.

    A symlinked path is followed so the link keeps pointing at the secret's real home.
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    temp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask can only narrow the create mode, but pin it exactly
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; the new file is already in place, so a failure here is only logged."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        logger.debug("could not open %s to fsync it: %s", directory, err.strerror)
        return
    try:
        os.fsync(dir_fd)
    except OSError as err:
        logger.debug("could not fsync directory %s: %s", directory, err.strerror)
    finally:
        os.close(dir_fd)
