"""HTTP API latency: `GET /v1/videos/{id}` over a 100,000-job store and `POST /v1/videos` under 50 concurrent
clients, beside the same routes answering a constant, in the same server and run.

Run: ``.venv/bin/python bench/http_api.py [--jobs 100000] [--gets 3000] [--clients 50] [--posts 20]``

The real app (create_app) is served by uvicorn on loopback with the real Store on a filled database; the worker
is not started (nothing leaves for a backend), so POST measures parse, auth, quota check and the insert (group
commit, synchronous=FULL). The constant routes are added to the same app: same uvicorn, same middleware (body cap,
error handlers), no store. Each client has its own API key. Client and server share one event loop and the
machine's cores, so absolute figures include client overhead; the comparison is what matters.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from fastapi import Request

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Fill, header, make_database, percentile, quiet_logs, table

CONST_VIDEO = {
    "id": "video_1",
    "object": "video",
    "model": "fast",
    "status": "queued",
    "progress": 0,
    "created_at": 1,
    "completed_at": None,
    "expires_at": None,
    "size": "1280x720",
    "seconds": "8",
    "prompt": "a cat",
    "error": None,
    "queue_position": 1,
}


async def measure(fn: Callable[[], Awaitable[None]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def run(args: argparse.Namespace) -> None:
    from bot.http import ApiDelivery, RoutingDelivery, create_app
    from bot.http.server import HttpServer
    from bot.settings import Settings
    from bot.worker import Worker
    from storage import Store
    from storage.apikeys import ApiKeys

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "veo.sqlite3"
        await make_database(db, Fill(jobs=args.jobs, queued=300))
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            discord_token="unused",
            veo_data_dir=tmp,
            veo_max_active_per_user=100_000,
        )
        store = await Store.open(db)
        # never started: the API only wakes it, reads its pause flag and cancels through it
        worker = Worker(
            store,
            {"flow": object()},
            RoutingDelivery(None, ApiDelivery()),
            default_backend="flow",
            media_dir=tmp,  # type: ignore[dict-item]
        )
        app = create_app(store=store, worker=worker, settings=settings)

        @app.get("/const/videos/{vid}")
        async def const_get(vid: str) -> dict[str, object]:
            return CONST_VIDEO

        @app.post("/const/videos")
        async def const_post(request: Request) -> dict[str, object]:
            await request.body()
            return CONST_VIDEO

        keys = ApiKeys(store)
        secrets = [(await keys.create(f"bench-{i}", daily_quota=100_000))[1] for i in range(args.clients)]
        server = HttpServer(app, "127.0.0.1", 0)
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            connector = aiohttp.TCPConnector(limit=args.clients * 2)
            async with aiohttp.ClientSession(connector=connector) as http:
                auth = {"Authorization": f"Bearer {secrets[0]}"}
                async with http.post(f"{base}/v1/videos", headers=auth, json={"prompt": "the one we poll"}) as r:
                    vid = (await r.json())["id"]

                async def get_real() -> None:
                    async with http.get(f"{base}/v1/videos/{vid}", headers=auth) as r:
                        assert r.status == 200
                        await r.read()

                async def get_const() -> None:
                    async with http.get(f"{base}/const/videos/{vid}", headers=auth) as r:
                        assert r.status == 200
                        await r.read()

                await measure(get_real, 100)  # warm-up
                await measure(get_const, 100)
                real_get = await measure(get_real, args.gets)
                const_get_s = await measure(get_const, args.gets)

                async def client(i: int, url: str, out: list[float]) -> None:
                    headers = {"Authorization": f"Bearer {secrets[i]}"}
                    for n in range(args.posts):
                        body = {"prompt": f"client {i} video {n}: a slow pan over a valley", "size": "1280x720"}
                        start = time.perf_counter()
                        async with http.post(url, headers=headers, json=body) as r:
                            assert r.status == 200, await r.text()
                            await r.read()
                        out.append(time.perf_counter() - start)

                async def burst(url: str) -> tuple[list[float], float]:
                    out: list[float] = []
                    start = time.perf_counter()
                    await asyncio.gather(*(client(i, url, out) for i in range(args.clients)))
                    return out, time.perf_counter() - start

                await burst(f"{base}/const/videos")  # warm-up
                const_post_s, const_wall = await burst(f"{base}/const/videos")
                real_post, real_wall = await burst(f"{base}/v1/videos")
        finally:
            await server.stop()
            total = (await store.stats())["total"]
            await store.close()

    def row(name: str, samples: list[float], wall: float | None = None) -> list[object]:
        rate = f"{len(samples) / wall:.0f}/s" if wall else "-"
        return [
            name,
            len(samples),
            f"{percentile(samples, 50) * 1000:.2f}",
            f"{percentile(samples, 99) * 1000:.2f}",
            rate,
        ]

    print(f"store: {total:,} jobs at the end (filled with {args.jobs:,})")
    print(
        table(
            ["route", "requests", "p50 ms", "p99 ms", "throughput"],
            [
                row("GET /v1/videos/{id} (store, auth)", real_get),
                row("GET constant", const_get_s),
                row(f"POST /v1/videos, {args.clients} clients", real_post, real_wall),
                row(f"POST constant, {args.clients} clients", const_post_s, const_wall),
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--posts", type=int, default=20, help="POSTs per client")
    args = parser.parse_args()
    header("HTTP API latency", sys.argv)
    quiet_logs()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
