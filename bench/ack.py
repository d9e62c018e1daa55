"""Interaction ack latency: N simultaneous `/veo prompt` through the fake Discord, ours beside a naive bot.

Run: ``.venv/bin/python bench/ack.py [--sizes 100 500] [--sequential 50] [--runs 3] [--flow-latency 0]``

Ours is the real bot (built as `python -m bot` builds it) answering from the store before any Flow call. The
baseline is a tiny discord.py bot in this file whose `/veo prompt` calls Flow's generate (the same FlowClient,
the same emulator) and only then answers. Every command comes from its own user, so no quota refuses one.
Latency is measured by the fake Discord: from the moment it hands INTERACTION_CREATE to the gateway writer to
the moment the callback arrives. The 3 s deadline is switched off so the whole distribution is seen; the
number over 3 s (which Discord would have dropped) is reported. A third bot answers at once without doing
anything: the floor that discord.py, aiohttp and the fake (sharing this process) impose. "first" is the
fastest answer of a burst: a late first answer means every handler waited for the others (a convoy).
``--sequential`` adds an unloaded row: commands sent one after another, each once the previous one was
answered. ``--flow-latency`` adds that many seconds to every generate call at the emulator (real Flow is not a
loopback server). Figures are medians over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import discord
from _common import BENCH_USER_BASE, bench_bot, bot_settings, header, median, percentile, quiet_logs, ratio, table
from discord import app_commands
from discord.ext import commands

DEADLINE = 3.0


@dataclass
class Latencies:
    samples: list[float]
    missing: int

    @property
    def late(self) -> int:
        return sum(1 for s in self.samples if s > DEADLINE) + self.missing


class NaiveBot(commands.Bot):
    """The baseline: answers `/veo prompt` only after Flow's generate returned."""

    def __init__(self, flow: object, project_id: str, guild_id: int, *, floor: bool = False) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.none(), help_command=None)
        self.flow = flow
        self.project_id = project_id
        self.guild_id = guild_id
        self.floor = floor

    async def setup_hook(self) -> None:
        group = app_commands.Group(name="veo", description="naive Veo")
        callback = floor_prompt if self.floor else naive_prompt
        group.add_command(app_commands.Command(name="prompt", description="Generate", callback=callback))
        guild = discord.Object(self.guild_id)
        self.tree.add_command(group, guild=guild)
        await self.tree.sync(guild=guild)


async def naive_prompt(interaction: discord.Interaction, text: str) -> None:
    """Generate first, answer second: what the 3 s interaction deadline punishes."""
    from bot.backends.flow.models import GenerationSpec

    bot: NaiveBot = interaction.client  # type: ignore[assignment]
    spec = GenerationSpec(prompt=text, aspect="landscape", model="fast", seed=1, scene_id=str(uuid.uuid4()))
    [submitted] = await bot.flow.generate(bot.project_id, [spec])  # type: ignore[attr-defined]
    await interaction.response.send_message(f"Started `{submitted.operation_name}` for: {text[:100]}")


async def floor_prompt(interaction: discord.Interaction, text: str) -> None:
    """No work at all: what discord.py, aiohttp and the fake cost per interaction on this machine."""
    await interaction.response.send_message(f"Got it: {text[:100]}")


async def burst(fd: object, n: int, *, one_at_a_time: bool = False) -> Latencies:
    """Send n commands at once (or each after the previous one was answered) and collect the latencies."""
    from tests.fakes.discord_server import FakeDiscord

    assert isinstance(fd, FakeDiscord)
    sent = []
    for i in range(n):
        sent.append(await fd.send_command("veo", "prompt", {"text": f"ack bench {i}"}, user_id=BENCH_USER_BASE + i))
        if one_at_a_time:
            await fd.wait_callback(sent[-1], timeout=30)
    await fd.wait_until(lambda: all(i.callback is not None or i.late_callbacks for i in sent), 300, "every callback")
    samples = [
        i.callback_at - i.dispatched_at for i in sent if i.callback_at is not None and i.dispatched_at is not None
    ]
    bad = [i for i in sent if i.callback is not None and i.callback.get("type") != 4]
    if bad:
        raise SystemExit(f"{len(bad)} interactions were not answered with a message")
    return Latencies(samples, n - len(samples))


async def run_ours(n: int, flow_latency: float, one_at_a_time: bool = False) -> Latencies:
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.flow_emulator import Fault, FlowEmulator

    with tempfile.TemporaryDirectory(prefix="veo-bench-ack-") as tmp_dir:
        async with FlowEmulator(video_size=4096) as emu, FakeDiscord(callback_deadline=None) as fd:
            emu.credits = 10**9
            if flow_latency:
                emu.inject("generate", Fault.slow(flow_latency), times=None)
            settings = bot_settings(Path(tmp_dir), emu, fd, veo_poll_interval=1.0)
            async with bench_bot(settings, fd) as bot:
                result = await burst(fd, n, one_at_a_time=one_at_a_time)
                jobs = (await bot.store.stats())["total"]
                if jobs != n:
                    raise SystemExit(f"ours: {jobs} jobs created for {n} commands")
            return result


async def run_naive(n: int, flow_latency: float, one_at_a_time: bool = False, *, floor: bool = False) -> Latencies:
    import aiohttp

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from tests.fakes.discord_server import FakeDiscord, run_bot
    from tests.fakes.flow_emulator import Fault, FlowEmulator

    with tempfile.TemporaryDirectory(prefix="veo-bench-ack-") as tmp_dir:
        cookie = Path(tmp_dir) / "cookie.json"
        async with FlowEmulator(video_size=4096) as emu, FakeDiscord(callback_deadline=None) as fd:
            emu.credits = 10**9
            if flow_latency:
                emu.inject("generate", Fault.slow(flow_latency), times=None)
            emu.write_cookie_file(cookie)
            async with aiohttp.ClientSession() as http:
                creds = Credentials(cookie, http, labs_base=emu.labs_base)
                await creds.load()
                flow = FlowClient(http, creds, api_base=emu.api_base, labs_base=emu.labs_base)
                async with run_bot(NaiveBot(flow, emu.add_project(), fd.guild_id, floor=floor), fd):
                    result = await burst(fd, n, one_at_a_time=one_at_a_time)
            if len(emu.calls("generate")) != (0 if floor else n):
                raise SystemExit("naive: not one generate per command")
            return result


def summary(runs: list[Latencies]) -> tuple[float, float, float, float, int]:
    return (
        median(min(r.samples) for r in runs),
        median(percentile(r.samples, 50) for r in runs),
        median(percentile(r.samples, 99) for r in runs),
        median(max(r.samples) for r in runs),
        max(r.late for r in runs),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=50, help="also send this many one at a time (0: skip)")
    parser.add_argument("--flow-latency", type=float, default=0.0, help="seconds added to each generate call")
    args = parser.parse_args()
    quiet_logs()
    header("ack latency: simultaneous /veo prompt, INTERACTION_CREATE -> callback")
    print(f"emulator generate latency: +{args.flow_latency:.2f} s; median of {args.runs} runs\n")
    rows = []
    cases = [(n, False) for n in args.sizes] + ([(args.sequential, True)] if args.sequential else [])
    for n, one_at_a_time in cases:
        label = f"{n} one at a time" if one_at_a_time else f"{n} at once"
        ours = [await run_ours(n, args.flow_latency, one_at_a_time) for _ in range(args.runs)]
        naive = [await run_naive(n, args.flow_latency, one_at_a_time) for _ in range(args.runs)]
        floor = [await run_naive(n, 0.0, one_at_a_time, floor=True) for _ in range(args.runs)]
        o, b, f = summary(ours), summary(naive), summary(floor)
        rows.append([label, "ours (store, then answer)", *(f"{x * 1000:.0f} ms" for x in o[:4]), o[4]])
        rows.append([label, "naive (generate, then answer)", *(f"{x * 1000:.0f} ms" for x in b[:4]), b[4]])
        rows.append([label, "ratio (naive / ours)", *(ratio(y, x) for x, y in zip(o[:4], b[:4], strict=True)), ""])
        rows.append([label, "floor (answer, no work)", *(f"{x * 1000:.0f} ms" for x in f[:4]), f[4]])
    print(table(["commands", "bot", "first", "p50", "p99", "max", "over 3 s"], rows))
    print("\ngoal: p99 <= 100 ms (Discord drops answers after 3 s)")


if __name__ == "__main__":
    asyncio.run(main())
