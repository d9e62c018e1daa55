"""Response bodies shaped like the captures in /work/shared/flow-captures (one builder per body kind)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.fakes._flow_state import Generation

MEDIA_TYPE = "type.googleapis.com/google.internal.labs.aisandbox.v1.Media"
USER = {
    "name": "Example User",
    "email": "user@example.com",
    "image": "https://lh3.googleusercontent.com/a/REDACTED",
}
_STATUS_PREFIX = "MEDIA_GENERATION_STATUS_"

# sku / serviceTier per tier: NOT_PAID and TWO as captured, ONE a guess.
_TIER_EXTRAS: dict[str, dict[str, str]] = {
    "PAYGATE_TIER_NOT_PAID": {"sku": "G1_FREEMIUM", "serviceTier": "SERVICE_TIER_ENTRY"},
    "PAYGATE_TIER_ONE": {"sku": "G1_PRO", "serviceTier": "SERVICE_TIER_STANDARD"},
    "PAYGATE_TIER_TWO": {"sku": "WS_ULTRA", "serviceTier": "SERVICE_TIER_ADVANCED"},
}

SIGN_IN_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Google Accounts</title></head>
<body><form action="https://accounts.google.com/signin/v2/identifier" method="get">
<h1>Sign in</h1><p>to continue to Google Labs</p><input type="email" name="identifier">
<button type="submit">Next</button></form></body></html>
"""

MALFORMED_JSON = '{"operations": [{"operation": {"name": "'


def iso_seconds(t: float) -> str:
    """`2025-11-15T04:46:04.000Z`: the session `expires` form (whole seconds, floored)."""
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso_micros(t: float) -> str:
    """`2026-05-08T22:55:22.781796Z`: the createTime form."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wire_status(state: str) -> str:
    return _STATUS_PREFIX + state


def session_body(token: str, expires: float, user: dict[str, str]) -> dict[str, Any]:
    return {"user": dict(user), "expires": iso_seconds(expires), "access_token": token}


def refresh_needed_body(stale_token: str, expires: float, user: dict[str, str]) -> dict[str, Any]:
    """As session_access_token_refresh_needed_FIXTURE.json, with the full user object."""
    return {
        "user": dict(user),
        "access_token": stale_token,
        "expires": iso_seconds(expires),
        "error": "ACCESS_TOKEN_REFRESH_NEEDED",
    }


def credits_body(credits: int, tier: str) -> dict[str, Any]:
    body: dict[str, Any] = {"credits": credits, "userPaygateTier": tier}
    body.update(_TIER_EXTRAS.get(tier, {"sku": "UNKNOWN", "serviceTier": "SERVICE_TIER_UNSPECIFIED"}))
    if tier == "PAYGATE_TIER_NOT_PAID":
        body["subscriptionCredits"] = credits
    return body


def project_body(project_id: str, title: str) -> dict[str, Any]:
    return {
        "result": {
            "data": {
                "json": {
                    "result": {"projectId": project_id, "projectInfo": {"projectTitle": title}},
                    "status": 200,
                    "statusText": "OK",
                }
            }
        }
    }


def trpc_error(http_status: int, code: str, message: str, path: str) -> dict[str, Any]:
    """A tRPC error body (superjson-wrapped, as labs.google's Next.js tRPC answers)."""
    rpc_codes = {400: -32600, 401: -32001, 403: -32003, 404: -32004, 500: -32603}
    return {
        "error": {
            "json": {
                "message": message,
                "code": rpc_codes.get(http_status, -32603),
                "data": {"code": code, "httpStatus": http_status, "path": path},
            }
        }
    }


def gcs_error_xml(code: str, message: str, details: str) -> str:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message><Details>{details}</Details></Error>"
    )


def generate_operations_body(gens: list[Generation], remaining: int) -> dict[str, Any]:
    """As generate_t2v_response_2025-10-30.json."""
    return {
        "operations": [
            {"operation": {"name": g.name}, "sceneId": g.scene_id, "status": wire_status("PENDING")} for g in gens
        ],
        "remainingCredits": remaining,
    }


def generate_media_body(gens: list[Generation], remaining: int) -> dict[str, Any]:
    """Media-only shape of the 2026-05-13 / 2026-08-28 captures: workflows[] + media[], status SCHEDULED."""
    return {
        "remainingCredits": remaining,
        "workflows": [_workflow(g) for g in gens],
        "media": [_media_entry(g, "SCHEDULED", with_operation=False) for g in gens],
    }


def _workflow(g: Generation) -> dict[str, Any]:
    created = iso_micros(g.created_at)
    return {
        "name": g.workflow_id,
        "metadata": {
            "displayName": g.prompt[:40],
            "createTime": created,
            "primaryMediaId": g.media_name,
            "batchId": g.batch_id,
            "updateTime": created,
        },
        "projectId": g.project_id,
    }


def _request_data(g: Generation, *, media_era: bool) -> dict[str, Any]:
    """`requestData` as each era's captures show it (the media era adds resolution and structured prompts)."""
    control: dict[str, Any] = {
        "videoModelName": g.model_key,
        "videoGenerationMode": "VIDEO_GENERATION_MODE_TEXT_TO_VIDEO",
        "videoAspectRatio": g.aspect,
    }
    if not media_era:
        return {
            "videoGenerationRequestData": {"videoModelControlInput": control},
            "promptInputs": [{"textInput": g.prompt}],
        }
    control["videoResolution"] = "VIDEO_RESOLUTION_720P"
    return {
        "videoGenerationRequestData": {"videoModelControlInput": control},
        "promptInputs": [{"structuredPrompt": {"parts": [{"text": g.prompt}]}}],
        "clientPlatform": "CLIENT_PLATFORM_WEB",
    }


def _media_entry(g: Generation, status: str, *, with_operation: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "createTime": iso_micros(g.created_at),
        "mediaTitle": g.prompt,
        "requestData": _request_data(g, media_era=True),
        "mediaStatus": {"mediaGenerationStatus": wire_status(status)},
        "visibility": "PRIVATE",
    }
    video: dict[str, Any] = {
        "generatedVideo": {
            "seed": g.seed,
            "prompt": g.prompt,
            "model": g.model_key,
            "baseImageMediaGenerationId": "",
            "isLooped": False,
            "aspectRatio": g.aspect,
        },
        "dimensions": {"length": "8s"},
    }
    if with_operation:
        video["operation"] = {"name": g.name}
    return {
        "name": g.media_name,
        "projectId": g.project_id,
        "workflowId": g.workflow_id,
        "workflowStepId": "CAE",
        "mediaMetadata": metadata,
        "video": video,
    }


def status_media_entry(g: Generation) -> dict[str, Any]:
    """One `media[]` entry of a media-era status response (no URL anywhere, as captured)."""
    entry = _media_entry(g, g.state if g.state != "PENDING" else "ACTIVE", with_operation=True)
    status = entry["mediaMetadata"]["mediaStatus"]
    if g.state == "SUCCESSFUL":
        entry["mediaMetadata"]["mediaBlobSize"] = str(g.video_size)
    elif g.state == "FAILED":
        status["error"] = {"code": g.outcome.code, "message": g.outcome.reason}
        status["failureReasons"] = list(g.outcome.failure_reasons)
        entry["mediaMetadata"]["visibility"] = "FILTERED"
    return entry


def status_operation_entry(g: Generation, fife_url: str, thumbnail_url: str) -> dict[str, Any]:
    """One `operations[]` entry: running, SUCCESSFUL (as the 2025-10-12 capture) or FAILED."""
    operation: dict[str, Any] = {"name": g.name}
    entry: dict[str, Any] = {"operation": operation, "sceneId": g.scene_id, "status": wire_status(g.state)}
    if g.state == "SUCCESSFUL":
        operation["metadata"] = {
            "@type": MEDIA_TYPE,
            "name": g.media_generation_id,
            "video": _ops_video(g, fife_url, thumbnail_url),
            "requestData": _request_data(g, media_era=False),
        }
        entry["mediaGenerationId"] = g.media_generation_id
    elif g.state == "FAILED":
        operation["error"] = {"code": g.outcome.code, "message": g.outcome.reason}
    return entry


def _ops_video(g: Generation, fife_url: str, thumbnail_url: str) -> dict[str, Any]:
    return {
        "seed": g.seed,
        "mediaGenerationId": g.media_generation_id,
        "prompt": g.prompt,
        "fifeUrl": fife_url,
        "mediaVisibility": "PRIVATE",
        "servingBaseUri": thumbnail_url,
        "model": g.model_key,
        "isLooped": False,
        "aspectRatio": g.aspect,
    }


def unknown_operation_entry(name: str, scene_id: str) -> dict[str, Any]:
    """An emulator choice (no capture): an unknown operation comes back FAILED with code 5 NOT_FOUND."""
    return {
        "operation": {"name": name, "error": {"code": 5, "message": "Requested entity was not found."}},
        "sceneId": scene_id,
        "status": wire_status("FAILED"),
    }


def unknown_media_entry(name: str, project_id: str) -> dict[str, Any]:
    """An emulator choice (no capture): an unknown media name comes back FAILED with code 5 NOT_FOUND."""
    return {
        "name": name,
        "projectId": project_id,
        "mediaMetadata": {
            "mediaStatus": {
                "mediaGenerationStatus": wire_status("FAILED"),
                "error": {"code": 5, "message": "Requested entity was not found."},
                "failureReasons": [],
            }
        },
    }


def media_get_body(g: Generation, encoded_video: str, fife_url: str, thumbnail_url: str) -> dict[str, Any]:
    """As media_get_video_response_2025-10.json: string id inside `video`, object id at the top level."""
    video = _ops_video(g, fife_url, thumbnail_url)
    video = {"encodedVideo": encoded_video, **video}
    return {
        "name": g.media_generation_id,
        "video": video,
        "mediaGenerationId": {
            "mediaType": "VIDEO",
            "projectId": g.project_id,
            "workflowId": g.workflow_id,
            "workflowStepId": "CAE",
            "mediaKey": g.media_name,
        },
    }


def wrong_shape_body(route: str, protocol: str) -> dict[str, Any]:
    """Valid JSON a client cannot read, chosen per route so it does not look like a legitimate variant."""
    if route == "session":
        return {"user": "nope", "access_token": 42, "expires": ["soon"]}
    if route == "credits":
        return {"credits": "lots", "userPaygateTier": 2}
    if route == "project":
        return {"result": "nope"}
    if route in ("generate", "status"):
        return {"media": "nope"} if protocol == "media" else {"operations": "nope"}
    if route == "media_get":
        return {"video": "nope"}
    return {"unexpected": "nope"}
