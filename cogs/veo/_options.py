"""From what a person asked to a request the configured backend accepts, its cost, and the input images on disk.

Order matters and is the same for every entry point (`/veo prompt`, the buttons, the message menu): the backend's
validation table decides first, before any download or store write; then the images are fetched and checked;
then the jobs are created. A refusal at any step leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bot.backends.base import Backend, Cost, GenerationRequest
from bot.backends.errors import NotSupported
from bot.errors import UserFacingError
from bot.images import ImageRefused, SavedImage, fetch_image
from bot.worker import generation_request
from storage import JobOptions

if TYPE_CHECKING:
    from bot.app import VeoBot

REFERENCE_ROLES = ("reference1", "reference2", "reference3")
IMAGE_ROLES = ("image", "last_frame", *REFERENCE_ROLES)
#: How each attachment is named in a refusal.
WHAT: dict[str, str] = {
    "image": "The image",
    "last_frame": "The last frame",
    "reference1": "Reference image 1",
    "reference2": "Reference image 2",
    "reference3": "Reference image 3",
}
#: Stands in for an image not downloaded yet: validation needs to know an input is there, not its bytes.
_PENDING = Path("pending-upload")


@dataclass(frozen=True)
class JobSpec:
    """Everything one command queues: shared by its `count` jobs, which differ only in their seed."""

    prompt: str
    aspect: str
    model: str
    seeds: list[int]
    options: JobOptions = field(default_factory=JobOptions)
    #: Attachments still to download, by role (`image`, `last_frame`, `reference1`..): their CDN URLs.
    uploads: Mapping[str, str] = field(default_factory=dict)
    cost: Cost | None = None


def request_for(spec: JobSpec, seed: int | None = None) -> GenerationRequest:
    """The neutral request one job of `spec` will make (pending uploads stand in as placeholder paths)."""
    o, pending = spec.options, str(_PENDING)
    waiting = o.model_copy(
        update={
            "image": o.image or (pending if "image" in spec.uploads else None),
            "last_frame": o.last_frame or (pending if "last_frame" in spec.uploads else None),
            "references": (*o.references, *(pending for r in REFERENCE_ROLES if r in spec.uploads)),
        }
    )
    return generation_request(
        prompt=spec.prompt,
        aspect=spec.aspect,
        model=spec.model,
        seed=spec.seeds[0] if seed is None else seed,
        options=waiting,
    )


def backend_of(bot: VeoBot) -> Backend:
    """The backend new jobs go to (the configured one)."""
    return bot.backend  # type: ignore[attr-defined,no-any-return]


def validated(bot: VeoBot, spec: JobSpec) -> JobSpec:
    """Ask the backend's validation table, before anything is fetched or queued; returns the spec with its cost."""
    backend = backend_of(bot)
    request = request_for(spec)
    try:
        backend.validate(request)
    except NotSupported as err:
        raise UserFacingError(str(err)) from None  # one sentence saying what would work (interface.md)
    return replace(spec, cost=backend.estimate(request))


async def fetch_inputs(bot: VeoBot, spec: JobSpec) -> JobSpec:
    """Download and check the spec's attachments at once; returns the spec with their paths, or refuses (and
    deletes whatever was already stored)."""
    roles = [r for r in IMAGE_ROLES if r in spec.uploads]
    results = await asyncio.gather(
        *(fetch_image(bot.http_session, spec.uploads[r], bot.settings.veo_data_dir, what=WHAT[r]) for r in roles),
        return_exceptions=True,
    )
    saved = {role: res for role, res in zip(roles, results, strict=True) if isinstance(res, SavedImage)}
    failure = next((res for res in results if isinstance(res, BaseException)), None)
    if failure is not None:
        discard(str(s.path) for s in saved.values())
        if isinstance(failure, ImageRefused):
            raise UserFacingError(failure.message) from None
        raise failure
    o = spec.options
    update: dict[str, object] = {}
    if "image" in saved:
        update["image"] = str(saved["image"].path)
    if "last_frame" in saved:
        update["last_frame"] = str(saved["last_frame"].path)
    new_refs = tuple(str(saved[r].path) for r in REFERENCE_ROLES if r in saved)
    if new_refs:
        update["references"] = (*o.references, *new_refs)
    return replace(spec, options=o.model_copy(update=update), uploads={})


def fresh_inputs(before: JobSpec, after: JobSpec) -> list[str]:
    """The input files `after` holds that `before` did not (what to delete when the jobs are refused)."""
    old = _paths(before.options)
    return [p for p in _paths(after.options) if p not in old]


def _paths(o: JobOptions) -> list[str]:
    return [p for p in (o.image, o.last_frame, *o.references) if p]


def discard(paths: Iterable[str]) -> None:
    """Delete input files nobody will use (a refusal after the download)."""
    for p in paths:
        with contextlib.suppress(OSError):
            Path(p).unlink(missing_ok=True)
