"""The one table of Vertex AI model ids, keyed by our model names; ``VERTEX_MODELS`` overrides entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from bot.backends.base import Model

#: GA ids (fast, quality) and the preview lite id; every ``-preview`` id on Vertex answers 404 since 2026-04-02.
DEFAULT_MODELS: dict[Model, str] = {
    "fast": "veo-3.1-fast-generate-001",
    "quality": "veo-3.1-generate-001",
    "lite": "veo-3.1-lite-generate-001",
}

_KNOWN: tuple[str, ...] = get_args(Model)


def resolve_models(override: Mapping[str, str] | None = None) -> dict[Model, str]:
    """The built-in table with the override applied; unknown keys or empty ids are a configuration mistake."""
    models = dict(DEFAULT_MODELS)
    for key, model_id in (override or {}).items():
        if key not in _KNOWN:
            raise ValueError(f"VERTEX_MODELS: unknown model {key!r}; use one of {', '.join(_KNOWN)}")
        if not isinstance(model_id, str) or not model_id.strip():
            raise ValueError(f"VERTEX_MODELS: the id for {key!r} must be a non-empty string")
        models[key] = model_id.strip()  # type: ignore[index]
    return models
