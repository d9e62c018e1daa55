"""Delivery overhead: from the Flow status call that reports success to the video posted at Discord.

Run: ``.venv/bin/python bench/delivery.py [--sizes-mb 4 40] [--runs 5]``

Ours is the real bot (in this process, as `python -m bot` builds it): the worker streams the video to disk and
posts the file with discord.py. The baseline, in this file, is the naive design with the same FlowClient and a
plain discord.py client: on success it reads the whole body into memory and posts those bytes. Each design
runs against its own fresh emulator and fake Discord (the guild is boosted to tier 2, a 50 MiB upload limit,
so 40 MB is uploaded as a file, not replaced by a link). The start is the emulator's arrival time of the status
request whose answer said SUCCESSFUL; the end is the fake Discord's creation time of the message (both on
`time.time`), so upload time is included. Medians over ``--runs`` videos per size.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, MiB, bench_bot, bot_settings, header, median, quiet_logs, ratio, table

POLLS = 2
POLL_INTERVAL = 0.25


def success_call_at(emu: object, operation_name: str) -> float:
    """Arrival time of the status request that first answered SUCCESSFUL for this operation."""
    calls = [c for c in emu.calls("status") if operation_name in c.text]  # type: ignore[attr-defined]
    return calls[POLLS - 1].at


async def run_ours(sizes: list[int], runs: int) -> dict[int, list[float]]:
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.flow_emulator import FlowEmulator

    out: dict[int, list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="veo-bench-delivery-") as tmp_dir:
        async with FlowEmulator(polls_to_finish=POLLS) as emu, FakeDiscord(clock=time.time) as fd:
            fd.guild_premium_tier = 2
            settings = bot_settings(Path(tmp_dir), emu, fd, veo_poll_interval=POLL_INTERVAL)
            async with bench_bot(settings, fd) as bot:
                user = BENCH_USER_BASE
                for _ in range(runs):
                    for size in sizes:
                        emu.video_size = size
                        user += 1
                        seen = len(fd.messages)
                        i = await fd.send_command("veo", "prompt", {"text": f"delivery {size}"}, user_id=user)
                        await fd.wait_callback(i)
                        msg = await fd.wait_for_message(
                            lambda m, s=seen: m in fd.messages[s:] and bool(m.attachments), timeout=120
                        )
                        [job] = await bot.store.user_jobs(user)
                        if job.backend != "flow" or job.backend_ref is None:
                            raise SystemExit("ours: the job was not taken by Flow")
                        if len(msg.attachments[0][1]) != size:
                            raise SystemExit("ours: posted bytes differ in size")
                        operation = json.loads(job.backend_ref)["operation_name"]
                        out[size].append(msg.created_at - success_call_at(emu, operation))
                        await bot.worker.drain()
    return out


async def naive_deliver(flow: object, http: object, client: object, project: str, channel_id: int) -> None:
    """Generate, poll one operation until it succeeds, read the whole video into memory, post the bytes."""
    import discord

    from bot.backends.flow.models import GenerationSpec, GenerationState

    spec = GenerationSpec(prompt="naive", aspect="landscape", model="fast", seed=1, scene_id=str(uuid.uuid4()))
    [sub] = await flow.generate(project, [spec])  # type: ignore[attr-defined]
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        [result] = await flow.check_status([sub.poll_ref()])  # type: ignore[attr-defined]
        if result.state is GenerationState.SUCCEEDED:
            break
    async with http.get(result.fife_url) as resp:  # type: ignore[attr-defined]
        resp.raise_for_status()
        body = await resp.read()
    channel = client.get_partial_messageable(channel_id)  # type: ignore[attr-defined]
    await channel.send("your video is ready", file=discord.File(io.BytesIO(body), filename="veo.mp4"))


async def run_naive(sizes: list[int], runs: int) -> dict[int, list[float]]:
    import aiohttp
    import discord

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from tests.fakes.discord_server import FakeDiscord, run_bot
    from tests.fakes.flow_emulator import FlowEmulator

    out: dict[int, list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="veo-bench-delivery-") as tmp_dir:
        cookie = Path(tmp_dir) / "cookie.json"
        async with FlowEmulator(polls_to_finish=POLLS) as emu, FakeDiscord(clock=time.time) as fd:
            fd.guild_premium_tier = 2
            emu.write_cookie_file(cookie)
            async with aiohttp.ClientSession() as http:
                creds = Credentials(cookie, http, labs_base=emu.labs_base)
                await creds.load()
                flow = FlowClient(http, creds, api_base=emu.api_base, labs_base=emu.labs_base)
                project = emu.add_project()
                async with run_bot(discord.Client(intents=discord.Intents.none()), fd) as client:
                    for _ in range(runs):
                        for size in sizes:
                            emu.video_size = size
                            seen = len(fd.messages)
                            await naive_deliver(flow, http, client, project, fd.channel_id)
                            msg = fd.messages[seen]
                            name = list(emu.generations)[-1]
                            if len(msg.attachments[0][1]) != size:
                                raise SystemExit("naive: posted bytes differ in size")
                            out[size].append(msg.created_at - success_call_at(emu, name))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[4, 40])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    quiet_logs()
    header("delivery overhead: success status call -> message posted")
    sizes = [int(s * 1_000_000) for s in args.sizes_mb]
    ours = await run_ours(sizes, args.runs)
    naive = await run_naive(sizes, args.runs)
    rows = []
    for size in sizes:
        o, n = median(ours[size]), median(naive[size])
        rows.append(
            [
                f"{size / 1_000_000:g} MB ({size / MiB:.1f} MiB)",
                f"{o * 1000:.0f} ms",
                f"{max(ours[size]) * 1000:.0f} ms",
                f"{n * 1000:.0f} ms",
                f"{max(naive[size]) * 1000:.0f} ms",
                ratio(n, o),
            ]
        )
    print(f"median of {args.runs} videos per size\n")
    print(table(["video", "ours (median)", "ours (max)", "naive (median)", "naive (max)", "naive / ours"], rows))
    print("\ngoal: <= 0.5 s for 4 MB")


if __name__ == "__main__":
    asyncio.run(main())
