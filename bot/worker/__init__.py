"""The job lifecycle: submit queued jobs to a backend, poll them, fetch the videos, hand them to delivery.

It imports neither discord nor any cog nor a particular backend: backends come in through the neutral interface
(bot/backends/base.py) and delivery through the small `Delivery` protocol the Discord side and the HTTP API
implement.
"""

from __future__ import annotations

from bot.worker._core import Worker
from bot.worker._holds import month_of
from bot.worker._submit import generation_request, request_for
from bot.worker._types import PAUSE_DETAIL_KEY, PAUSE_KEY, PROJECT_KEY, Delivery, DeliveryFailed

__all__ = [
    "PAUSE_DETAIL_KEY",
    "PAUSE_KEY",
    "PROJECT_KEY",
    "Delivery",
    "DeliveryFailed",
    "Worker",
    "generation_request",
    "month_of",
    "request_for",
]
