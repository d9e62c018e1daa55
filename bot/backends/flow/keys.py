"""The one table that turns (model, aspect, account tier) into Flow's ``videoModelKey``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

Model = Literal["fast", "quality"]
Aspect = Literal["landscape", "portrait"]

MODELS: tuple[Model, ...] = get_args(Model)
ASPECTS: tuple[Aspect, ...] = get_args(Aspect)

ASPECT_RATIOS: dict[Aspect, str] = {
    "landscape": "VIDEO_ASPECT_RATIO_LANDSCAPE",
    "portrait": "VIDEO_ASPECT_RATIO_PORTRAIT",
}

#: Base keys as Flow named them in late 2025; tier suffixes are added by ``model_key``.
_BASE_KEYS: dict[tuple[Model, Aspect], str] = {
    ("fast", "landscape"): "veo_3_1_t2v_fast",
    ("fast", "portrait"): "veo_3_1_t2v_fast_portrait",
    ("quality", "landscape"): "veo_3_1_t2v",
    ("quality", "portrait"): "veo_3_1_t2v_portrait",
}

#: Tiers whose accounts must use the ``_ultra`` keys.
_ULTRA_TIERS = frozenset({"PAYGATE_TIER_TWO"})

#: Names a settings override may use: "fast.landscape" (any tier) or "fast.landscape.PAYGATE_TIER_TWO".
OVERRIDE_NAMES: frozenset[str] = frozenset(f"{m}.{a}" for m in MODELS for a in ASPECTS)


def model_key(model: Model, aspect: Aspect, tier: str, overrides: Mapping[str, str] | None = None) -> str:
    """Return the ``videoModelKey``; a tier-specific override beats a plain one, which beats the table."""
    try:
        base = _BASE_KEYS[(model, aspect)]
    except KeyError:
        raise ValueError(f"unknown model/aspect: {model!r}/{aspect!r}") from None
    if overrides:
        name = f"{model}.{aspect}"
        for candidate in (f"{name}.{tier}", name):
            key = overrides.get(candidate)
            if key:
                return key
    return f"{base}_ultra" if tier in _ULTRA_TIERS else base


def check_overrides(overrides: Mapping[str, str]) -> None:
    """Reject override names the table does not know, so a typo in a setting fails at start-up."""
    for name, key in overrides.items():
        head = ".".join(name.split(".")[:2])
        if head not in OVERRIDE_NAMES or not key:
            raise ValueError(f"bad model key override {name!r}: use e.g. 'fast.landscape=veo_3_1_t2v_fast'")
