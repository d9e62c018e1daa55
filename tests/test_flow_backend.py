"""Flow behind the neutral interface: what it refuses before anything is queued, and what it costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.backends.base import GenerationRequest
from bot.backends.errors import NotSupported
from bot.backends.flow.backend import FlowBackend

# The refusals never reach Flow: a backend with no client is enough to read the table.
FLOW = FlowBackend(client=None, credentials=None)  # type: ignore[arg-type]


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(**{"job_id": 1, "prompt": "a heron", "seed": 7, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"model": "lite"}, "Flow has no lite model; use the fast or quality model."),
        ({"image": Path("a.png")}, "Flow can only make videos from text here"),
        ({"references": (Path("a.png"),)}, "Flow can only make videos from text here"),
        ({"video": Path("a.mp4")}, "Flow can only make videos from text here"),
        ({"duration": 4}, "Flow makes 8-second videos only; ask for 8 seconds."),
        ({"resolution": "1080p"}, "Flow makes 720p videos only; ask for 720p."),
        ({"audio": False}, "Flow always makes videos with sound; leave the audio on."),
        ({"negative_prompt": "blur"}, "Flow does not take a negative prompt"),
        ({"seed": 2**31}, "Flow takes seeds up to 2147483647."),
    ],
)
def test_flow_refuses_what_it_cannot_make_in_one_sentence(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(NotSupported) as info:
        FLOW.validate(request(**fields))
    text = str(info.value)
    assert text.startswith(expected) and text.endswith(".") and ". " not in text
    assert "`" not in text  # read by Discord users and HTTP clients alike


@pytest.mark.parametrize(("model", "credits"), [("fast", 20.0), ("quality", 100.0)])
def test_text_to_video_is_accepted_and_costs_credits(model: str, credits: float) -> None:
    FLOW.validate(request(model=model, aspect="portrait"))
    cost = FLOW.estimate(request(model=model))
    assert (cost.amount, cost.unit) == (credits, "credits")
    assert not FLOW.can_extend()
