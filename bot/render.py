"""Text the bot posts about jobs. Pure functions of stored rows: easy to test, identical after a restart."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence

import discord

from bot.messages import failure_text, pause_text
from storage import Job, JobOptions, JobState, QuotaStatus

PROMPT_PREVIEW = 300
#: Discord's limit on message content.
MAX_CONTENT = 2000
#: A visible tag for readers and tests; recovery does not trust it (a quoted prompt can contain it).
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
#: Markdown that only counts at the start of a line (headers, quotes, lists, subtext).
_LINE_START = ("#", ">", "-", "*", "+")


def safe_prompt(prompt: str, limit: int = PROMPT_PREVIEW) -> str:
    """User text made inert: one line, no markdown, no mentions, at most `limit` characters before escaping."""
    text = " ".join(prompt.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = discord.utils.escape_markdown(text, as_needed=False)
    text = discord.utils.escape_mentions(text)
    # A mention cut short by the truncation ("<@&12…") escapes escape_mentions: break every "<@" left.
    text = re.sub("<@(?!\u200b)", "<@\u200b", text)
    if text.startswith(_LINE_START):
        text = "\\" + text
    return text


def fit(lines: Sequence[str], limit: int = MAX_CONTENT) -> str:
    """Join whole lines within Discord's limit; what does not fit is summarised, never cut mid-line."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        summary = f"… and {len(lines) - i} more line(s)"
        cost = len(line) + (1 if out else 0)
        if used + cost + 1 + len(summary) > limit:
            return "\n".join([*out, summary]) if out else line[: limit - 1] + "…"
        out.append(line)
        used += cost
    return text[:limit]  # not reached: the whole text did not fit


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


def result_link(job: Job) -> str | None:
    if job.state is not JobState.DELIVERED or not job.result_message_id:
        return None
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.result_message_id}"


def mode_label(options: JobOptions) -> str:
    """What kind of generation a job is, in words: text, image, frames, references, extension of job N."""
    if options.video is not None or options.extends_job is not None:
        return f"extension of job #{options.extends_job}" if options.extends_job else "extension"
    if options.references:
        return "references" if len(options.references) > 1 else "reference"
    if options.last_frame is not None:
        return "frames"
    if options.image is not None:
        return "image"
    return "text"


def cost_text(job: Job) -> str | None:
    """The job's estimated cost (USD on Vertex AI, credits on Flow); None when nothing was estimated."""
    if job.cost <= 0:
        return None
    if job.cost_unit == "usd":
        return f"est. ${job.cost:.2f}"
    return f"est. {job.cost:g} credits"


def spec(job: Job) -> str:
    """Mode, model, aspect, duration, resolution and audio, on one line."""
    opts = job.options
    audio = "" if opts.audio else " · no audio"
    return f"{mode_label(opts)} · {job.model} · {job.aspect} · {opts.duration} s · {opts.resolution}{audio}"


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
    elif (link := result_link(job)) is not None:
        extra = f" — [result]({link})"
    elif job.state in (JobState.FAILED, JobState.TIMED_OUT):
        extra = f" — {failure_text(job.error_kind, job.error_message, backend=job.backend or 'flow')}"
    return f"`#{job.id}` {label}{extra}"


def estimate(
    job: Job,
    *,
    position: int | None,
    typical: float | None,
    concurrency: int,
    now: float,
    pause: str | None = None,
) -> str | None:
    """A rough ETA from recent generation times: rounds of `concurrency` ahead in the queue, plus one."""
    if job.state is JobState.QUEUED:
        if pause:
            return "no estimate while the queue is on hold"
        if typical is None:
            return "no estimate yet"
        rounds = math.ceil((position or 1) / max(1, concurrency))
        return f"estimate: ready in about {duration(typical * (rounds + 1))}"
    if job.state in (JobState.SUBMITTING, JobState.RUNNING) and typical is not None:
        left = typical - (now - (job.submitted_at or now))
        return f"estimate: about {duration(left)} left" if left >= 1 else "estimate: any moment now"
    return None


def status_message(
    jobs: Sequence[Job],
    *,
    positions: dict[int, int] | None = None,
    now: float | None = None,
    pause: str | None = None,
) -> str:
    """The live status message of one `/veo prompt` (one or several jobs)."""
    first = jobs[0]
    cost = cost_text(first)
    cost = f" · {cost}{' each' if len(jobs) > 1 else ''}" if cost else ""
    head = (
        f"**Veo** for <@{first.user_id}> · {spec(first)} · "
        f"seed {', '.join(str(j.seed) for j in jobs)}{cost}\n> {safe_prompt(first.prompt)}"
    )
    lines = [job_line(j, position=(positions or {}).get(j.id), now=now, pause=pause) for j in jobs]
    return fit([head, *lines])


def overview(
    jobs: Sequence[Job],
    *,
    positions: dict[int, int],
    quota: QuotaStatus,
    typical: float | None,
    concurrency: int,
    pause: str | None = None,
    now: float | None = None,
    queued: int | None = None,
    spend: float | None = None,
) -> str:
    """The `/veo status` answer: the user's jobs, the queue, an estimate, the quota and (Vertex AI) the spend."""
    now = time.time() if now is None else now
    lines = ["**Your Veo jobs**"]
    if not jobs:
        lines.append("No jobs yet. Start one with `/veo prompt`.")
    for job in jobs:
        position = positions.get(job.id)
        line = job_line(job, position=position, now=now, pause=pause)
        opts, cost = job.options, cost_text(job)
        line += f" · {mode_label(opts)} · {opts.duration} s · {opts.resolution}" + (f" · {cost}" if cost else "")
        if job.state is JobState.QUEUED:
            line += f" · waiting {duration(now - job.created_at)}"
        eta = estimate(job, position=position, typical=typical, concurrency=concurrency, now=now, pause=pause)
        if eta:
            line += f" · {eta}"
        lines.append(line)
    waiting = len(positions) if queued is None else queued
    footer = ["", f"Queue: {waiting} waiting." + (f" On hold: {pause_text(pause)}" if pause else "")]
    if typical is not None:
        footer.append(f"A video takes about {duration(typical)} once started.")
    footer.append(quota_line(quota))
    if spend is not None:
        footer.append(f"Your estimated spend this month: ${spend:.2f}.")
    # the queue and quota lines matter most: keep them whole, shorten the job list instead
    room = MAX_CONTENT - len("\n".join(footer)) - 1
    return fit(lines, room) + "\n" + "\n".join(footer)


def details(job: Job, *, position: int | None = None, now: float | None = None) -> str:
    """One job in full, for `/veo status job` and the Details button."""
    opts = job.options
    lines = [
        f"**Job #{job.id}** — {job_line(job, position=position, now=now)}",
        f"Model: {job.model} · aspect: {job.aspect} · seed: {job.seed}",
        f"Mode: {mode_label(opts)} · duration: {opts.duration} s · resolution: {opts.resolution} · "
        f"audio: {'on' if opts.audio else 'off'}",
        f"Prompt: {safe_prompt(job.prompt, 1000)}",
    ]
    if opts.negative_prompt:
        lines.append(f"Avoid: {safe_prompt(opts.negative_prompt, 500)}")
    if inputs := _inputs(opts):
        lines.append(f"Inputs: {inputs}")
    cost = cost_text(job)
    lines.append(f"Cost: {cost}" + (f" ({job.backend})" if job.backend else "") if cost else "Cost: not estimated")
    lines.append(_timings(job, now=time.time() if now is None else now))
    if (link := result_link(job)) is not None:
        lines.append(f"Result: {link}")
    if job.state in (JobState.FAILED, JobState.TIMED_OUT):
        lines.append(f"Why: {failure_text(job.error_kind, job.error_message, backend=job.backend or 'flow')}")
    return fit(lines)


def _inputs(opts: JobOptions) -> str:
    parts = []
    if opts.image:
        parts.append("first frame")
    if opts.last_frame:
        parts.append("last frame")
    if opts.references:
        parts.append(f"{len(opts.references)} reference image{'s' if len(opts.references) > 1 else ''}")
    if opts.extends_job:
        parts.append(f"the video of job #{opts.extends_job}")
    return ", ".join(parts)


def _timings(job: Job, *, now: float) -> str:
    """Created, started and finished times, and how long the job waited and took."""
    text = f"Created <t:{int(job.created_at)}:R>"
    if job.submitted_at:
        text += f" · waited {duration(job.submitted_at - job.created_at)} in the queue"
        if job.finished_at:
            text += f" · generated in {duration(job.finished_at - job.submitted_at)}"
        elif not job.terminal:
            text += f" · generating for {duration(now - job.submitted_at)}"
    if job.finished_at:
        text += f" · finished <t:{int(job.finished_at)}:R>"
    return text


def result_message(job: Job) -> str:
    return fit(
        [f"<@{job.user_id}> your video is ready · {_summary(job)}", f"> {safe_prompt(job.prompt)}", f"-# {marker(job)}"]
    )


def _summary(job: Job) -> str:
    cost = cost_text(job)
    return f"{spec(job)} · seed {job.seed}" + (f" · {cost}" if cost else "")


def failure_message(job: Job, text: str) -> str:
    return fit(
        [
            f"<@{job.user_id}> your video could not be made: {text}",
            f"> {safe_prompt(job.prompt)}",
            f"-# {spec(job)} · seed {job.seed}",
            f"-# {marker(job)}",
        ]
    )


def too_big_message(job: Job, size: int, limit: int, link: str | None) -> str:
    where = (
        f"so here is a link instead (open it with the team's Flow account): {link}"
        if link
        else "so it could not be posted here; an admin can find it in the bot's media folder"
    )
    return fit(
        [
            f"<@{job.user_id}> your video is ready · {_summary(job)}",
            f"> {safe_prompt(job.prompt)}",
            f"The file is {size / 1048576:.1f} MiB, over this channel's {limit / 1048576:.0f} MiB upload limit, "
            + where,
            f"-# {marker(job)}",
        ]
    )


def quota_line(quota: QuotaStatus) -> str:
    if quota.limit is None:
        return f"Quota: unlimited (admin). Active: {quota.active}."
    text = f"Quota: {quota.remaining} of {quota.limit} videos left in the last 24 h"
    if quota.resets_at and quota.remaining is not None and quota.remaining < quota.limit:
        text += f"; the next one frees up <t:{int(quota.resets_at)}:R>"
    return text + f". Active: {quota.active}/{quota.max_active}."
