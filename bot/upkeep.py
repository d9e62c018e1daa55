"""Upkeep shared by both ways of running the bot (with Discord, and `serve`): credential holds and media pruning.

No discord here: the jobs cog and `bot/serve.py` each own the loops and call these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from bot.backends import errors as be
from bot.backends.flow.credentials import Credentials
from bot.worker import Worker
from storage import Job, Store

log = logging.getLogger(__name__)

#: Holds that mean "Flow credentials do not work": lifted as soon as a refresh proves they work again.
#: Not "verification": a working session says nothing about Flow's human check, which an admin clears.
FLOW_CREDENTIAL_HOLDS = frozenset({"cookies", "migrated", "flow_outage"})

#: A partial download untouched this long is a leftover of a kill: downloads write continuously and give up
#: after FLOW_HTTP_TIMEOUT without data, so no file being written now is anywhere near this old.
PART_GRACE = 3600.0


def credentials_hold(err: Exception) -> str:
    """The hold that says what is really wrong when the Flow token refresher gives up."""
    match err:
        case be.AccountMigrated():
            return "migrated"
        case be.VerificationRequired():
            return "verification"
        case be.Unavailable() | be.RateLimited():
            # Flow's sign-in service is down and the token ran out: an outage, not dead cookies. Holding keeps
            # jobs queued instead of burning their submit attempts; it lifts by itself on recovery.
            log.warning("Flow's session endpoint is unreachable and the token expired (%s)", type(err).__name__)
            return "flow_outage"
    return "cookies"


async def credentials_failed(worker: Worker, err: Exception) -> None:
    await worker.pause(credentials_hold(err))


async def credentials_recovered(worker: Worker) -> None:
    """A refresh worked after a reported failure (or for the first time since start): lift a credentials hold."""
    held = await worker.paused()
    if held in FLOW_CREDENTIAL_HOLDS:
        log.info("Flow credentials work again; lifting the %r hold", held)
        await worker.resume()


async def lift_stale_hold(worker: Worker, credentials: Credentials | None) -> None:
    """A Flow credentials hold survives restarts; if the (maybe replaced) cookie file works now, lift it.

    If it cannot be told yet (Flow's sign-in service is down), the refresher lifts it on its first success.
    """
    if credentials is None or await worker.paused() not in FLOW_CREDENTIAL_HOLDS:
        return
    try:
        await credentials.refresh(force=True)
    except be.BackendError as err:
        log.warning("queue stays on hold: the cookies still do not work (%s)", type(err).__name__)
        return
    await worker.resume()


async def prune_media(store: Store, media_dir: Path, retention_days: float) -> int:
    """Delete finished jobs' media older than the retention, stale partial downloads, and input pictures no
    unfinished job needs once they are older than the retention too; returns how many files."""
    retention = retention_days * 86400
    removed = 0
    for job in await store.media_to_prune(retention):
        if job.file_path:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(Path(job.file_path).unlink)
                removed += 1
            await store.update_job(job.id, file_path=None)
    removed += await asyncio.to_thread(prune_partials, media_dir, time.time() - PART_GRACE)
    needed = {path for job in await store.unfinished_jobs() for path in _inputs_of(job)}
    inputs = media_dir.parent / "inputs"
    return removed + await asyncio.to_thread(prune_inputs, inputs, time.time() - retention, needed)


def _inputs_of(job: Job) -> list[str]:
    opts = job.options
    return [p for p in (opts.image, opts.last_frame, *opts.references) if p]


def prune_inputs(folder: Path, before: float, needed: set[str]) -> int:
    """Delete input pictures (and abandoned uploads) last modified before `before` that no unfinished job uses.

    Retry and Edit of an older job then say its pictures are no longer kept.
    """
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and str(path) not in needed and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
    return removed


def prune_partials(media_dir: Path, before: float) -> int:
    """Delete `*.part` files in `media_dir` last modified before `before` (wall time, as mtimes are)."""
    removed = 0
    for path in media_dir.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):  # finished or discarded meanwhile
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
    return removed
