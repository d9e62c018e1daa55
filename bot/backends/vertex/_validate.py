"""What each Vertex model accepts (vertex-veo.md §3), checked before anything is queued.

Each refusal is one user-facing sentence that says what would work.
"""

from __future__ import annotations

from bot.backends.base import GenerationRequest, Mode
from bot.backends.errors import NotSupported

MAX_REFERENCES = 3
#: Modes and resolutions per model; absent means every mode or resolution.
_LITE_MODES = frozenset({Mode.TEXT, Mode.IMAGE})
_LITE_RESOLUTIONS = frozenset({"720p", "1080p"})


def validate(request: GenerationRequest) -> None:
    """Raise NotSupported for a combination Vertex AI would refuse."""
    if request.last_frame is not None and request.image is None:
        raise NotSupported("A last frame needs a first frame too: add an image, or drop the last frame.")
    if len(request.references) > MAX_REFERENCES:
        raise NotSupported(f"Veo takes at most {MAX_REFERENCES} reference images: remove the extra ones.")
    if request.references and request.last_frame is not None:
        raise NotSupported("Reference images cannot be combined with a last frame: use one or the other.")
    if request.video is not None and (request.references or request.last_frame is not None):
        raise NotSupported("Extending a clip takes only a prompt: drop the images to extend it.")
    if request.model == "lite":
        if request.mode not in _LITE_MODES:
            raise NotSupported(
                f"The lite model makes videos from text or a single image only: use fast or quality for "
                f"{_mode_words(request.mode)}."
            )
        if request.resolution not in _LITE_RESOLUTIONS:
            raise NotSupported("The lite model goes up to 1080p: choose 720p or 1080p, or use fast or quality for 4k.")
    if request.duration != 8:
        needs_eight = _needs_eight_seconds(request)
        if needs_eight is not None:
            raise NotSupported(f"{needs_eight} needs an 8-second video: choose 8 seconds, or {_alternative(request)}.")


def _needs_eight_seconds(request: GenerationRequest) -> str | None:
    if request.mode is Mode.EXTEND:
        return "Extending a clip"
    if request.mode is Mode.REFERENCES:
        return "Using reference images"
    if request.resolution != "720p":
        return request.resolution
    return None


def _alternative(request: GenerationRequest) -> str:
    if request.mode is Mode.EXTEND:
        return "start a new video instead"
    if request.mode is Mode.REFERENCES:
        return "drop the reference images"
    return "use 720p"


def _mode_words(mode: Mode) -> str:
    return {
        Mode.FRAMES: "a first and last frame",
        Mode.REFERENCES: "reference images",
        Mode.EXTEND: "extending a clip",
    }.get(mode, mode.value)
