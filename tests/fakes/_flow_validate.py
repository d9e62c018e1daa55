"""Request-body checks in the style of Google's protobuf-JSON front end: names, types, enums, required."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ASPECT_RATIOS: frozenset[str] = frozenset({"VIDEO_ASPECT_RATIO_LANDSCAPE", "VIDEO_ASPECT_RATIO_PORTRAIT"})
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

# Known field names per message (lowerCamel; the snake_case spelling is accepted too, as protobuf JSON does).
_GENERATE_TOP = {"clientContext", "requests", "mediaGenerationContext", "useV2ModelConfig"}
_CLIENT_CONTEXT = {"projectId", "tool", "userPaygateTier", "sessionId", "recaptchaContext"}
_MEDIA_CONTEXT = {"batchId", "audioFailurePreference"}
_VIDEO_REQUEST = {"aspectRatio", "seed", "textInput", "videoModelKey", "metadata"}
_TEXT_INPUT = {"prompt", "structuredPrompt"}
_STRUCTURED = {"parts"}
_PART = {"text"}
_METADATA = {"sceneId"}
_OPERATION_ENTRY = {"operation", "sceneId", "status", "mediaGenerationId"}
_OPERATION = {"name"}
_MEDIA_REF = {"name", "projectId"}


class BadRequest(Exception):
    """A 400 INVALID_ARGUMENT: (field path or None, description) pairs for `fieldViolations`."""

    def __init__(self, violations: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(description for _, description in violations))
        self.violations = violations


@dataclass(frozen=True)
class VideoRequest:
    index: int
    aspect: str
    seed: int
    prompt: str
    structured: bool
    model_key: str
    scene_id: str


@dataclass(frozen=True)
class GenerateBody:
    project_id: str
    tool: str
    batch_id: str | None
    requests: list[VideoRequest]


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _invalid_json(detail: str) -> BadRequest:
    return BadRequest([(None, f"Invalid JSON payload received. {detail}")])


def parse_json_object(text: str) -> dict[str, Any]:
    """Parse a request body; Google answers 400 for anything that is not a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        snippet = text[:40].replace("\n", " ")
        raise _invalid_json(f"Unexpected token.\n{snippet}\n^") from None
    if not isinstance(value, dict):
        raise _invalid_json("Root element must be a message.")
    return value


class _Checker:
    """Collects every violation of one body, so the 400 lists them all as Google does."""

    def __init__(self) -> None:
        self.violations: list[tuple[str | None, str]] = []

    def known(self, obj: dict[str, Any], names: set[str], path: str) -> None:
        allowed = names | {snake(n) for n in names}
        for key in obj:
            if key in allowed:
                continue
            if path:
                desc = f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
                self.violations.append((path, desc))
            else:
                self.violations.append(
                    (None, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
                )

    def message(self, parent: dict[str, Any], key: str, path: str, *, required: bool) -> dict[str, Any] | None:
        value = _get(parent, key)
        if value is None:
            if required:
                self.missing(path)
            return None
        if not isinstance(value, dict):
            self.violations.append((path, f"Invalid value at '{path}' (message), {json.dumps(value)}"))
            return None
        return value

    def string(self, parent: dict[str, Any], key: str, path: str, *, required: bool) -> str | None:
        value = _get(parent, key)
        if value is None or value == "":
            if required:
                self.missing(path)
            return None
        if not isinstance(value, str):
            self.violations.append((path, f"Invalid value at '{path}' (TYPE_STRING), {json.dumps(value)}"))
            return None
        return value

    def int32(self, parent: dict[str, Any], key: str, path: str) -> int | None:
        value = _get(parent, key)
        if value is None:
            self.missing(path)
            return None
        parsed: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            parsed = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"-?\d+", value)
        ):
            parsed = int(value)
        if parsed is None or not _INT32_MIN <= parsed <= _INT32_MAX:
            self.violations.append((path, f"Invalid value at '{path}' (TYPE_INT32), {json.dumps(value)}"))
            return None
        return parsed

    def missing(self, path: str) -> None:
        self.violations.append((path, f"Invalid value at '{path}': required field is missing."))

    def raise_if_any(self) -> None:
        if self.violations:
            raise BadRequest(self.violations)


def _get(obj: dict[str, Any], camel: str) -> Any:
    return obj[camel] if camel in obj else obj.get(snake(camel))


def parse_generate(body: dict[str, Any], *, require_scene_id: bool) -> GenerateBody:
    """Check a `batchAsyncGenerateVideoText` body (operations or media era) and pull out what matters."""
    check = _Checker()
    check.known(body, _GENERATE_TOP, "")
    context = check.message(body, "clientContext", "client_context", required=True) or {}
    check.known(context, _CLIENT_CONTEXT, "client_context")
    project_id = check.string(context, "projectId", "client_context.project_id", required=True)
    tool = check.string(context, "tool", "client_context.tool", required=True)
    media_context = check.message(body, "mediaGenerationContext", "media_generation_context", required=False)
    batch_id = None
    if media_context is not None:
        check.known(media_context, _MEDIA_CONTEXT, "media_generation_context")
        batch_id = check.string(media_context, "batchId", "media_generation_context.batch_id", required=False)
    raw_requests = _get(body, "requests")
    requests: list[VideoRequest] = []
    if not isinstance(raw_requests, list) or not raw_requests:
        check.missing("requests")
    else:
        for index, raw in enumerate(raw_requests):
            parsed = _parse_video_request(check, raw, index, require_scene_id=require_scene_id)
            if parsed is not None:
                requests.append(parsed)
    check.raise_if_any()
    assert project_id is not None
    assert tool is not None
    return GenerateBody(project_id=project_id, tool=tool, batch_id=batch_id, requests=requests)


def _parse_video_request(check: _Checker, raw: Any, index: int, *, require_scene_id: bool) -> VideoRequest | None:
    path = f"requests[{index}]"
    if not isinstance(raw, dict):
        check.violations.append((path, f"Invalid value at '{path}' (message), {json.dumps(raw)}"))
        return None
    before = len(check.violations)
    check.known(raw, _VIDEO_REQUEST, path)
    aspect = check.string(raw, "aspectRatio", f"{path}.aspect_ratio", required=True)
    if aspect is not None and aspect not in ASPECT_RATIOS:
        check.violations.append(
            (
                f"{path}.aspect_ratio",
                f"Invalid value at '{path}.aspect_ratio' "
                f"(type.googleapis.com/google.internal.labs.aisandbox.v1.VideoAspectRatio), "
                f"{json.dumps(aspect)}",
            )
        )
    seed = check.int32(raw, "seed", f"{path}.seed")
    model_key = check.string(raw, "videoModelKey", f"{path}.video_model_key", required=True)
    prompt, structured = _parse_text_input(check, raw, f"{path}.text_input")
    scene_id = ""
    metadata = check.message(raw, "metadata", f"{path}.metadata", required=require_scene_id)
    if metadata is not None:
        check.known(metadata, _METADATA, f"{path}.metadata")
        scene_id = check.string(metadata, "sceneId", f"{path}.metadata.scene_id", required=require_scene_id) or ""
    if len(check.violations) > before:
        return None
    assert aspect is not None
    assert seed is not None
    assert model_key is not None
    assert prompt is not None
    return VideoRequest(index, aspect, seed, prompt, structured, model_key, scene_id)


def _parse_text_input(check: _Checker, raw: dict[str, Any], path: str) -> tuple[str | None, bool]:
    text_input = check.message(raw, "textInput", path, required=True)
    if text_input is None:
        return None, False
    check.known(text_input, _TEXT_INPUT, path)
    if _get(text_input, "prompt") is not None:
        return check.string(text_input, "prompt", f"{path}.prompt", required=True), False
    structured = check.message(text_input, "structuredPrompt", f"{path}.structured_prompt", required=False)
    if structured is None:
        check.missing(f"{path}.prompt")
        return None, False
    check.known(structured, _STRUCTURED, f"{path}.structured_prompt")
    parts = _get(structured, "parts")
    if not isinstance(parts, list) or not parts:
        check.missing(f"{path}.structured_prompt.parts")
        return None, True
    texts: list[str] = []
    for i, part in enumerate(parts):
        part_path = f"{path}.structured_prompt.parts[{i}]"
        if not isinstance(part, dict):
            check.violations.append((part_path, f"Invalid value at '{part_path}' (message), {json.dumps(part)}"))
            continue
        check.known(part, _PART, part_path)
        text = check.string(part, "text", f"{part_path}.text", required=True)
        if text is not None:
            texts.append(text)
    return ("".join(texts) if texts else None), True


def parse_status_operations(body: dict[str, Any]) -> list[tuple[str, str]]:
    """Check an operations-era status body; return (operation name, sceneId) pairs in order."""
    check = _Checker()
    check.known(body, {"operations"}, "")
    entries = _get(body, "operations")
    result: list[tuple[str, str]] = []
    if not isinstance(entries, list) or not entries:
        check.missing("operations")
    else:
        for i, entry in enumerate(entries):
            path = f"operations[{i}]"
            if not isinstance(entry, dict):
                check.violations.append((path, f"Invalid value at '{path}' (message), {json.dumps(entry)}"))
                continue
            check.known(entry, _OPERATION_ENTRY, path)
            operation = check.message(entry, "operation", f"{path}.operation", required=True) or {}
            check.known(operation, _OPERATION, f"{path}.operation")
            name = check.string(operation, "name", f"{path}.operation.name", required=True)
            scene_id = check.string(entry, "sceneId", f"{path}.scene_id", required=False) or ""
            if name is not None:
                result.append((name, scene_id))
    check.raise_if_any()
    return result


def parse_status_media(body: dict[str, Any]) -> list[tuple[str, str]]:
    """Check a media-era status body; return (media name, projectId) pairs in order."""
    check = _Checker()
    check.known(body, {"media"}, "")
    entries = _get(body, "media")
    result: list[tuple[str, str]] = []
    if not isinstance(entries, list) or not entries:
        check.missing("media")
    else:
        for i, entry in enumerate(entries):
            path = f"media[{i}]"
            if not isinstance(entry, dict):
                check.violations.append((path, f"Invalid value at '{path}' (message), {json.dumps(entry)}"))
                continue
            check.known(entry, _MEDIA_REF, path)
            name = check.string(entry, "name", f"{path}.name", required=True)
            project_id = check.string(entry, "projectId", f"{path}.project_id", required=True)
            if name is not None and project_id is not None:
                result.append((name, project_id))
    check.raise_if_any()
    return result
