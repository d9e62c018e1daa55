"""Check the Flow client's readers against every published body in ../shared/flow-captures.

Files are enumerated by name prefix, so a capture dropped into the folder is checked without editing this file
(a new fragment or an error whose class cannot be told from its name fails until it is described here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.backends.flow._http import map_error
from bot.backends.flow.client import build_generate_body, project_body, status_body
from bot.backends.flow.errors import (
    AuthExpired,
    BadRequest,
    BadResponse,
    FlowError,
    ModelNotAllowed,
    QuotaExhausted,
    RateLimited,
    UpstreamUnavailable,
    VerificationRequired,
)
from bot.backends.flow.models import (
    GenerationSpec,
    GenerationState,
    MediaGetResponse,
    PollRef,
    parse_credits,
    parse_generate,
    parse_project,
    parse_status,
    validate_wire,
)

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "flow-captures"
if not CAPTURES.is_dir():  # the repo may be checked out on its own
    pytest.skip("flow-captures folder not present", allow_module_level=True)

ALL = sorted(p.name for p in CAPTURES.glob("*.json"))


def files(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return [name for name in ALL if rx.match(name)]


def load(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


# Kinds we read, and kinds deliberately left to others; every file must belong to one of them.
READ_KINDS = {
    "generate response": r"generate_.*_response",
    "generate request (shape reference)": r"generate_t2v_request_",
    "other generate requests (not sent by us)": r"generate_(i2v|upsample)_.*request",
    "status response": r"status_response_",
    "status request (shape reference)": r"status_request_",
    "error": r"error_\d{3}_",
    "credits": r"credits_",
    "media get": r"media_get_",
    "project create": r"trpc_createProject_",
}
NOT_OURS = {
    "session (credentials module)": r"session_",
    "type schema (values are type tokens)": r"schema-capture_",
}


def test_every_capture_file_belongs_to_a_known_kind() -> None:
    patterns = [re.compile(p) for p in (*READ_KINDS.values(), *NOT_OURS.values())]
    unknown = [name for name in ALL if not any(p.match(name) for p in patterns)]
    assert ALL, "no captures found"
    assert unknown == [], f"new kind of capture, decide how to read it: {unknown}"


# -- generate responses -----------------------------------------------------------------------------

# Bodies we cannot read as a text-to-video submission, and the field path the error must name.
UNREADABLE_GENERATE = {
    # An upsample of an already-upscaled video answers inline with rawBytes and no operation at all.
    "generate_upsample_response_already_upscaled_2025-10.json": "operations[0].operation",
}


@pytest.mark.parametrize("name", files(r"generate_.*_response"))
def test_generate_response_capture_parses(name: str) -> None:
    data = load(name)
    if name in UNREADABLE_GENERATE:
        with pytest.raises(BadResponse) as info:
            parse_generate(data)
        assert info.value.field_path == UNREADABLE_GENERATE[name]
        assert "rawBytes" not in str(info.value)
        assert "AAAA" not in str(info.value)
        return
    submitted = parse_generate(data)
    entries = data.get("operations") or data["media"]
    assert len(submitted) == len(entries)
    expected_protocol = "media" if data.get("media") else "operations"
    for s in submitted:
        assert s.protocol == expected_protocol
        assert s.operation_name
        assert s.status.startswith("MEDIA_GENERATION_STATUS_")
        if expected_protocol == "media":
            # From 2026 the operation name equals the media name, and polling uses the media body.
            assert s.media_name == s.operation_name


def test_generate_response_pairs_with_its_request_by_scene_id() -> None:
    request = load("generate_t2v_request_2025-10-30.json")
    scene = request["requests"][0]["metadata"]["sceneId"]
    [s] = parse_generate(load("generate_t2v_response_2025-10-30.json"), [scene])
    assert s.scene_id == scene
    assert s.operation_name == "ef09aa3fef2da6ac4d3546f4e0aba89c"


def test_generate_response_without_echoed_scene_id_pairs_by_position() -> None:
    # The 2026-05-08 transition body echoes sceneId "" and carries media[] with the same name.
    [s] = parse_generate(load("generate_t2v_response_2026-05-08.json"), ["our-scene"])
    assert s.scene_id == "our-scene"
    assert s.protocol == "media"
    assert s.poll_ref().model_dump() == {
        "operation_name": "<UUID>",
        "scene_id": "our-scene",
        "media_name": "<UUID>",
        "project_id": "<UUID>",
        "protocol": "media",
    }


def test_generate_response_with_fewer_entries_than_requests_is_bad_response() -> None:
    with pytest.raises(BadResponse) as info:
        parse_generate(load("generate_t2v_response_2025-10-30.json"), ["a", "b"])
    assert info.value.field_path == "operations"


def test_media_only_scheduled_generate_is_running_media_protocol() -> None:
    [s] = parse_generate(load("generate_r2v_response_media_only_2026-08-28.json"))
    assert s.status == "MEDIA_GENERATION_STATUS_SCHEDULED"
    assert s.project_id == "64d45b46-4389-4e29-8795-1f48739b93e0"


# -- status responses -------------------------------------------------------------------------------

# Where each published fragment sits in a full body (see the captures README's notes).
FRAGMENT_WRAPPERS = {
    "status_response_failed_code13_2026-02-08_fragment.json": lambda frag: {
        "operations": [
            {
                "operation": {"name": "0" * 32, "error": frag},
                "sceneId": "s",
                "status": "MEDIA_GENERATION_STATUS_FAILED",
            }
        ]
    },
    "status_response_failed_media_2026-05_fragment.json": lambda frag: {
        "media": [{"name": "m-1", "projectId": "p", "mediaMetadata": frag}]
    },
}

EXPECTED_FAILURES = {
    "status_response_failed_code13_2026-02-08_fragment.json": ("INTERNAL", "internal"),
    "status_response_failed_media_2026-05_fragment.json": ("PUBLIC_ERROR_IP_INPUT_IMAGE", "content_filter"),
}


@pytest.mark.parametrize("name", files(r"status_response_"))
def test_status_response_capture_parses(name: str) -> None:
    data = load(name)
    if "fragment" in name:
        assert name in FRAGMENT_WRAPPERS, f"say where {name} sits in a full body"
        data = FRAGMENT_WRAPPERS[name](data)
    results = parse_status(data)
    assert len(results) == len(data.get("operations") or data.get("media"))
    for r in results:
        assert r.operation_name
        if "_active" in name:
            assert r.state is GenerationState.RUNNING
        elif "_successful" in name:
            assert r.state is GenerationState.SUCCEEDED
            # Something to download from: the signed URL (ops era) or the media name (media era).
            assert r.fife_url or r.media_name
            if "operations" in data:
                assert r.fife_url
                assert r.fife_url.startswith("https://storage.googleapis.com/")
                assert r.media_id
            if "remainingCredits" in data:
                assert r.remaining_credits == data["remainingCredits"]
        elif "_failed" in name:
            assert r.state is GenerationState.FAILED
            assert (r.failure_reason, r.failure_category) == EXPECTED_FAILURES[name]
            assert "LMRoot" not in (r.failure_reason or "")
        else:
            pytest.fail(f"name {name} says neither active, successful nor failed")


def test_upsample_status_media_id_comes_from_the_entry() -> None:
    [r] = parse_status(load("status_response_successful_upsample_2025-10-27.json"))
    assert r.media_id is not None
    assert r.media_id.startswith("CAUSJ")
    assert r.fife_url is not None
    assert "_upsampled" in r.fife_url


def test_status_entry_with_unknown_status_counts_as_running() -> None:
    data = load("status_response_active_2025-10-12.json")
    data["operations"][0]["status"] = "MEDIA_GENERATION_STATUS_SOMETHING_NEW"
    [r] = parse_status(data)
    assert r.state is GenerationState.RUNNING
    assert r.raw_status == "MEDIA_GENERATION_STATUS_SOMETHING_NEW"


def test_status_keeps_readable_entries_and_drops_unreadable_ones() -> None:
    good = load("status_response_active_2025-10-12.json")["operations"][0]
    data = {"operations": [good, {"operation": {}, "status": "MEDIA_GENERATION_STATUS_ACTIVE"}]}
    [r] = parse_status(data)
    assert r.operation_name == good["operation"]["name"]


def test_status_with_no_readable_entry_names_the_field() -> None:
    data = {"operations": [{"operation": {"name": 5}, "status": "MEDIA_GENERATION_STATUS_ACTIVE"}]}
    with pytest.raises(BadResponse) as info:
        parse_status(data)
    assert info.value.field_path == "operations[0].operation.name"


def test_unknown_fields_are_kept_on_wire_models() -> None:
    from bot.backends.flow.models import StatusResponse

    body = validate_wire(StatusResponse, load("status_response_successful_2025-10-12.json"), "status")
    entry = body.operations[0]  # type: ignore[index]
    assert entry.operation.metadata is not None
    assert "requestData" in (entry.operation.metadata.model_extra or {})


# -- requests we build, against the captured shapes -------------------------------------------------


def key_tree(value: Any) -> Any:
    """The nesting of keys, with list elements reduced to the first one's tree."""
    if isinstance(value, dict):
        return {k: key_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [key_tree(value[0])] if value else []
    return None


def test_generate_request_has_the_captured_operations_shape_plus_session_id() -> None:
    captured = load("generate_t2v_request_2025-10-30.json")
    spec = GenerationSpec(
        prompt="p",
        aspect="portrait",
        model="fast",
        seed=7533,
        scene_id="072e4486-504a-45ce-b0e3-9f48ce6cd247",
    )
    ours = build_generate_body("proj", [spec], "PAYGATE_TIER_ONE", ";1770534060719")
    expected = key_tree(captured)
    expected["clientContext"]["sessionId"] = None  # the 2026 captures add it; flow-api.md §3 has it
    assert key_tree(ours) == expected
    assert ours["requests"][0]["videoModelKey"] == "veo_3_1_t2v_fast_portrait"
    assert ours["requests"][0]["aspectRatio"] == "VIDEO_ASPECT_RATIO_PORTRAIT"
    assert "recaptchaContext" not in json.dumps(ours)


def test_status_requests_have_the_captured_shapes() -> None:
    ops = status_body("operations", [PollRef(operation_name="895377fb0691f831b227b996abfdd366", scene_id="s")])
    assert key_tree(ops) == key_tree(load("status_request_operations_2025-10-12.json"))
    assert ops["operations"][0]["status"] == "MEDIA_GENERATION_STATUS_PENDING"
    media = status_body("media", [PollRef(operation_name="m", media_name="m", project_id="p", protocol="media")])
    assert key_tree(media) == key_tree(load("status_request_media_2026-05_documented.json"))


# -- errors -----------------------------------------------------------------------------------------


def expected_error(name: str) -> type[FlowError]:
    """The class a capture must map to, read from its file name."""
    lowered = name.lower()
    if "recaptcha" in lowered:
        return VerificationRequired
    if "quota" in lowered:
        return QuotaExhausted
    if "model_access" in lowered:
        return ModelNotAllowed
    status = int(name.split("_")[1])
    by_status: dict[int, type[FlowError]] = {
        400: BadRequest,
        401: AuthExpired,
        429: RateLimited,
        500: UpstreamUnavailable,
        503: UpstreamUnavailable,
    }
    if status not in by_status:
        pytest.fail(f"say which error class {name} maps to")
    return by_status[status]


@pytest.mark.parametrize("name", files(r"error_\d{3}_"))
def test_error_capture_maps_to_its_class(name: str) -> None:
    status = int(name.split("_")[1])
    raw = (CAPTURES / name).read_bytes()
    err = map_error(status, raw, {"Retry-After": "7"}, max_retry_after=5.0)
    cls = expected_error(name)
    assert type(err) is cls, f"{name}: {type(err).__name__}"
    text = str(err)
    assert str(status) in text
    assert raw.decode() not in text
    if isinstance(err, RateLimited):
        assert err.retry_after == 5.0  # capped


def test_field_violations_name_the_fields() -> None:
    raw = (CAPTURES / "error_400_invalid_argument_fieldViolations_2026-08-27.json").read_bytes()
    err = map_error(400, raw, {}, max_retry_after=60)
    assert isinstance(err, BadRequest)
    assert "requests[0].video_input" in str(err)


@pytest.mark.parametrize(
    ("status", "reason", "message", "cls"),
    [
        (429, "PUBLIC_ERROR_USER_QUOTA_REACHED", "x", QuotaExhausted),
        (403, "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED", "x", QuotaExhausted),
        (403, "PUBLIC_ERROR_MODEL_ACCESS_DENIED", "x", ModelNotAllowed),
        (429, "PUBLIC_ERROR_HIGH_TRAFFIC", "busy", RateLimited),
        (429, "PUBLIC_ERROR_UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC", "slow down", RateLimited),
        (403, "PUBLIC_ERROR_UNUSUAL_ACTIVITY", "x", VerificationRequired),
        (503, None, "unavailable", UpstreamUnavailable),
        (404, None, "not found", BadRequest),
    ],
)
def test_reason_mapping_table(status: int, reason: str | None, message: str, cls: type[FlowError]) -> None:
    error: dict[str, Any] = {"code": status, "message": message, "status": "X"}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    assert type(map_error(status, json.dumps({"error": error}).encode(), {}, max_retry_after=60)) is cls


def test_unreadable_error_body_still_maps_by_status() -> None:
    assert type(map_error(502, b"<html>Bad Gateway</html>", {}, max_retry_after=60)) is UpstreamUnavailable
    assert type(map_error(403, b"", {}, max_retry_after=60)) is BadRequest


# -- credits, media get, project --------------------------------------------------------------------


@pytest.mark.parametrize("name", files(r"credits_"))
def test_credits_capture_parses(name: str) -> None:
    data = load(name)
    credits = parse_credits(data)
    assert credits.credits == data["credits"]
    assert credits.tier == data["userPaygateTier"]


@pytest.mark.parametrize("name", files(r"media_get_"))
def test_media_get_capture_parses(name: str) -> None:
    body = validate_wire(MediaGetResponse, load(name), "media response")
    assert body.video.encoded_video  # the published body replaced the base64 with a placeholder
    assert isinstance(body.media_generation_id, dict)  # an object at the top level, kept as is


@pytest.mark.parametrize("name", files(r"trpc_createProject_response"))
def test_create_project_capture_parses(name: str) -> None:
    assert parse_project(load(name)) == load(name)["result"]["data"]["json"]["result"]["projectId"]


def test_create_project_request_has_the_captured_shape() -> None:
    captured = load("trpc_createProject_request_2026-02-01.json")
    ours = project_body("Veo bot")
    assert key_tree(ours) == key_tree(captured)
    assert ours["json"]["toolName"] == captured["json"]["toolName"]
