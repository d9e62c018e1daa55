"""Peak RSS growth of the bot while it delivers one big video: streamed (ours) beside read whole (baseline).

Run: ``.venv/bin/python bench/memory.py [--sizes-mb 200 90] [--runs 3]``

The Flow emulator and the fake Discord run in this process; the bot runs, as `python -m bot` builds it, in a
fresh child process per measured delivery, so one run's allocations cannot hide another's. The child samples
its own RSS every 2 ms from the moment it is ready until the job is delivered; the figure is the peak minus
the RSS at ready. The baseline child is the same bot with the worker's Flow client swapped for one whose
download reads the whole body into memory before writing it. A video over the channel's upload limit is
posted as a link (200 MB: the largest boost allows 100 MiB), so the 90 MB row (guild boosted to tier 3)
adds the file upload to the picture. Medians over ``--runs`` runs.

The Vertex AI row (``--vertex-mb 60``) runs the same bot on the Vertex backend against the Vertex emulator, which
returns the video inline, base64 in the JSON of the poll answer (Vertex's only answer without a Cloud Storage
bucket); the goal there is a peak growth under 3x the file size, since the SDK must hold the answer in memory.
The guild is boosted to tier 3, so the video is uploaded as a file.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, ROOT, MiB, PeakSampler, header, median, quiet_logs, ratio, table


@dataclass
class Endpoint:
    """What `run_bot` needs to know of the fake Discord living in the parent process."""

    api_base: str
    gateway_url: str
    token: str


class WholeBodyDownload:
    """The baseline's Flow client: the real one, except that a download reads the whole body first."""

    def __init__(self, inner: object, http: object) -> None:
        self._inner = inner
        self._http = http

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def download(self, result: object, dest: Path) -> int:
        async with self._http.get(result.fife_url) as resp:  # type: ignore[attr-defined]
            resp.raise_for_status()
            body = await resp.read()
        await asyncio.to_thread(dest.write_bytes, body)
        return len(body)


#: Environment variables the google-genai SDK reads by itself; the children pass everything explicitly.
SDK_ENV = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_GENAI_API_VERSION",
)


def child_settings(mode: str, config: dict[str, str]) -> object:
    from bot.settings import Settings

    common = {
        "discord_token": config["token"],
        "discord_api_base": config["api_base"],
        "discord_guild_id": int(config["guild_id"]),
        "veo_data_dir": Path(config["data_dir"]),
        "veo_poll_interval": 0.2,
    }
    if mode.startswith("vertex"):
        backend = {
            "veo_backend": "vertex",
            "google_cloud_project": config["project"],
            "google_cloud_location": config["location"],
            "google_api_key": config["api_key"],
            "vertex_api_base": config["vertex_base"],
            "flow_cookie_file": Path(config["data_dir"]) / "no-cookie.json",
        }
    else:
        backend = {
            "flow_cookie_file": Path(config["cookie_file"]),
            "flow_api_base": config["flow_base"],
            "flow_labs_base": config["flow_base"],
        }
    return Settings(_env_file=None, **common, **backend)  # type: ignore[call-arg]


async def child(mode: str, config: dict[str, str]) -> dict[str, float]:
    from storage import JobState
    from tests.e2e.conftest import running_bot

    settings = child_settings(mode, config)
    endpoint = Endpoint(config["api_base"], config["gateway_url"], config["token"])
    async with running_bot(settings, endpoint) as bot:  # type: ignore[arg-type]
        if mode == "vertex-sdk":
            # The baseline: the SDK's own operation type, which decodes the inline video for `response` and
            # `result` separately, while the parsed base64 string is still alive.
            from google.genai import types

            import bot.backends.vertex.backend as vertex_module

            vertex_module.InlineVideoOperation = types.GenerateVideosOperation  # type: ignore[misc]
        if mode == "read":
            flow = bot.worker.backends["flow"]
            flow.client = WholeBodyDownload(flow.client, bot.http_session)  # type: ignore[attr-defined]
        gc.collect()
        start = time.perf_counter()
        with PeakSampler() as sampler:
            print(json.dumps({"ready": True}), flush=True)
            while not await bot.store.jobs_in_state(JobState.DELIVERED, JobState.FAILED):
                await bot.worker.wait_ticks(1)
        [job] = await bot.store.jobs_in_state(JobState.DELIVERED, JobState.FAILED)
        if job.state is not JobState.DELIVERED:
            raise SystemExit(f"job {job.state.value}: {job.error_kind}")
    return {"peak_growth": sampler.growth, "seconds": time.perf_counter() - start, "size": job.file_size or 0}


async def measure(mode: str, config: dict[str, str], fd: object, user: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        mode,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k not in SDK_ENV}, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(config).encode() + b"\n")
    await proc.stdin.drain()
    proc.stdin.close()
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not ready:
            raise SystemExit(f"child {mode} ended before it was ready")
        await fd.send_command("veo", "prompt", {"text": f"memory {mode}"}, user_id=user)  # type: ignore[attr-defined]
        line = await asyncio.wait_for(proc.stdout.readline(), 600)
    finally:
        if proc.returncode is None:
            await asyncio.wait_for(proc.wait(), 60)
    if proc.returncode != 0 or not line:
        raise SystemExit(f"child {mode} failed with exit code {proc.returncode}")
    return json.loads(line)


async def parent(sizes_mb: list[int], runs: int) -> None:
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.flow_emulator import FlowEmulator

    rows = []
    user = BENCH_USER_BASE
    for size_mb in sizes_mb:
        size = size_mb * 1_000_000
        results: dict[str, list[dict[str, float]]] = {"stream": [], "read": []}
        async with FlowEmulator(video_size=size, polls_to_finish=2) as emu, FakeDiscord() as fd:
            fd.guild_premium_tier = 3
            uploaded = size <= 100 * MiB
            for _ in range(runs):
                for mode in ("stream", "read"):
                    with tempfile.TemporaryDirectory(prefix="veo-bench-mem-") as tmp_dir:
                        tmp = Path(tmp_dir)
                        emu.write_cookie_file(tmp / "cookie.json")
                        config = {
                            "token": fd.token,
                            "api_base": fd.api_base,
                            "gateway_url": fd.gateway_url,
                            "guild_id": str(fd.guild_id),
                            "cookie_file": str(tmp / "cookie.json"),
                            "flow_base": emu.api_base,
                            "data_dir": str(tmp / "data"),
                        }
                        user += 1
                        seen = len(fd.messages)
                        results[mode].append(await measure(mode, config, fd, user))
                        posted = [m for m in fd.messages[seen:] if f"<@{user}>" in m.content]
                        if len(posted) != 1 or bool(posted[0].attachments) != uploaded:
                            raise SystemExit(f"{mode}: expected one {'file' if uploaded else 'link'} post")
        how = "file upload" if uploaded else "link (over the upload limit)"
        s = median(r["peak_growth"] for r in results["stream"])
        r = median(r["peak_growth"] for r in results["read"])
        rows.append([f"{size_mb} MB", how, f"{s / MiB:.1f} MiB", f"{r / MiB:.1f} MiB", ratio(r, s)])
        rows.append(
            [
                "",
                "time to deliver",
                f"{median(x['seconds'] for x in results['stream']):.2f} s",
                f"{median(x['seconds'] for x in results['read']):.2f} s",
                "",
            ]
        )
    print(f"peak RSS growth of the bot process during one delivery, median of {runs} runs (fresh process each)\n")
    print(table(["video", "posted as", "ours (streamed)", "baseline (read whole)", "baseline / ours"], rows))
    print("\ngoal: < 16 MiB growth while delivering a 200 MB video")


async def parent_vertex(size_mb: int, runs: int) -> None:
    """One fresh bot process per run on the Vertex backend; the emulator answers the video inline (base64)."""
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.vertex_emulator import VertexEmulator

    size = size_mb * 1_000_000
    results: dict[str, list[dict[str, float]]] = {"vertex": [], "vertex-sdk": []}
    user = BENCH_USER_BASE + 500
    async with VertexEmulator(video_size=size, polls_to_finish=2) as emu, FakeDiscord() as fd:
        fd.guild_premium_tier = 3
        for run in range(runs * 2):
            mode = ("vertex", "vertex-sdk")[run % 2]
            with tempfile.TemporaryDirectory(prefix="veo-bench-mem-") as tmp_dir:
                config = {
                    "token": fd.token,
                    "api_base": fd.api_base,
                    "gateway_url": fd.gateway_url,
                    "guild_id": str(fd.guild_id),
                    "data_dir": str(Path(tmp_dir) / "data"),
                    "project": emu.project,
                    "location": emu.location,
                    "api_key": emu.api_key,
                    "vertex_base": emu.base_url,
                }
                user += 1
                seen = len(fd.messages)
                result = await measure(mode, config, fd, user)
                posted = [m for m in fd.messages[seen:] if f"<@{user}>" in m.content]
                if len(posted) != 1 or not posted[0].attachments or result["size"] != size:
                    raise SystemExit(f"{mode}: expected one file post of the whole video")
                results[mode].append(result)
    rows = []
    for mode, label in (("vertex", "ours (decoded once)"), ("vertex-sdk", "baseline (SDK decodes)")):
        growth = [r["peak_growth"] for r in results[mode]]
        peak = median(growth)
        rows.append(
            [
                f"{size_mb} MB",
                label,
                f"{peak / MiB:.1f} MiB",
                f"{peak / size:.2f}x",
                f"{min(growth) / MiB:.1f}-{max(growth) / MiB:.1f} MiB",
                f"{median(r['seconds'] for r in results[mode]):.2f} s",
            ]
        )
    peak = median(r["peak_growth"] for r in results["vertex"])
    base = median(r["peak_growth"] for r in results["vertex-sdk"])
    rows.append(["", "baseline / ours", ratio(base, peak), "", "", ""])
    print(f"\nVertex AI, inline base64 video: peak RSS growth of the bot process, median of {runs} (fresh each)\n")
    print(table(["video", "bot", "peak growth", "x file size", "range", "time to deliver"], rows))
    print(f"\ngoal: < 3x the file size ({3 * size / MiB:.0f} MiB); met: {'yes' if peak < 3 * size else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="*", default=[200, 90])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vertex-mb", type=int, nargs="*", default=[60], help="inline Vertex AI video sizes")
    parser.add_argument("--child", choices=["stream", "read", "vertex", "vertex-sdk"])
    args = parser.parse_args()
    quiet_logs()
    if args.child:
        config = json.loads(sys.stdin.readline())
        print(json.dumps(asyncio.run(child(args.child, config))), flush=True)
        return
    header("memory: peak RSS growth while delivering one video")
    if args.sizes_mb:
        asyncio.run(parent(args.sizes_mb, args.runs))
    for size_mb in args.vertex_mb:
        asyncio.run(parent_vertex(size_mb, args.runs))


if __name__ == "__main__":
    main()
