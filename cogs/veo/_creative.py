"""Iterating on a job (Retry, Edit, Extend) and animating a message's image: specs and forms.

Forms (modals) are never kept in discord.py's memory: their custom_id (`veo:edit:<job>`, `veo:animate:<token>`)
and the store hold all they need, and `Veo.on_interaction` answers the submit, so a form opened before a
restart still works after it. The image of "Animate with Veo" is downloaded while the form is open, to a file
named after the form's token, for the same reason.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserFacingError
from bot.images import SavedImage, fetch_image
from cogs.veo._checks import check_negative, check_prompt, new_seed
from cogs.veo._options import JobSpec, backend_of, discard
from storage import Job, JobOptions, JobState

if TYPE_CHECKING:
    from bot.app import VeoBot

#: Veo extends a clip of at most this many seconds (vertex-veo.md §3: 1–30 s in, about 7 s added, 37 s in all).
MAX_EXTEND_SOURCE = 30
EXTENSION_ADDS = 7
#: How long a downloaded "Animate with Veo" image waits for its form before it is deleted.
ANIMATE_TTL = 30 * 60
MAX_TEXT_INPUT = 4000


def spec_from_job(job: Job, **changes: Any) -> JobSpec:
    """The same request as `job`, with a new seed (and the given changes): what Retry and Edit queue."""
    spec = JobSpec(
        prompt=job.prompt,
        aspect=job.aspect.value,
        model=job.model.value,
        seeds=[new_seed(job.seed)],
        options=job.options,
    )
    return JobSpec(**{**spec.__dict__, **changes})


def check_inputs_kept(job: Job) -> None:
    """Retry and Edit reuse the job's input files: refuse when one is gone."""
    o = job.options
    missing = [p for p in (o.image, o.last_frame, *o.references) if p and not Path(p).is_file()]
    if missing:
        raise UserFacingError(
            f"The images of job #{job.id} are no longer kept, so it cannot be repeated; "
            "run `/veo prompt` again with the images attached."
        )
    if o.video and not Path(o.video).is_file():
        raise UserFacingError(
            f"The clip job #{job.id} extended was deleted, so it cannot be repeated; extend a newer video instead."
        )


async def clip_seconds(bot: VeoBot, job: Job) -> int:
    """How long the job's video is: its duration, or its source's length plus about 7 s for an extension."""
    total = 0
    current: Job | None = job
    for _ in range(16):  # a chain longer than Veo allows cannot exist; the bound guards against a loop
        if current is None:
            return total + 8
        parent = current.options.extends_job
        if parent is None:
            return total + current.options.duration
        total += EXTENSION_ADDS
        current = await bot.store.get_job(parent)
    return total


async def extend_spec(bot: VeoBot, job: Job) -> JobSpec:
    """A job that continues `job`'s delivered clip, or a refusal saying why it cannot."""
    if not backend_of(bot).can_extend():
        raise UserFacingError(
            "The video service this bot uses cannot extend clips; use Retry or Edit to make a new video instead."
        )
    if job.state is not JobState.DELIVERED or not job.file_path:
        raise UserFacingError(f"Job #{job.id} has no finished video to extend.")
    if not await asyncio.to_thread(Path(job.file_path).is_file):
        days = bot.settings.veo_media_retention_days
        raise UserFacingError(
            f"The video of job #{job.id} was deleted (videos are kept {days} days), so it cannot be extended; "
            "use Retry to make a new one."
        )
    length = await clip_seconds(bot, job)
    if length > MAX_EXTEND_SOURCE:
        raise UserFacingError(
            f"The video of job #{job.id} is already about {length} s long and Veo extends clips of up to "
            f"{MAX_EXTEND_SOURCE} s, so it cannot grow further; start a new video instead."
        )
    o = job.options
    options = JobOptions(
        duration=8,
        resolution=o.resolution,
        audio=o.audio,
        negative_prompt=o.negative_prompt,
        video=job.file_path,
        extends_job=job.id,
    )
    return JobSpec(
        prompt=job.prompt, aspect=job.aspect.value, model=job.model.value, seeds=[new_seed(job.seed)], options=options
    )


# ---------------------------------------------------------------------------------------------------- forms


def _unkept(modal: discord.ui.Modal) -> discord.ui.Modal:
    """A finished modal is not stored by discord.py: its submit reaches `Veo.on_interaction` instead."""
    modal.stop()
    return modal


def edit_form(job: Job, max_prompt: int) -> discord.ui.Modal:
    modal = discord.ui.Modal(title=f"Edit job #{job.id}"[:45], custom_id=f"veo:edit:{job.id}", timeout=None)
    limit = min(max_prompt, MAX_TEXT_INPUT)
    prompt = discord.ui.TextInput(
        custom_id="prompt",
        style=discord.TextStyle.paragraph,
        default=job.prompt[:limit],
        max_length=limit,
        required=True,
    )
    negative = discord.ui.TextInput(
        custom_id="negative",
        style=discord.TextStyle.paragraph,
        default=(job.options.negative_prompt or "")[:500] or None,
        max_length=500,
        required=False,
    )
    modal.add_item(discord.ui.Label(text="Prompt", component=prompt))
    modal.add_item(discord.ui.Label(text="Avoid (negative prompt)", component=negative))
    return _unkept(modal)


def animate_form(token: str, max_prompt: int) -> discord.ui.Modal:
    modal = discord.ui.Modal(title="Animate with Veo", custom_id=f"veo:animate:{token}", timeout=None)
    prompt = discord.ui.TextInput(
        custom_id="prompt",
        style=discord.TextStyle.paragraph,
        placeholder="What should happen in the video?",
        max_length=min(max_prompt, MAX_TEXT_INPUT),
        required=True,
    )
    aspect = discord.ui.Select(
        custom_id="aspect",
        required=False,
        options=[
            discord.SelectOption(label="Landscape (16:9)", value="landscape", default=True),
            discord.SelectOption(label="Portrait (9:16)", value="portrait"),
        ],
    )
    model = discord.ui.Select(
        custom_id="model",
        required=False,
        options=[
            discord.SelectOption(label="Fast", value="fast", default=True),
            discord.SelectOption(label="Quality", value="quality"),
            discord.SelectOption(label="Lite (cheapest)", value="lite"),
        ],
    )
    modal.add_item(discord.ui.Label(text="Prompt", component=prompt))
    modal.add_item(discord.ui.Label(text="Aspect", component=aspect))
    modal.add_item(discord.ui.Label(text="Model", component=model))
    return _unkept(modal)


def form_values(interaction: discord.Interaction) -> dict[str, Any]:
    """custom_id → value (text input) or values (select) of a submitted form, whatever its layout."""
    out: dict[str, Any] = {}

    def walk(items: list[Any]) -> None:
        for item in items:
            kind = item.get("type")
            if kind == 1:
                walk(item.get("components") or [])
            elif kind == 18:
                walk([item.get("component") or {}])
            elif "custom_id" in item:
                out[item["custom_id"]] = item["values"] if "values" in item else item.get("value")

    walk(list((interaction.data or {}).get("components") or []))  # type: ignore[call-overload]
    return out


def edited_spec(job: Job, values: dict[str, Any], max_prompt: int) -> JobSpec:
    prompt = check_prompt(str(values.get("prompt") or ""), max_prompt)
    negative = check_negative(values.get("negative"))
    return spec_from_job(job, prompt=prompt, options=job.options.model_copy(update={"negative_prompt": negative}))


def _choice(values: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    picked = values.get(key) or [default]
    value = picked[0] if isinstance(picked, list) else str(picked)
    if value not in allowed:
        raise UserFacingError(f"{key.title()} must be one of {', '.join(allowed)}. Nothing was queued.")
    return value


def animate_spec(image: SavedImage, values: dict[str, Any], max_prompt: int) -> JobSpec:
    from cogs.veo._checks import ASPECTS, MODELS, seeds_for

    return JobSpec(
        prompt=check_prompt(str(values.get("prompt") or ""), max_prompt),
        aspect=_choice(values, "aspect", ASPECTS, "landscape"),
        model=_choice(values, "model", MODELS, "fast"),
        seeds=seeds_for(None, 1),
        options=JobOptions(image=str(image.path)),
    )


def message_image(message: discord.Message) -> discord.Attachment | None:
    """The first attachment that says it is an image (its bytes are checked after the download)."""
    for attachment in message.attachments:
        ctype = (attachment.content_type or "").split(";")[0].strip().lower()
        if ctype.startswith("image/") or attachment.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
            return attachment
    return None


class AnimateDownloads:
    """Images of open "Animate with Veo" forms, by token: a task while downloading, a file once done."""

    def __init__(self, bot: VeoBot) -> None:
        self.bot = bot
        self._tasks: dict[str, asyncio.Task[SavedImage]] = {}

    @property
    def folder(self) -> Path:
        return self.bot.settings.veo_data_dir / "inputs"

    def start(self, url: str) -> str:
        token = uuid.uuid4().hex
        task = asyncio.ensure_future(
            fetch_image(
                self.bot.http_session,
                url,
                self.bot.settings.veo_data_dir,
                what="The picture in that message",
                stem=f"animate-{token}",
            )
        )
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())  # retrieved at submit
        self._tasks[token] = task
        asyncio.get_running_loop().call_later(ANIMATE_TTL, self._expire, token)
        return token

    def _expire(self, token: str) -> None:
        task = self._tasks.pop(token, None)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            discard([str(task.result().path)])
        elif task is not None:
            task.cancel()

    async def take(self, token: str) -> SavedImage:
        """The form's image (ImageRefused when it was no good); after a restart, the file it left on disk."""
        task = self._tasks.pop(token, None)
        if task is not None:
            return await task
        found = await asyncio.to_thread(lambda: sorted(self.folder.glob(f"animate-{token}.*")))
        if not found:
            raise UserFacingError(
                "That form has expired and its picture is gone; use Animate with Veo on the message again."
            )
        ext = found[0].suffix.lstrip(".")
        mime = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}.get(ext, "image/png")
        return SavedImage(found[0], mime)  # type: ignore[arg-type]

    async def settled(self) -> None:
        """Wait until every download in progress has ended (tests, shutdown)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
