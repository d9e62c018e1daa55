"""`/veo-admin` end to end: our own admin check, reload (file and uploads, good and bad), credits, pause/resume,
quota overrides, the event log, and the synced command's default permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from bot.app import VeoBot
from bot.worker import PAUSE_KEY
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, running_bot
from tests.e2e.test_commands import command, prompt, reply, snapshot, videos
from tests.fakes._flow_cookies import SESSION_COOKIE, new_session_cookie
from tests.fakes.discord_server import ADMINISTRATOR, FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator

ROLE_ID = 1300000000000000001
MANAGE_GUILD = 1 << 5


async def admin(fd: FakeDiscord, sub: str, options: dict[str, Any] | None = None, **kw: Any) -> Any:
    kw.setdefault("user_id", ADMIN_ID)
    return await command(fd, sub, options, name="veo-admin", **kw)


async def upload(fd: FakeDiscord, data: bytes, filename: str = "cookie.json", **kw: Any) -> Any:
    kw.setdefault("user_id", ADMIN_ID)
    inter = await fd.send_command(
        "veo-admin", "reload", {}, attachments={"file": (filename, data, "application/json")}, **kw
    )
    return await reply(fd, inter)


def export(emu: FlowEmulator, tmp_path: Path, name: str = "export.json", **kw: Any) -> bytes:
    path = tmp_path / name
    emu.write_cookie_file(path, **kw)
    return path.read_bytes()


def secrets_of(emu: FlowEmulator) -> list[str]:
    return [emu.session_cookie, *emu._tokens]


def admin_events(events: list[Any]) -> list[tuple[str, int | None]]:
    return [(e[0], e[2]) for e in events if e[0].startswith("admin_")]


async def test_admin_command_is_its_own_top_level_command_with_default_permissions(
    bot: VeoBot, fd: FakeDiscord
) -> None:
    synced = {c["name"]: c for c in fd.commands[str(fd.guild_id)]}
    assert set(synced) >= {"veo", "veo-admin"}
    admin_cmd = synced["veo-admin"]
    assert int(admin_cmd["default_member_permissions"]) == MANAGE_GUILD
    assert admin_cmd.get("contexts") in (None, [0]) or admin_cmd.get("dm_permission") is False
    assert {o["name"] for o in admin_cmd["options"]} == {"reload", "credits", "pause", "resume", "quota"}
    assert synced["veo"].get("default_member_permissions") is None  # everyone may use /veo


async def test_non_admin_is_refused_even_when_discord_allows_everything(bot: VeoBot, fd: FakeDiscord) -> None:
    before = await snapshot(bot)
    cookie_before = bot.settings.flow_cookie_file.read_bytes()
    for sub, options in (
        ("pause", {}),
        ("resume", {}),
        ("credits", {}),
        ("reload", {}),
        ("quota", {"user": USER_ID, "daily": 99}),
    ):
        r = await admin(fd, sub, options, user_id=USER_ID, permissions=ADMINISTRATOR)
        assert r.kind == 4 and r.ephemeral, (sub, r)
        assert "Only the bot's admins" in r.content
    assert await snapshot(bot) == before
    assert bot.settings.flow_cookie_file.read_bytes() == cookie_before
    assert await bot.store.get_quota_override(USER_ID) is None
    # an upload from a non-admin is not even downloaded
    r = await upload(fd, b"[]", user_id=OTHER_ID, permissions=ADMINISTRATOR)
    assert r.ephemeral and "Only the bot's admins" in r.content
    assert fd.downloads == []


async def test_admin_by_role_id(tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path) -> None:
    fd.add_role(ROLE_ID, "veo admins")
    settings = make_settings(tmp_path, emu, fd, veo_admin_role_ids=frozenset({ROLE_ID}))
    async with running_bot(settings, fd) as bot:
        r = await admin(fd, "pause", user_id=OTHER_ID, roles=[ROLE_ID], permissions="0")
        assert r.ephemeral and "Queue paused" in r.content
        assert await bot.store.kv_get(PAUSE_KEY) == "admin"
        refused = await admin(fd, "resume", user_id=USER_ID, permissions=ADMINISTRATOR)
        assert "Only the bot's admins" in refused.content
        assert await bot.store.kv_get(PAUSE_KEY) == "admin"


async def test_reload_from_the_file_answers_with_account_details_and_no_secret(
    bot: VeoBot, fd: FakeDiscord, emu: FlowEmulator
) -> None:
    sessions = len(emu.calls("session"))
    r = await admin(fd, "reload")
    assert r.kind == 5 and r.ephemeral
    assert "Credentials reloaded" in r.content
    assert "us***@example.com" in r.content and "user@example.com" not in r.content
    assert emu.tier in r.content and str(emu.credits) in r.content
    assert "Token expires <t:" in r.content
    assert len(emu.calls("session")) > sessions  # it really refreshed
    for secret in secrets_of(emu):
        assert secret not in r.content
    assert "ya29" not in r.content
    events = await bot.store.events()
    assert [(e.kind, e.actor_id, e.detail) for e in events if e.kind == "admin_reload"] == [
        ("admin_reload", ADMIN_ID, "file")
    ]


async def test_reload_with_a_good_upload_replaces_the_file_0600(
    bot: VeoBot, fd: FakeDiscord, emu: FlowEmulator, tmp_path: Path
) -> None:
    path = bot.settings.flow_cookie_file
    old = path.read_bytes()
    data = export(emu, tmp_path, fmt="object")
    r = await upload(fd, data)
    assert r.ephemeral and "Credentials reloaded" in r.content, r.content
    assert "us***@example.com" in r.content and emu.tier in r.content and "Token expires" in r.content
    for secret in secrets_of(emu):
        assert secret not in r.content
    new = path.read_bytes()
    assert new != old
    saved = json.loads(new)
    assert isinstance(saved, dict) and saved["authorization"].startswith("Bearer ")  # the upload's shape was kept
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # the bot works with the new credentials
    await prompt(fd, "after the reload")
    await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
    assert ("admin_reload", ADMIN_ID) in admin_events(
        [(e.kind, e.job_id, e.actor_id) for e in await bot.store.events()]
    )


def _without_session(data: bytes) -> bytes:
    entries = json.loads(data)
    return json.dumps([e for e in entries if not e["name"].startswith(SESSION_COOKIE)]).encode()


def _dead_session(data: bytes) -> bytes:
    entries = json.loads(data)
    for e in entries:
        if e["name"] == SESSION_COOKIE:
            e["value"] = new_session_cookie()
    return json.dumps(entries).encode()


async def test_every_kind_of_bad_upload_is_refused_and_nothing_is_replaced(
    bot: VeoBot, fd: FakeDiscord, emu: FlowEmulator, tmp_path: Path
) -> None:
    path = bot.settings.flow_cookie_file
    good = export(emu, tmp_path)
    bad = {
        "not JSON": (b"this is not json {", "not valid JSON"),
        "no authorization": (export(emu, tmp_path, "noauth.json", with_authorization=False), "'authorization'"),
        "no session cookie": (_without_session(good), "no session cookie"),
        "dead cookies": (_dead_session(good), "expired"),
        "over 1 MiB": (b"[" + b" " * (1024 * 1024) + b"]", "over 1 MiB"),
    }
    original = path.read_bytes()
    mode = stat.S_IMODE(os.stat(path).st_mode)
    downloads = len(fd.downloads)
    for what, (data, expected) in bad.items():
        r = await upload(fd, data)
        assert r.ephemeral, what
        assert expected in r.content, (what, r.content)
        assert "Nothing was changed" in r.content, what
        assert "Credentials reloaded" not in r.content
        for secret in secrets_of(emu):
            assert secret not in r.content
        assert path.read_bytes() == original, what
        assert stat.S_IMODE(os.stat(path).st_mode) == mode
        assert not bot.credentials.cookies_expired, what
    assert len(fd.downloads) == downloads + len(bad) - 1  # the oversized one was never downloaded
    refused = [e for e in await bot.store.events() if e.kind == "admin_reload_refused"]
    assert len(refused) == len(bad) and all(e.actor_id == ADMIN_ID for e in refused)
    # the current credentials still work
    r = await admin(fd, "credits")
    assert str(emu.credits) in r.content


async def test_credits(bot: VeoBot, fd: FakeDiscord, emu: FlowEmulator) -> None:
    emu.credits = 4321
    r = await admin(fd, "credits")
    assert r.ephemeral and "4321" in r.content and emu.tier in r.content and "us***@example.com" in r.content
    assert "Queue: running" in r.content
    assert any(e.kind == "admin_credits" and e.actor_id == ADMIN_ID for e in await bot.store.events())


async def test_pause_and_resume_are_kept_in_the_store_across_a_restart(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, fd)
    async with running_bot(settings, fd) as bot:
        r = await admin(fd, "pause")
        assert r.ephemeral and "Queue paused" in r.content
        assert "already on hold" in (await admin(fd, "pause")).content
    async with running_bot(settings, fd) as bot:
        assert await bot.store.kv_get(PAUSE_KEY) == "admin"
        refused = await prompt(fd, "while paused")
        assert refused.ephemeral and "An admin paused the queue" in refused.content
        r = await admin(fd, "resume")
        assert r.ephemeral and "Queue resumed" in r.content
        assert "was not on hold" in (await admin(fd, "resume")).content
        assert not (await prompt(fd, "after resume")).ephemeral
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        kinds = [(e.kind, e.actor_id) for e in await bot.store.events()]
        assert ("admin_pause", ADMIN_ID) in kinds and ("admin_resume", ADMIN_ID) in kinds
        assert ("queue_paused", ADMIN_ID) in kinds and ("queue_resumed", ADMIN_ID) in kinds
    assert len(videos(fd)) == 1


async def test_quota_override(tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path) -> None:
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        r = await admin(fd, "quota", {"user": OTHER_ID, "daily": 1})
        assert r.ephemeral and "1 videos per 24 h" in r.content
        assert r.allowed_mentions is not None and r.allowed_mentions["parse"] == []
        assert await bot.store.get_quota_override(OTHER_ID) == 1
        assert not (await prompt(fd, "one", user_id=OTHER_ID)).ephemeral
        refused = await prompt(fd, "two", user_id=OTHER_ID)
        assert refused.ephemeral and "used all 1 of your videos" in refused.content
        status = await command(fd, "status", user_id=OTHER_ID)
        assert "0 of 1 videos left" in status.content
        r = await admin(fd, "quota", {"user": OTHER_ID, "daily": -1})
        assert "back to the default quota (10 per 24 h)" in r.content
        assert await bot.store.get_quota_override(OTHER_ID) is None
        assert not (await prompt(fd, "three", user_id=OTHER_ID)).ephemeral
        details = [e.detail for e in await bot.store.events() if e.kind == "admin_quota" and e.actor_id == ADMIN_ID]
        assert details == [f"user={OTHER_ID} daily=1", f"user={OTHER_ID} daily=None"]
