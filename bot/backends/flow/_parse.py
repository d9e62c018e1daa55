"""Wire → result conversion, pure so the captures can be checked without HTTP; bad shapes become BadResponse."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bot.backends.flow._results import (
    PENDING_STATUS,
    Credits,
    FailureCategory,
    GenerationState,
    PollResult,
    Protocol,
    Submitted,
)
from bot.backends.flow._wire import (
    CreateProjectResponse,
    CreditsResponse,
    GenerateResponse,
    MediaEntry,
    OperationEntry,
    RpcStatus,
    Wire,
)
from bot.backends.flow.errors import BadResponse

W = TypeVar("W", bound=BaseModel)

_STATUS_PREFIX = "MEDIA_GENERATION_STATUS_"
_RUNNING = frozenset({"PENDING", "ACTIVE", "SCHEDULED", "IN_PROGRESS", "UNSPECIFIED", "QUEUED", ""})
_SUCCEEDED = frozenset({"SUCCESSFUL", "COMPLETE", "COMPLETED", "SUCCEEDED"})
_FAILED = frozenset({"FAILED", "CANCELED", "CANCELLED"})

_PUBLIC_REASON = re.compile(r"PUBLIC_ERROR_[A-Z0-9_]+")
_SHORT_REASON = re.compile(r"[A-Z][A-Z0-9_]{1,80}")
_RPC_CODES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
}
_CONTENT_FILTER_MARKS = (
    "FILTER",
    "UNSAFE",
    "SEXUAL",
    "MINOR",
    "VIOLENCE",
    "SAFETY",
    "CHILD",
    "PROMINENT_PEOPLE",
    "IP_PROHIBITED",
    "IP_INPUT",
)
_TRANSIENT_MARKS = (
    "HIGH_TRAFFIC",
    "MODEL_OVERLOADED",
    "TIMED_OUT",
    "SOMETHING_WENT_WRONG",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
)

# Logged under the public module's name, as before the split, so log filters keep matching.
_log = logging.getLogger("bot.backends.flow.models")


class WireShapeError(ValueError):
    """Cause chained under BadResponse: path and error type only (pydantic's error quotes the input)."""


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """Render a pydantic error location the way a JSON reader would: ``operations[0].operation.name``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "$"


def validate_wire(model: type[W], data: Any, what: str, *, prefix: str = "") -> W:
    """Validate a decoded body; on failure raise BadResponse naming the field path, never the body."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        path = field_path(tuple(first["loc"]), prefix)
        raise BadResponse(
            f"Flow's API changed: unexpected {what} at {path} ({first['type']})", field_path=path
        ) from WireShapeError(f"{path}: {first['type']}")


def state_of(raw_status: str) -> GenerationState:
    """Map Flow's status string; an unknown one counts as running so the job timeout decides."""
    suffix = raw_status.removeprefix(_STATUS_PREFIX)
    if suffix in _SUCCEEDED:
        return GenerationState.SUCCEEDED
    if suffix in _FAILED:
        return GenerationState.FAILED
    if suffix not in _RUNNING:
        _log.warning("unknown Flow generation status %s, treating it as running", raw_status[:80])
    return GenerationState.RUNNING


def classify_failure(*reasons: str | None) -> FailureCategory:
    """Sort failure reasons: content filters first (never retry those), then transient, then internal."""
    names = [r.removeprefix("PUBLIC_ERROR_") for r in reasons if r]
    if any(mark in name for name in names for mark in _CONTENT_FILTER_MARKS):
        return "content_filter"
    if any(mark in name for name in names for mark in _TRANSIENT_MARKS):
        return "transient"
    if "INTERNAL" in names:
        return "internal"
    return "unknown"


def reason_from_error(error: RpcStatus | None) -> str | None:
    """A short reason code from a google.rpc.Status; long internal traces become ``INTERNAL``."""
    if error is None:
        return None
    message = (error.message or "").strip()
    public = _PUBLIC_REASON.search(message)
    if public:
        return public.group(0)
    if error.code == 13:
        return "INTERNAL"
    if _SHORT_REASON.fullmatch(message):
        return message
    if error.code is not None:
        return _RPC_CODES.get(error.code, "UNKNOWN")
    return None


def _result_from_operation(entry: OperationEntry, path: str, remaining: int | None) -> PollResult:
    if not entry.status:
        raise BadResponse(f"Flow's API changed: no status at {path}.status", field_path=f"{path}.status")
    state = state_of(entry.status)
    op = entry.operation
    video = op.metadata.video if op.metadata else None
    result = PollResult(operation_name=op.name, state=state, raw_status=entry.status, remaining_credits=remaining)
    if state is GenerationState.SUCCEEDED:
        result.fife_url = video.fife_url if video else None
        result.media_id = (
            entry.media_generation_id
            or (video.media_generation_id if video else None)
            or (op.metadata.name if op.metadata else None)
        )
    elif state is GenerationState.FAILED:
        reason = reason_from_error(op.error) or entry.status.removeprefix(_STATUS_PREFIX)
        result.failure_reason = reason
        result.failure_category = classify_failure(reason)
    return result


def _result_from_media(entry: MediaEntry, path: str, remaining: int | None) -> PollResult:
    status = entry.media_metadata.media_status if entry.media_metadata else None
    raw = status.media_generation_status if status else None
    if not raw:
        where = f"{path}.mediaMetadata.mediaStatus.mediaGenerationStatus"
        raise BadResponse(f"Flow's API changed: no status at {where}", field_path=where)
    state = state_of(raw)
    op_name = (entry.video.operation.name if entry.video and entry.video.operation else None) or entry.name
    result = PollResult(
        operation_name=op_name,
        state=state,
        raw_status=raw,
        media_name=entry.name,
        remaining_credits=remaining,
    )
    if state is GenerationState.SUCCEEDED:
        result.fife_url = entry.video.fife_url if entry.video else None
    elif state is GenerationState.FAILED and status is not None:
        from_error = reason_from_error(status.error)
        reasons = [r for r in status.failure_reasons if isinstance(r, str)]
        result.failure_reason = from_error or (reasons[0] if reasons else raw.removeprefix(_STATUS_PREFIX))
        result.failure_category = classify_failure(result.failure_reason, *reasons)
    return result


class _Envelope(Wire):
    operations: list[Any] | None = None
    media: list[Any] | None = None
    remaining_credits: int | None = None


def parse_status(data: Any) -> list[PollResult]:
    """Read a status response of either era; unreadable entries are skipped unless nothing is readable."""
    env = validate_wire(_Envelope, data, "status response")
    if env.operations is None and env.media is None:
        raise BadResponse("Flow's API changed: status response has no operations or media", field_path="operations")
    results: list[PollResult] = []
    errors: list[BadResponse] = []
    for key, model, convert in (
        ("operations", OperationEntry, _result_from_operation),
        ("media", MediaEntry, _result_from_media),
    ):
        for i, raw in enumerate(getattr(env, key) or []):
            path = f"{key}[{i}]"
            try:
                entry = validate_wire(model, raw, "status entry", prefix=path)
                results.append(convert(entry, path, env.remaining_credits))  # type: ignore[arg-type]
            except BadResponse as err:
                errors.append(err)
    if errors:
        if not results:
            raise errors[0]
        _log.warning("skipped %d unreadable status entries (first at %s)", len(errors), errors[0].field_path)
    return results


def parse_generate(data: Any, scene_ids: Sequence[str] | None = None) -> list[Submitted]:
    """Read a generate response of any era, one Submitted per request, in ``scene_ids`` order."""
    env = validate_wire(GenerateResponse, data, "generate response")
    ops = env.operations or []
    media = env.media or []
    protocol: Protocol = "media" if media else "operations"
    out: list[Submitted] = []
    if ops:
        by_name = {m.name: m for m in media}
        for i, entry in enumerate(ops):
            paired = by_name.get(entry.operation.name)
            if paired is None and len(media) == len(ops):
                paired = media[i]
            out.append(
                Submitted(
                    scene_id=entry.scene_id or (paired.scene_id if paired else None) or "",
                    operation_name=entry.operation.name,
                    media_name=paired.name if paired else None,
                    protocol=protocol,
                    status=entry.status or _media_status(paired) or PENDING_STATUS,
                    project_id=paired.project_id if paired else None,
                )
            )
    else:
        for entry in media:
            op_name = entry.video.operation.name if entry.video and entry.video.operation else None
            out.append(
                Submitted(
                    scene_id=entry.scene_id or "",
                    operation_name=op_name or entry.name,
                    media_name=entry.name,
                    protocol="media",
                    status=_media_status(entry) or PENDING_STATUS,
                    project_id=entry.project_id,
                )
            )
    if not out:
        raise BadResponse("Flow's API changed: generate response has no operations or media", field_path="operations")
    if scene_ids is None:
        return out
    return _match_scenes(out, list(scene_ids), "operations" if ops else "media")


def _media_status(entry: MediaEntry | None) -> str | None:
    if entry and entry.media_metadata and entry.media_metadata.media_status:
        return entry.media_metadata.media_status.media_generation_status
    return None


def _match_scenes(out: list[Submitted], scene_ids: list[str], key: str) -> list[Submitted]:
    """Pair entries with our requests: by echoed sceneId when Flow echoes them all, else by position."""
    if len(out) != len(scene_ids):
        raise BadResponse(f"Flow's API changed: {len(out)} {key} entries for {len(scene_ids)} requests", field_path=key)
    by_scene = {s.scene_id: s for s in out if s.scene_id}
    if len(by_scene) == len(out) and set(by_scene) == set(scene_ids):
        return [by_scene[s] for s in scene_ids]
    return [s.model_copy(update={"scene_id": scene}) for s, scene in zip(out, scene_ids, strict=True)]


def parse_credits(data: Any) -> Credits:
    body = validate_wire(CreditsResponse, data, "credits response")
    return Credits(credits=body.credits, tier=body.user_paygate_tier)


def parse_project(data: Any) -> str:
    return validate_wire(CreateProjectResponse, data, "createProject response").project_id
