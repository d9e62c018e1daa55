"""The HTTP API: OpenAI's video API shape over the bot's queue, plus health and metrics."""

from __future__ import annotations

from bot.http.app import create_app
from bot.http.delivery import ApiDelivery, RoutingDelivery
from bot.http.metrics import ApiMetrics

__all__ = ["ApiDelivery", "ApiMetrics", "RoutingDelivery", "create_app"]
