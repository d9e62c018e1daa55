"""Start-up: every cog loads, command names are unique, and global sync happens only when the set changed."""

from __future__ import annotations

from pathlib import Path

from cogs import EXTENSIONS
from tests.e2e.conftest import make_settings, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator


def walk(commands: list[dict], prefix: str = "") -> list[str]:
    names: list[str] = []
    for command in commands:
        name = f"{prefix}{command['name']}"
        names.append(name)
        subs = [o for o in command.get("options", []) if o.get("type") in (1, 2)]
        names.extend(walk(subs, name + " "))
    return names


async def test_every_cog_loads_and_names_are_unique(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        assert set(bot.extensions) == set(EXTENSIONS)
        synced = fd.commands[str(fd.guild_id)]
    names = walk(synced)
    assert len(names) == len(set(names))
    assert {"veo prompt", "veo status", "veo cancel", "veo-admin reload", "veo-admin credits"} <= set(names)
    assert {"veo-admin pause", "veo-admin resume", "veo-admin quota"} <= set(names)
    admin = next(c for c in synced if c["name"] == "veo-admin")
    assert int(admin["default_member_permissions"]) == 1 << 5  # manage_guild
    prompt = next(o for o in next(c for c in synced if c["name"] == "veo")["options"] if o["name"] == "prompt")
    options = {o["name"]: o for o in prompt["options"]}
    assert [c["value"] for c in options["aspect"]["choices"]] == ["landscape", "portrait"]
    assert [c["value"] for c in options["model"]["choices"]] == ["fast", "quality", "lite"]
    assert (options["seed"]["min_value"], options["seed"]["max_value"]) == (0, 2147483647)
    assert (options["count"]["min_value"], options["count"]["max_value"]) == (1, 4)
    assert options["text"]["required"] is True


async def test_global_sync_only_when_the_command_set_changed(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, fd, discord_guild_id=None)
    async with running_bot(settings, fd):
        pass
    assert fd.sync_calls == 1
    assert "global" in fd.commands
    async with running_bot(settings, fd):
        pass
    assert fd.sync_calls == 1  # unchanged: no second sync
