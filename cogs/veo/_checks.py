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
MODELS = ("fast", "quality")
MAX_COUNT = 4


def is_blank(text: str) -> bool:
    """True when nothing would render: spaces, controls, zero-width and bidi marks, blank 'letters'."""
    return all(c.isspace() or c in _BLANK_LETTERS or unicodedata.category(c) in _BLANK_CATEGORIES for c in text)


def check_options(aspect: str, model: str, seed: int | None, count: int) -> None:
    """discord.py does not enforce choices and ranges on what arrives: we do."""
    if (
        aspect not in ASPECTS
        or model not in MODELS
        or not 1 <= count <= MAX_COUNT
        or not (seed is None or 0 <= seed <= SEED_MAX)
    ):
        raise UserFacingError(
            "One of the options is not accepted: aspect is landscape or portrait, model is fast or quality, "
            f"seed is 0 to {SEED_MAX}, count is 1 to {MAX_COUNT}. Nothing was queued."
        )


def seeds_for(seed: int | None, count: int) -> list[int]:
    if seed is None:
        return [random.randint(1, 99_999) for _ in range(count)]
    return [(seed + i) % (SEED_MAX + 1) for i in range(count)]


def new_seed(old: int) -> int:
    """A random seed that differs from the one being retried."""
    while (seed := seeds_for(None, 1)[0]) == old:
        pass
    return seed
