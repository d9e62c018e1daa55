"""`python -m bot serve`: the store, the backend, the worker and the HTTP API, without Discord.

Resources are built as `python -m bot` builds them (backend_resources); Discord jobs found in the store wait, since
nobody here can post them (RoutingDelivery without a Discord side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot import upkeep
from bot.http.app import create_app
from bot.http.delivery import ApiDelivery, RoutingDelivery
from bot.http.metrics import ApiMetrics
from bot.http.server import HttpServer
from bot.logs import Redactor
from bot.settings import ConfigError, Settings
from bot.worker import Worker
from storage import Store

log = logging.getLogger("bot.serve")

PRUNE_EVERY = 3600.0


async def _prune_loop(store: Store, settings: Settings) -> None:
    while True:
        try:
            removed = await upkeep.prune_media(store, settings.media_dir, settings.veo_media_retention_days)
            if removed:
                log.info("pruned %d media file(s)", removed)
        except Exception:
            log.exception("media pruning failed; retrying next hour")
        await asyncio.sleep(PRUNE_EVERY)


async def run_serve(settings: Settings, redactor: Redactor) -> int:
    """Run until SIGTERM/SIGINT, then stop taking requests, stop the worker and close the store."""
    from bot.__main__ import backend_resources
    from bot.backends.flow.credentials import CookieFile

    if settings.veo_http_port is None:
        raise ConfigError("VEO_HTTP_PORT is required for `serve` (the port the HTTP API listens on)")
    settings.ensure_data_dir()
    if settings.backend_name == "flow":
        await CookieFile.load(settings.flow_cookie_file)
    store = await Store.open(settings.database_path)
    try:
        async with backend_resources(settings, redactor, store=store) as res:
            metrics = ApiMetrics()
            worker = Worker.from_settings(settings, store, res.backends, RoutingDelivery(None, ApiDelivery(metrics)))
            app = create_app(
                store=store,
                worker=worker,
                settings=settings,
                backend=res.backends[settings.backend_name],
                metrics=metrics,
            )
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stopping.set)
            server = HttpServer(app, settings.veo_http_host, settings.veo_http_port)
            await server.start()
            background = [asyncio.create_task(_prune_loop(store, settings), name="veo-prune")]
            if res.credentials is not None:

                async def failed(err: Exception) -> None:
                    await upkeep.credentials_failed(worker, err)

                async def recovered() -> None:
                    await upkeep.credentials_recovered(worker)

                await upkeep.lift_stale_hold(worker, res.credentials)
                refresher = res.credentials.run(on_error=failed, on_recovered=recovered)
                background.append(asyncio.create_task(refresher, name="veo-refresh"))
            worker.start()
            try:
                await stopping.wait()
                log.info("signal received; shutting down")
            finally:
                await server.stop()
                await worker.stop()
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
    finally:
        await store.close()
    return 0
