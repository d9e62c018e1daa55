"""Estimated USD per generated second, per model, resolution and audio (vertex-veo.md §4; re-check Google's page).

Prices are keyed by our model names, not by ids: an override in ``VERTEX_MODELS`` to a newer id of the same tier
keeps its tier's price. Safety-filtered and failed generations cost nothing; the worker decides that, not us.
"""

from __future__ import annotations

from bot.backends.base import Cost, GenerationRequest, Model, Resolution

#: (with audio, video only) USD per second.
PRICES: dict[Model, dict[Resolution, tuple[float, float]]] = {
    "quality": {"720p": (0.40, 0.20), "1080p": (0.40, 0.20), "4k": (0.60, 0.40)},
    "fast": {"720p": (0.10, 0.08), "1080p": (0.12, 0.10), "4k": (0.30, 0.25)},
    "lite": {"720p": (0.05, 0.03), "1080p": (0.08, 0.05)},
}


def price_per_second(model: Model, resolution: Resolution, audio: bool) -> float:
    """USD per second; KeyError for a combination Vertex does not offer (validation refuses those first)."""
    with_audio, silent = PRICES[model][resolution]
    return with_audio if audio else silent


def estimate(request: GenerationRequest) -> Cost:
    """The estimated charge for one generated video, rounded to the cent.

    An extension adds about 7 s but is requested as 8 s; we estimate the 8 s so a budget is never undershot.
    """
    usd = price_per_second(request.model, request.resolution, request.audio) * request.duration
    return Cost(amount=round(usd, 2), unit="usd")
