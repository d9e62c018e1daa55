"""Peak memory of FlowClient.download (streamed) against a whole-body read of the same 200 MB emulator video.

Run: ``.venv/bin/python bench/download.py [--size-mb 200] [--runs 3] [--chunk-kb 256]``

The emulator runs in this process; every measured download runs in a fresh child process, so one run's
allocations cannot hide another's. A thread samples the child's RSS every 2 ms; the number reported is the peak
minus the RSS just before the download started. Medians of ``--runs`` runs per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024


class PeakSampler:
    """Sample this process's RSS in a background thread; keeps the peak."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.baseline = self._proc.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


async def child(mode: str, config: dict[str, str], dest: Path, chunk_size: int) -> dict[str, float]:
    """One measured download in this (fresh) process."""
    import aiohttp

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.backends.flow.models import PollResult

    result = PollResult.model_validate_json(config["result"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600, sock_read=60)) as http:
        creds = Credentials(Path(config["cookie_file"]), http, labs_base=config["labs_base"])
        await creds.load()
        client = FlowClient(http, creds, api_base=config["api_base"], labs_base=config["labs_base"])
        start = time.perf_counter()
        with PeakSampler() as sampler:
            if mode == "stream":
                written = await client.download(result, dest, chunk_size=chunk_size)
            else:
                assert result.fife_url is not None
                async with http.get(result.fife_url) as resp:
                    resp.raise_for_status()
                    body = await resp.read()
                await asyncio.to_thread(dest.write_bytes, body)
                written = len(body)
                del body
        elapsed = time.perf_counter() - start
    return {"written": written, "peak_growth": sampler.peak - sampler.baseline, "seconds": elapsed}


async def run_child(mode: str, config: dict[str, str], dest: Path, chunk_size: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        mode,
        "--dest",
        str(dest),
        "--chunk-kb",
        str(chunk_size // 1024),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, _ = await proc.communicate(json.dumps(config).encode())
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed with exit code {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(MiB):
            digest.update(block)
    return digest.hexdigest()


async def parent(size_mb: int, runs: int, chunk_size: int) -> None:
    import aiohttp

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.backends.flow.models import GenerationSpec, GenerationState
    from tests.fakes.flow_emulator import FlowEmulator

    with tempfile.TemporaryDirectory(prefix="veo-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        emu = FlowEmulator(video_size=size_mb * MiB, polls_to_finish=1, fife_lifetime=24 * 3600)
        await emu.start()
        try:
            cookie_file = tmp / "cookie.json"
            emu.write_cookie_file(cookie_file)
            async with aiohttp.ClientSession() as http:
                creds = Credentials(cookie_file, http, labs_base=emu.labs_base)
                await creds.load()
                client = FlowClient(http, creds, api_base=emu.api_base, labs_base=emu.labs_base)
                spec = GenerationSpec(prompt="bench", aspect="landscape", model="fast", seed=1, scene_id="b")
                [sub] = await client.generate(emu.add_project(), [spec])
                [done] = await client.check_status([sub.poll_ref()])
                assert done.state is GenerationState.SUCCEEDED, done
            expected = await asyncio.to_thread(emu.video_sha256, sub.operation_name)
            config = {
                "api_base": emu.api_base,
                "labs_base": emu.labs_base,
                "cookie_file": str(cookie_file),
                "result": done.model_dump_json(),
            }
            rows: dict[str, list[dict[str, float]]] = {"stream": [], "read": []}
            for i in range(runs):
                for mode in ("stream", "read"):
                    dest = tmp / f"{mode}-{i}.mp4"
                    measured = await run_child(mode, config, dest, chunk_size)
                    if await asyncio.to_thread(sha256_file, dest) != expected:
                        raise SystemExit(f"{mode} run {i}: downloaded bytes differ from the emulator's")
                    dest.unlink()
                    rows[mode].append(measured)
        finally:
            await emu.close()

    print(f"video {size_mb} MiB, chunk {chunk_size // 1024} KiB, median of {runs} runs (fresh process each)")
    print(f"{'mode':<34}{'peak RSS growth':>18}{'time':>10}{'throughput':>14}")
    labels = {"stream": "FlowClient.download (streamed)", "read": "await resp.read() (whole body)"}
    for mode, label in labels.items():
        growth = statistics.median(r["peak_growth"] for r in rows[mode]) / MiB
        seconds = statistics.median(r["seconds"] for r in rows[mode])
        print(f"{label:<34}{growth:>14.1f} MiB{seconds:>9.2f}s{size_mb / seconds:>9.0f} MiB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-kb", type=int, default=256)
    parser.add_argument("--child", choices=["stream", "read"])
    parser.add_argument("--dest", type=Path)
    args = parser.parse_args()
    chunk_size = args.chunk_kb * 1024
    if args.child:
        config = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run(child(args.child, config, args.dest, chunk_size))))
    else:
        asyncio.run(parent(args.size_mb, args.runs, chunk_size))


if __name__ == "__main__":
    main()
