"""Option checks of `/veo prompt` that need no store or backend: discord.py does not enforce choices on input."""

from __future__ import annotations

import random
import unicodedata

from bot.errors import UserFacingError

SEED_MAX = 2_147_483_647
#: Characters that render as nothing; a prompt made only of them is empty.
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
ASPECTS = ("landscape", "portrait")
MODELS = ("fast", "quality", "lite")
DURATIONS = (4, 6, 8)
RESOLUTIONS = ("720p", "1080p", "4k")
MAX_COUNT = 4
MAX_NEGATIVE = 500


def is_blank(text: str) -> bool:
    """True when nothing would render: spaces, controls, zero-width and bidi marks, blank 'letters'."""
    return all(c.isspace() or c in _BLANK_LETTERS or unicodedata.category(c) in _BLANK_CATEGORIES for c in text)


def check_options(
    aspect: str, model: str, seed: int | None, count: int, duration: int = 8, resolution: str = "720p"
) -> None:
    """discord.py does not enforce choices and ranges on what arrives: we do."""
    if (
        aspect not in ASPECTS
        or model not in MODELS
        or not 1 <= count <= MAX_COUNT
        or not (seed is None or 0 <= seed <= SEED_MAX)
        or duration not in DURATIONS
        or resolution not in RESOLUTIONS
    ):
        raise UserFacingError(
            "One of the options is not accepted: aspect is landscape or portrait, model is fast, quality or lite, "
            f"seed is 0 to {SEED_MAX}, count is 1 to {MAX_COUNT}, duration is 4, 6 or 8, resolution is 720p, "
            "1080p or 4k. Nothing was queued."
        )


def check_prompt(text: str, limit: int) -> str:
    """The prompt, stripped; refused when blank or over the limit."""
    prompt = text.strip()
    if is_blank(prompt):
        raise UserFacingError(
            "Your prompt is empty. Describe the video you want, e.g. `/veo prompt text: a red fox running in snow`."
        )
    if len(prompt) > limit:
        raise UserFacingError(
            f"Your prompt is {len(prompt)} characters; the limit is {limit}. Shorten it and try again."
        )
    return prompt


def check_negative(text: str | None) -> str | None:
    """The negative prompt, stripped; None when blank; refused when over 500 characters."""
    if text is None or is_blank(text):
        return None
    negative = text.strip()
    if len(negative) > MAX_NEGATIVE:
        raise UserFacingError(
            f"The negative prompt is {len(negative)} characters, over the limit of {MAX_NEGATIVE}: "
            "shorten it and try again."
        )
    return negative


def seeds_for(seed: int | None, count: int) -> list[int]:
    if seed is None:
        return [random.randint(1, 99_999) for _ in range(count)]
    return [(seed + i) % (SEED_MAX + 1) for i in range(count)]


def new_seed(old: int) -> int:
    """A random seed that differs from the one being retried."""
    while (seed := seeds_for(None, 1)[0]) == old:
        pass
    return seed
