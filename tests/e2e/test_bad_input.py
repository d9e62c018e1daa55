"""Bad input through `/veo prompt` on the fake Discord: accepted and made inert, or refused ephemerally.

One running bot serves every hypothesis example (quota and active limits raised so that only the input decides);
the backend (Flow, then Vertex AI: the `gen` fixture) is kept busy with a never-finishing generation so the
examples exercise the command, not the pipeline. Cookie uploads are Flow's alone.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import VeoBot
from storage import JobState
from tests.e2e.backends import Gen
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.flow_emulator import FlowEmulator

EPHEMERAL = 64
SEED_MAX = 2_147_483_647
MAX_PROMPT = 2000
ROLE_ID = 1300000000000000001
RAW_MENTION = re.compile(r"@(everyone|here)\b")
ANY_MENTION = re.compile(r"<@[!&]?(\d+)>")
#: What the bot documents as rendering as nothing (whitespace, zero-width, soft hyphen, BOM).
ZERO_WIDTH = "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"
#: Words that only an unexpected error or a leaked traceback would put in a user-facing reply.
NOT_FOR_USERS = ("Traceback", 'File "', "Exception", "Error:", "CommandInvokeError", "TransformerError", "Sorry")

FRAGMENTS = [
    "@everyone",
    "@here",
    f"<@{OTHER_ID}>",
    f"<@!{OTHER_ID}>",
    f"<@&{ROLE_ID}>",
    "**bold**",
    "__under__",
    "~~strike~~",
    "||spoiler||",
    "`code`",
    "```py\nprint(1)\n```",
    "> quote",
    "# heading",
    "-# small",
    "[click](https://example.com)",
    "\\",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2067",  # RIGHT-TO-LEFT ISOLATE
    "\u2069",
    "مرحبا",
    "שלום",
    "日本語のプロンプト",
    "👍🏽",
    "🏳️‍🌈",
    "👨‍👩‍👧‍👦",
    "e\u0301\u0301\u0301",
    "a red fox",
]
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
PADDING = st.sampled_from([0, 0, 0, 1990, MAX_PROMPT, MAX_PROMPT + 1, 6000, 6001, 10_000])


@st.composite
def prompts(draw: st.DrawFn) -> str:
    """Hostile prompts: mentions, markdown, bidi and zero-width characters, emoji, up to 10k characters."""
    parts = draw(st.lists(st.sampled_from(FRAGMENTS) | TEXT, max_size=8))
    pad = draw(PADDING)
    if pad:
        parts.insert(draw(st.integers(0, len(parts))), "x" * pad)
    return "".join(parts)


def assert_clear_refusal(cb: dict[str, Any]) -> str:
    """An ephemeral, short message in words, with no trace of an exception."""
    assert cb["type"] == 4, cb
    data = cb["data"]
    assert (data.get("flags") or 0) & EPHEMERAL, data
    content = data.get("content") or ""
    assert 10 < len(content) <= 2000
    for word in NOT_FOR_USERS:
        assert word not in content, content
    assert not RAW_MENTION.search(content)
    return content


def assert_inert(content: str, allowed_mentions: dict[str, Any] | None, *, pingable: set[int]) -> None:
    """Content that cannot ping anyone outside `pingable` and shows no raw @everyone/@here."""
    assert allowed_mentions is not None, "no allowed_mentions: Discord would parse every mention"
    assert allowed_mentions.get("parse") == []
    assert not allowed_mentions.get("roles")
    assert {int(u) for u in allowed_mentions.get("users") or []} <= pingable
    assert not RAW_MENTION.search(content), content
    assert {int(m) for m in ANY_MENTION.findall(content)} <= {USER_ID}, content


async def job_total(bot: VeoBot) -> int:
    return (await bot.store.stats())["total"]


@pytest.fixture
async def busy_bot(gen: Gen, fd: FakeDiscord) -> AsyncIterator[VeoBot]:
    """A bot whose limits never refuse, with its one backend slot held by a generation that never ends."""
    gen.ends("", "stuck")
    fd.add_role(ROLE_ID, "team")
    settings = gen.settings(fd, veo_daily_quota=100_000, veo_max_active_per_user=100_000, max_concurrent=1)
    async with running_bot(settings, fd) as bot:
        yield bot


async def prompt(fd: FakeDiscord, options: dict[str, Any], *, validate: bool = False) -> tuple[Interaction, dict]:
    i = await fd.send_command("veo", "prompt", options, user_id=USER_ID, validate=validate)
    return i, await fd.wait_callback(i)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=prompts())
async def test_hostile_prompts_are_made_inert_or_refused(busy_bot: VeoBot, fd: FakeDiscord, text: str) -> None:
    before = await job_total(busy_bot)
    _, cb = await prompt(fd, {"text": text})
    after = await job_total(busy_bot)
    stripped = text.strip()
    ephemeral = bool((cb["data"].get("flags") or 0) & EPHEMERAL)
    if ephemeral:
        assert_clear_refusal(cb)
        assert after == before, "a refused prompt created a job"
    else:
        assert cb["type"] == 4
        assert after == before + 1
        content = cb["data"]["content"]
        assert_inert(content, cb["data"].get("allowed_mentions"), pingable=set())
        lines = content.split("\n")
        assert len(lines) == 3, "the prompt broke out of its quote line"
        assert lines[1].startswith("> ")
        (job,) = await busy_bot.store.recent_user_jobs(USER_ID, limit=1)
        assert job.prompt == stripped
        assert f"`#{job.id}`" in lines[2]
    # The documented result where it is unambiguous.
    if len(stripped) > MAX_PROMPT or not stripped.strip(ZERO_WIDTH + " \t\r\n"):
        assert ephemeral, f"should be refused: {len(stripped)} chars"
    elif any(c.isalnum() for c in stripped):
        assert not ephemeral, f"should be accepted: {cb['data'].get('content')}"


REFUSED_PROMPTS = ["", "   \n\t  ", "\u200b\u200c\u200d\u2060\ufeff", "x" * (MAX_PROMPT + 1), "x" * 10_000]


async def test_refused_prompts_say_why(busy_bot: VeoBot, fd: FakeDiscord) -> None:
    """Empty, blank, zero-width only, over the limit, 10k characters (one bot for all of them)."""
    for text in REFUSED_PROMPTS:
        _, cb = await prompt(fd, {"text": text})
        content = assert_clear_refusal(cb)
        if len(text) > MAX_PROMPT:
            assert str(MAX_PROMPT) in content and str(len(text)) in content, content
        else:
            assert "empty" in content.lower(), content
    assert await job_total(busy_bot) == 0


async def test_prompt_of_only_bidi_controls_is_refused_as_empty(busy_bot: VeoBot, fd: FakeDiscord) -> None:
    _, cb = await prompt(fd, {"text": "\u202e\u2067\u2069\u202a\u202c"})
    assert "empty" in assert_clear_refusal(cb).lower()
    assert await job_total(busy_bot) == 0


async def test_hostile_prompt_stays_inert_in_every_later_message(gen: Gen, fd: FakeDiscord) -> None:
    """The result post, the failure notice, the status edits, Details and `/veo status job:` escape it too."""
    nasty = f"@everyone @here <@{OTHER_ID}> <@&{ROLE_ID}> **b** `c` ||s||\n> q\n# h "
    longest = (nasty * 40)[:MAX_PROMPT].strip()  # escaping doubles it: the 2000-character cap must still hold
    gen.ends("FAILME", "failed")
    fd.add_role(ROLE_ID, "team")
    async with running_bot(gen.settings(fd), fd) as bot:
        for text in (longest, nasty + " FAILME"):
            _, cb = await prompt(fd, {"text": text}, validate=True)
            assert not (cb["data"].get("flags") or 0) & EPHEMERAL
        await fd.wait_until(lambda: len(fd.messages) >= 2, timeout=15, what="result and failure posted")
        await bot.worker.drain()
        jobs = await bot.store.user_jobs(USER_ID)
        assert sorted(j.state.value for j in jobs) == [JobState.DELIVERED.value, JobState.FAILED.value]
        private: list[str] = []
        for job in jobs:
            i = await fd.send_command("veo", "status", {"job": job.id}, user_id=USER_ID)
            private.append((await fd.wait_callback(i))["data"]["content"])
            message_id = job.result_message_id or job.notice_message_id
            if message_id:
                i = await fd.send_component(f"veo:details:{job.id}", user_id=USER_ID, message_id=message_id)
                private.append((await fd.wait_callback(i))["data"]["content"])
    assert len(private) >= 3
    for content in private:
        assert "**b**" not in content and "<@&" not in content.replace("<@\u200b&", "")
        assert not RAW_MENTION.search(content) and {int(m) for m in ANY_MENTION.findall(content)} <= {USER_ID}
    for msg in fd.messages:
        assert_inert(msg.content, msg.allowed_mentions, pingable={USER_ID})
        assert msg.pinged_user_ids == {USER_ID}
        assert not msg.pinged_role_ids and not msg.pings_everyone
    for _, edit in fd.edits:
        if "content" in edit:
            assert_inert(edit["content"], edit.get("allowed_mentions"), pingable=set())


VALID_OPTIONS: list[tuple[dict[str, Any], list[int] | None]] = [
    ({"seed": 0}, [0]),
    ({"seed": SEED_MAX}, [SEED_MAX]),
    ({"count": 1, "seed": 7}, [7]),
    ({"count": 4, "seed": 10}, [10, 11, 12, 13]),
    ({"count": 4, "seed": SEED_MAX}, None),
    ({"count": 4}, None),
    ({"aspect": "portrait", "model": "quality"}, None),
]


async def test_edge_values_inside_the_ranges_are_accepted(busy_bot: VeoBot, fd: FakeDiscord) -> None:
    """Seed 0 and 2147483647, count 1 and 4, every aspect and model (one bot for all of them)."""
    seen: set[int] = set()
    for options, seeds in VALID_OPTIONS:
        _, cb = await prompt(fd, {"text": "a lighthouse", **options}, validate=True)
        assert cb["type"] == 4 and not (cb["data"].get("flags") or 0) & EPHEMERAL, (options, cb)
        jobs = [j for j in await busy_bot.store.recent_user_jobs(USER_ID, limit=100) if j.id not in seen]
        jobs.sort(key=lambda j: j.id)
        seen.update(j.id for j in jobs)
        assert len(jobs) == options.get("count", 1), options
        assert all(0 <= j.seed <= SEED_MAX for j in jobs), options
        assert len({j.seed for j in jobs}) == len(jobs), options
        if seeds is not None:
            assert [j.seed for j in jobs] == seeds
        assert {j.aspect for j in jobs} == {options.get("aspect", "landscape")}
        assert {j.model for j in jobs} == {options.get("model", "fast")}


BAD_OPTIONS: list[dict[str, Any]] = [
    {"seed": -1},
    {"seed": SEED_MAX + 1},
    {"seed": 2**63},
    {"count": 0},
    {"count": 5},
    {"count": -3},
    {"aspect": "square"},
    {"aspect": ""},
    {"model": "ultra"},
    {"model": "FAST"},
]


def test_the_fake_refuses_out_of_range_values_like_discord() -> None:
    """The premise: Discord's client never sends these, so only a forged or stale client could."""
    from tests.fakes import _discord_commands as cmds

    defs = {
        "seed": {"name": "seed", "type": cmds.INTEGER, "min_value": 0, "max_value": SEED_MAX},
        "count": {"name": "count", "type": cmds.INTEGER, "min_value": 1, "max_value": 4},
        "aspect": {"name": "aspect", "type": cmds.STRING, "choices": [{"value": "landscape"}, {"value": "portrait"}]},
        "model": {"name": "model", "type": cmds.STRING, "choices": [{"value": "fast"}, {"value": "quality"}]},
    }
    for options in BAD_OPTIONS:
        ((name, value),) = options.items()
        with pytest.raises(ValueError, match="option"):
            cmds.check_value(defs[name], value)


async def test_values_discord_would_never_send_are_refused_clearly(busy_bot: VeoBot, fd: FakeDiscord) -> None:
    """All values at once (the slowest outcome, no reply, costs one 3 s deadline, not one per value)."""
    sent = [
        (
            options,
            await fd.send_command(
                "veo", "prompt", {"text": "a lighthouse", **options}, user_id=USER_ID, validate=False
            ),
        )
        for options in BAD_OPTIONS
    ]
    with contextlib.suppress(TimeoutError):
        await fd.wait_until(lambda: all(i.callback is not None for _, i in sent), timeout=fd.callback_deadline or 3)
    problems: list[str] = []
    for options, i in sent:
        if i.callback is None:
            problems.append(f"{options}: no reply within Discord's 3 s deadline")
            continue
        try:
            assert_clear_refusal(i.callback)
        except AssertionError as err:
            problems.append(f"{options}: {str(err).splitlines()[0][:120]}")
    total = await job_total(busy_bot)
    assert not problems and total == 0, f"{total} job(s) created; " + "; ".join(problems)


async def test_unexpected_error_gets_an_ephemeral_apology_with_an_error_id(busy_bot: VeoBot, fd: FakeDiscord) -> None:
    fd.inject("POST", "/interactions/{interaction_id}/{interaction_token}/callback", 400, times=1)
    i = await fd.send_command("veo", "status", {}, user_id=USER_ID)
    cb = await fd.wait_callback(i, timeout=fd.callback_deadline or 3)
    assert cb["type"] == 4 and cb["data"]["flags"] & EPHEMERAL
    content = cb["data"]["content"]
    assert re.search(r"error id `[0-9a-f]{8}`", content), content
    assert "Traceback" not in content and "HTTPException" not in content


async def test_status_and_cancel_with_absurd_job_ids(busy_bot: VeoBot, fd: FakeDiscord) -> None:
    for command, job in (("status", 0), ("status", -5), ("cancel", 2**62), ("cancel", -1)):
        i = await fd.send_command("veo", command, {"job": job}, user_id=USER_ID, validate=False)
        content = assert_clear_refusal(await fd.wait_callback(i))
        assert "/veo status" in content
    assert await job_total(busy_bot) == 0


def bad_uploads(emu: FlowEmulator, tmp_path: Path) -> dict[str, bytes]:
    """Broken cookie exports an admin might upload; each carries tagged values that must never be echoed."""
    good = tmp_path / "good-upload.json"
    emu.write_cookie_file(good)
    export = json.loads(good.read_text())
    for entry in export:
        if entry["name"] != "authorization":
            entry["value"] = "SECRETV" + entry["value"][:40]
    stranger = [dict(e) for e in export]  # well formed, but Flow does not know this session
    no_auth = [e for e in export if e["name"] != "authorization"]
    wrong_type = [dict(e, value=["SECRETLIST"]) if e["name"] == "_ga" else e for e in export]
    return {
        "binary": b"\x00\x01SECRETBIN\xff\xfe" + bytes(range(256)),
        "random-json": json.dumps({"a": [1, {"b": "SECRETJSON"}]}).encode(),
        "no-authorization": json.dumps(no_auth).encode(),
        "wrong-type": json.dumps(wrong_type).encode(),
        "too-big": json.dumps([{"name": "x", "value": "SECRETBIG" + "x" * (1024 * 1024)}]).encode(),
        "unknown-session": json.dumps(stranger).encode(),
    }


async def test_bad_cookie_uploads_are_refused_and_change_nothing(
    bot: VeoBot, emu: FlowEmulator, fd: FakeDiscord, tmp_path: Path, cookie_file: Path
) -> None:
    before = cookie_file.read_bytes()
    for name, blob in bad_uploads(emu, tmp_path).items():
        i = await fd.send_command(
            "veo-admin", "reload", user_id=ADMIN_ID, attachments={"file": ("cookie.json", blob, "application/json")}
        )
        cb = await fd.wait_callback(i)
        assert cb["type"] == 5 and cb["data"]["flags"] & EPHEMERAL
        await fd.wait_until(lambda i=i: i.followups, what=f"answer to the {name} upload")
        answer = i.followups[0]
        assert answer.ephemeral, name
        assert "nothing was changed" in answer.content.lower(), (name, answer.content)
        assert "SECRET" not in answer.content and "Traceback" not in answer.content, (name, answer.content)
        assert cookie_file.read_bytes() == before, f"the {name} upload changed the cookie file"
        assert await bot.worker.paused() is None, f"the {name} upload put the queue on hold"
    # The old credentials still work.
    i = await fd.send_command("veo", "prompt", {"text": "still working"}, user_id=USER_ID)
    await fd.wait_callback(i)
    await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)


async def test_admin_quota_out_of_range_is_refused(bot: VeoBot, fd: FakeDiscord) -> None:
    problems: list[str] = []
    for daily in (-2, 1001, 10**12):
        i = await fd.send_command(
            "veo-admin", "quota", {"user": OTHER_ID, "daily": daily}, user_id=ADMIN_ID, validate=False
        )
        try:
            assert_clear_refusal(await fd.wait_callback(i))
        except AssertionError as err:
            problems.append(f"daily={daily}: {str(err).splitlines()[0][:100]}")
        override = await bot.store.get_quota_override(OTHER_ID)
        if override is not None:
            problems.append(f"daily={daily}: override {override} stored")
    assert not problems, "; ".join(problems)
