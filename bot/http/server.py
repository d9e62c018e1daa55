"""Serve the API with uvicorn inside the running event loop: one process, one store, one worker.

uvicorn installs no signal handlers here: the bot owns SIGTERM/SIGINT and stops the server through `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from bot.settings import ConfigError

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the bot's own SIGTERM/SIGINT handlers stay in charge
        yield


class HttpServer:
    """A started uvicorn server as a task of the running loop; `stop` closes it gracefully."""

    def __init__(self, app: FastAPI, host: str, port: int, *, sock: socket.socket | None = None) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self.server = _Server(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        for server in self.server.servers:
            for s in server.sockets:
                return int(s.getsockname()[1])
        raise RuntimeError("the HTTP server is not listening")

    async def start(self) -> None:
        """Start serving; returns once the socket listens (raises if it cannot bind)."""
        sockets = [self._sock] if self._sock is not None else None
        self._task = asyncio.create_task(self.server.serve(sockets=sockets), name="veo-http")
        while not self.server.started:
            if self._task.done():
                # uvicorn logs the reason and exits when it cannot bind; say it as one line instead.
                with contextlib.suppress(SystemExit):
                    await self._task
                where = f"{self.server.config.host}:{self.server.config.port}"
                raise ConfigError(f"VEO_HTTP_PORT: the HTTP API cannot listen on {where}")
            await asyncio.sleep(0.01)
        log.info("HTTP API listening on port %d", self.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_http(app: FastAPI, host: str, port: int) -> None:
    """Serve until cancelled (a task of the bot), then close gracefully."""
    server = HttpServer(app, host, port)
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
