"""Text the bot posts about jobs. Pure functions of stored rows: easy to test, identical after a restart."""

from __future__ import annotations

import time
from collections.abc import Sequence

import discord

from bot.messages import failure_text, pause_text
from storage import Job, JobState, QuotaStatus

PROMPT_PREVIEW = 300
#: Recovery after a long outage looks for this marker among the bot's recent messages.
MARKER = "veo job {id}"

_STATE_LABELS: dict[JobState, str] = {
    JobState.QUEUED: "⏳ queued",
    JobState.SUBMITTING: "📤 sending to Flow",
    JobState.RUNNING: "🎬 generating",
    JobState.DOWNLOADING: "⬇️ downloading",
    JobState.DELIVERING: "📨 posting",
    JobState.DELIVERED: "✅ delivered",
    JobState.FAILED: "❌ failed",
    JobState.CANCELLED: "🚫 cancelled",
    JobState.TIMED_OUT: "⌛ timed out",
}


def safe_prompt(prompt: str, limit: int = PROMPT_PREVIEW) -> str:
    """User text made inert: no markdown, no mentions, bounded length."""
    text = prompt if len(prompt) <= limit else prompt[: limit - 1] + "…"
    text = discord.utils.escape_markdown(text, as_needed=False)
    text = discord.utils.escape_mentions(text)
    return text.replace("\n", " ")


def marker(job: Job) -> str:
    return MARKER.format(id=job.id)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def job_line(job: Job, *, position: int | None = None, now: float | None = None, pause: str | None = None) -> str:
    """One job's state for a status message."""
    now = time.time() if now is None else now
    label = _STATE_LABELS[job.state]
    extra = ""
    if job.state is JobState.QUEUED:
        extra = f" — position {position}" if position else ""
        if pause:
            extra += f" (on hold: {pause_text(pause)})"
    elif job.state is JobState.RUNNING:
        extra = f" — {duration(now - (job.submitted_at or job.created_at))} elapsed"
    elif job.state is JobState.DELIVERED and job.result_message_id:
        link = f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.result_message_id}"
        extra = f" — [result]({link})"
    elif job.state in (JobState.FAILED, JobState.TIMED_OUT):
        extra = f" — {failure_text(job.error_kind, job.error_message)}"
    return f"`#{job.id}` {label}{extra}"


def status_message(
    jobs: Sequence[Job],
    *,
    positions: dict[int, int] | None = None,
    now: float | None = None,
    pause: str | None = None,
) -> str:
    """The live status message of one `/veo prompt` (one or several jobs)."""
    first = jobs[0]
    head = (
        f"**Veo** for <@{first.user_id}> · {first.model} · {first.aspect} · "
        f"seed {', '.join(str(j.seed) for j in jobs)}\n> {safe_prompt(first.prompt)}"
    )
    lines = [job_line(j, position=(positions or {}).get(j.id), now=now, pause=pause) for j in jobs]
    return "\n".join([head, *lines])[:2000]


def result_message(job: Job) -> str:
    return (
        f"<@{job.user_id}> your video is ready · {job.model} · {job.aspect} · seed {job.seed}\n"
        f"> {safe_prompt(job.prompt)}\n-# {marker(job)}"
    )[:2000]


def failure_message(job: Job, text: str) -> str:
    return (f"<@{job.user_id}> your video could not be made: {text}\n> {safe_prompt(job.prompt)}\n-# {marker(job)}")[
        :2000
    ]


def too_big_message(job: Job, size: int, limit: int, link: str) -> str:
    return (
        f"<@{job.user_id}> your video is ready · {job.model} · {job.aspect} · seed {job.seed}\n"
        f"> {safe_prompt(job.prompt)}\n"
        f"The file is {size / 1048576:.1f} MiB, over this channel's {limit / 1048576:.0f} MiB upload limit, "
        f"so here is a link instead (open it with the team's Flow account): {link}\n-# {marker(job)}"
    )[:2000]


def quota_line(quota: QuotaStatus) -> str:
    if quota.limit is None:
        return "Quota: unlimited (admin)."
    text = f"Quota: {quota.remaining} of {quota.limit} videos left in the last 24 h"
    if quota.resets_at and quota.remaining is not None and quota.remaining < quota.limit:
        text += f"; the next one frees up <t:{int(quota.resets_at)}:R>"
    return text + f". Active: {quota.active}/{quota.max_active}."
