"""The pure text functions of bot.render: escaping, truncation, Discord's 2000-character cap, markers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import render
from storage import Job, JobState, QuotaStatus

NOW = 1_800_000_000.0
USER = 1200000000000000002
MENTION = re.compile(r"<@[!&]?\d{15,20}>|@everyone|@here")


def job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": 42,
        "user_id": USER,
        "guild_id": 1100000000000000002,
        "channel_id": 1100000000000000003,
        "prompt": "a red fox running in snow",
        "aspect": "landscape",
        "model": "fast",
        "model_key": None,
        "seed": 1234,
        "group_id": None,
        "state": JobState.QUEUED,
        "scene_id": None,
        "operation_name": None,
        "media_name": None,
        "project_id": None,
        "protocol": None,
        "attempts": 0,
        "error_kind": None,
        "error_message": None,
        "file_path": None,
        "file_size": None,
        "status_message_id": None,
        "result_message_id": None,
        "delivery_nonce": None,
        "delivering_at": None,
        "notice_nonce": None,
        "notice_at": None,
        "notice_message_id": None,
        "notified_at": None,
        "created_at": NOW - 90,
        "submitted_at": None,
        "finished_at": None,
        "updated_at": NOW,
    }
    values.update(fields)
    return Job.model_validate(values)


QUOTA = QuotaStatus(used=3, limit=10, remaining=7, resets_at=NOW + 3600, active=1, max_active=2)


# --- escaping --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["@everyone hi", "@here hi", "<@1200000000000000003>", "<@!1200000000000000003>", "<@&1100000000000000002>"],
)
def test_safe_prompt_defuses_mentions(raw: str) -> None:
    assert not MENTION.search(render.safe_prompt(raw))


def test_safe_prompt_escapes_markdown_and_flattens_lines() -> None:
    text = render.safe_prompt("**bold** _it_ `code` ||spoiler|| [link](http://x)\n# heading\n> quote")
    assert "**bold**" not in text and "\\*\\*bold\\*\\*" in text
    assert "`code`" not in text and "||spoiler||" not in text and "\\[link](" in text
    assert "\n" not in text


@pytest.mark.parametrize("lead", ["# big", "> quote", "- item", "-# small", "* star"])
def test_safe_prompt_defuses_line_start_markdown(lead: str) -> None:
    assert render.safe_prompt(lead).startswith("\\")


def test_safe_prompt_truncates_before_escaping_with_an_ellipsis() -> None:
    text = render.safe_prompt("x" * 1000, 300)
    assert text == "x" * 299 + "…"
    assert render.safe_prompt("y" * 300, 300) == "y" * 300


@given(st.text(max_size=3000))
def test_safe_prompt_never_pings_and_stays_bounded(raw: str) -> None:
    text = render.safe_prompt(raw, 300)
    assert not MENTION.search(text)
    assert "\n" not in text
    assert len(text) <= 300 * 3  # escaping adds at most a backslash or a zero-width space per character


# --- the 2000-character cap and markers -------------------------------------------------------------------


def test_fit_keeps_whole_lines_and_says_what_was_left_out() -> None:
    lines = [f"line {i} " + "z" * 90 for i in range(40)]
    text = render.fit(lines)
    assert len(text) <= 2000
    kept = text.splitlines()
    assert kept[:-1] == lines[: len(kept) - 1]
    assert re.fullmatch(r"… and \d+ more line\(s\)", kept[-1])
    assert int(kept[-1].split()[2]) == len(lines) - (len(kept) - 1)
    assert render.fit(["short", "lines"]) == "short\nlines"
    assert len(render.fit(["q" * 5000])) == 2000


@given(st.lists(st.text(max_size=700), max_size=30), st.integers(min_value=50, max_value=2000))
def test_fit_never_exceeds_the_limit(lines: list[str], limit: int) -> None:
    assert len(render.fit(lines, limit)) <= limit


@pytest.mark.parametrize("prompt", ["short", "p" * 6000, "<@1200000000000000003> " * 300, "*_`|" * 1500])
def test_posted_messages_fit_and_carry_the_marker(prompt: str) -> None:
    j = job(prompt=prompt, state=JobState.DELIVERED, result_message_id=5)
    for text in (
        render.result_message(j),
        render.failure_message(j, "Flow blocked this video: it was stopped by the safety filter."),
        render.too_big_message(j, 30 * 1048576, 10 * 1048576, "https://labs.google/fx/tools/flow/project/p"),
    ):
        assert len(text) <= 2000
        assert text.splitlines()[-1] == "-# veo job 42"
        assert text.startswith(f"<@{USER}>")
        assert not MENTION.search(text.split("\n", 1)[1])  # only the requester is mentioned


def test_marker_names_the_job_exactly() -> None:
    assert render.marker(job(id=12)) == "veo job 12"
    assert not re.search(r"\bveo job 12\b", render.result_message(job(id=123)))


def test_status_message_fits_with_many_jobs_and_a_huge_prompt() -> None:
    jobs = [
        job(id=i, state=JobState.FAILED, error_kind="content_filter", error_message="X", prompt="w" * 6000)
        for i in range(1, 5)
    ]
    text = render.status_message(jobs, now=NOW)
    assert len(text) <= 2000
    assert all(f"`#{i}`" in text for i in range(1, 5))
    assert "Flow blocked this video" in text


# --- lines, estimates, overview ------------------------------------------------------------------------------


def test_job_line_per_state() -> None:
    assert render.job_line(job(), position=3, now=NOW) == "`#42` ⏳ queued — position 3"
    held = render.job_line(job(), position=1, now=NOW, pause="cookies")
    assert "on hold" in held and "cookies have expired" in held
    running = render.job_line(job(state=JobState.RUNNING, submitted_at=NOW - 75), now=NOW)
    assert running.endswith("1m 15s elapsed")
    done = render.job_line(job(state=JobState.DELIVERED, result_message_id=99), now=NOW)
    assert "[result](https://discord.com/channels/1100000000000000002/1100000000000000003/99)" in done
    failed = render.job_line(job(state=JobState.FAILED, error_kind="timed_out"), now=NOW)
    assert "did not finish this video in time" in failed
    assert "cancelled" in render.job_line(job(state=JobState.CANCELLED), now=NOW)


def test_estimates() -> None:
    queued = job()
    assert render.estimate(queued, position=1, typical=60, concurrency=5, now=NOW) == "estimate: ready in about 2m 00s"
    assert render.estimate(queued, position=6, typical=60, concurrency=5, now=NOW) == "estimate: ready in about 3m 00s"
    assert render.estimate(queued, position=1, typical=None, concurrency=5, now=NOW) == "no estimate yet"
    assert "on hold" in (render.estimate(queued, position=1, typical=60, concurrency=5, now=NOW, pause="admin") or "")
    running = job(state=JobState.RUNNING, submitted_at=NOW - 20)
    assert render.estimate(running, position=None, typical=60, concurrency=5, now=NOW) == "estimate: about 40s left"
    late = job(state=JobState.RUNNING, submitted_at=NOW - 600)
    assert render.estimate(late, position=None, typical=60, concurrency=5, now=NOW) == "estimate: any moment now"
    assert render.estimate(job(state=JobState.DELIVERED), position=None, typical=60, concurrency=5, now=NOW) is None


def test_overview_keeps_queue_and_quota_lines_when_the_job_list_is_long() -> None:
    jobs = [
        job(id=i, state=JobState.FAILED, error_kind="content_filter", error_message="X" * 150) for i in range(1, 40)
    ]
    text = render.overview(jobs, positions={}, quota=QUOTA, typical=80.0, concurrency=5, now=NOW)
    assert len(text) <= 2000
    lines = text.splitlines()
    assert lines[-1].startswith("Quota: 7 of 10 videos left") and f"<t:{int(NOW + 3600)}:R>" in lines[-1]
    assert "A video takes about 1m 20s once started." in lines
    assert "Queue: 0 waiting." in lines
    assert any(re.fullmatch(r"… and \d+ more line\(s\)", ln) for ln in lines)


def test_overview_of_a_queued_job_while_paused() -> None:
    text = render.overview(
        [job()], positions={42: 1}, quota=QUOTA, typical=None, concurrency=5, pause="verification", now=NOW
    )
    assert "position 1" in text and "waiting 1m 30s" in text and "no estimate while the queue is on hold" in text
    assert "On hold: Flow asked for a human verification" in text


def test_details() -> None:
    done = job(state=JobState.DELIVERED, result_message_id=99, finished_at=NOW, prompt="@everyone a cat")
    text = render.details(done, now=NOW)
    assert "seed: 1234" in text and "Model: fast" in text and "Result: https://discord.com/channels/" in text
    assert not MENTION.search(text)
    failed = render.details(job(state=JobState.FAILED, error_kind="content_filter", error_message="MINOR"), now=NOW)
    assert "child-safety filter" in failed and "MINOR" not in failed


def test_quota_line() -> None:
    assert render.quota_line(QUOTA) == (
        f"Quota: 7 of 10 videos left in the last 24 h; the next one frees up <t:{int(NOW + 3600)}:R>. Active: 1/2."
    )
    fresh = QuotaStatus(used=0, limit=10, remaining=10, resets_at=None, active=0, max_active=2)
    assert render.quota_line(fresh) == "Quota: 10 of 10 videos left in the last 24 h. Active: 0/2."
    admin = QuotaStatus(used=4, limit=None, remaining=None, resets_at=None, active=1, max_active=None)
    assert render.quota_line(admin).startswith("Quota: unlimited")


def test_mode_duration_resolution_and_cost_are_named_everywhere() -> None:
    from storage import JobOptions

    cases = {
        "text": JobOptions(),
        "image": JobOptions(image="/d/inputs/a.png"),
        "frames": JobOptions(image="/d/inputs/a.png", last_frame="/d/inputs/b.png"),
        "references": JobOptions(references=("/d/inputs/a.png", "/d/inputs/b.png")),
        "extension of job #7": JobOptions(video="/d/media/7.mp4", extends_job=7),
    }
    for label, options in cases.items():
        j = job(options=options.model_copy(update={"duration": 6, "resolution": "1080p"}), cost=0.72, cost_unit="usd")
        assert render.mode_label(j.options) == label
        for text in (render.status_message([j], now=NOW), render.result_message(j), render.details(j, now=NOW)):
            assert label in text and "6 s" in text and "1080p" in text and "$0.72" in text, text
        assert label in render.failure_message(j, "x")
        overview = render.overview([j], positions={}, quota=QUOTA, typical=None, concurrency=1, now=NOW)
        assert f"{label} · 6 s · 1080p · est. $0.72" in overview
    two = [job(id=1, cost=0.8, cost_unit="usd"), job(id=2, cost=0.8, cost_unit="usd")]
    assert "est. $0.80 each" in render.status_message(two, now=NOW)
    quiet = job(options=JobOptions(audio=False, negative_prompt="@everyone blur"))
    text = render.details(quiet, now=NOW)
    assert "audio: off" in text and "Avoid: " in text and "Cost: not estimated" in text
    assert not MENTION.search(text)
    assert "no audio" in render.result_message(quiet)


def test_details_timings() -> None:
    done = job(state=JobState.DELIVERED, submitted_at=NOW - 60, finished_at=NOW, created_at=NOW - 90)
    text = render.details(done, now=NOW)
    assert "waited 30s in the queue · generated in 1m 00s" in text
    running = job(state=JobState.RUNNING, submitted_at=NOW - 45, created_at=NOW - 50)
    assert "generating for 45s" in render.details(running, now=NOW)
