"""VertexBackend driving the real google-genai SDK against the Vertex AI emulator: wire, errors, polls, files."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from google.oauth2.credentials import Credentials as TokenCredentials

from bot.backends.base import GenerationState, Outcome, Submission
from bot.backends.errors import (
    BackendError,
    BadRequest,
    BadResponse,
    CredentialsDead,
    ModelUnavailable,
    NotAVideo,
    NotSupported,
    RateLimited,
    SafetyRejected,
    Unavailable,
)
from bot.backends.vertex import VertexBackend
from tests.fakes._vertex_faults import BLOCKED_SUPPORT_CODE, FILTERED_SUPPORT_CODE, FORBIDDEN_PROSE
from tests.fakes.vertex_emulator import Ending, Fault, VertexEmulator
from tests.vertex_helpers import FakeClock, SleepRecorder, request, write_png

pytest_plugins = ["tests.vertex_support"]

Make = Callable[..., VertexBackend]


async def submit_one(backend: VertexBackend, **fields: object) -> Submission:
    [result] = await backend.submit([request(**fields)])
    assert isinstance(result, Submission), result
    return result


async def submit_error(backend: VertexBackend, **fields: object) -> BackendError:
    [result] = await backend.submit([request(**fields)])
    assert isinstance(result, BackendError), result
    return result


async def finish(backend: VertexBackend, ref: str) -> Outcome:
    [outcome] = await backend.poll([ref])
    return outcome


# --------------------------------------------------------------------------- the wire


async def test_text_options_reach_the_wire(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend()
    sub = await submit_one(
        backend, aspect="portrait", duration=6, seed=4_000_000_000, negative_prompt="blur", audio=False
    )
    assert "/operations/" in sub.ref
    [call] = emu.calls("submit")
    assert call.path.endswith(
        "/projects/test-project/locations/us-central1/publishers/google/models/"
        "veo-3.1-fast-generate-001:predictLongRunning"
    )
    assert call.instance == {"prompt": "a cat on a skateboard"}
    assert call.parameters == {
        "sampleCount": 1,
        "durationSeconds": 6,
        "seed": 4_000_000_000,
        "aspectRatio": "9:16",
        "resolution": "720p",
        "personGeneration": "allow_adult",
        "negativePrompt": "blur",
        "generateAudio": False,
    }
    assert call.auth == "api_key"
    assert call.headers["x-goog-api-key"] == "<redacted>"


async def test_first_and_last_frame_bytes_reach_the_wire(
    emu: VertexEmulator, make_backend: Make, tmp_path: Path
) -> None:
    first, last = write_png(tmp_path / "first.png", b"1"), write_png(tmp_path / "last.png", b"2")
    await submit_one(make_backend(), image=first, last_frame=last, model="quality")
    [call] = emu.calls("submit")
    assert "veo-3.1-generate-001:" in call.path
    assert base64.b64decode(call.instance["image"]["bytesBase64Encoded"]) == first.read_bytes()
    assert call.instance["image"]["mimeType"] == "image/png"
    assert base64.b64decode(call.instance["lastFrame"]["bytesBase64Encoded"]) == last.read_bytes()


async def test_reference_images_reach_the_wire(emu: VertexEmulator, make_backend: Make, tmp_path: Path) -> None:
    refs = tuple(write_png(tmp_path / f"r{i}.jpg", bytes([i])) for i in range(3))
    await submit_one(make_backend(), references=refs, resolution="1080p")
    [call] = emu.calls("submit")
    sent = call.instance["referenceImages"]
    assert [r["referenceType"] for r in sent] == ["ASSET"] * 3
    assert [base64.b64decode(r["image"]["bytesBase64Encoded"]) for r in sent] == [p.read_bytes() for p in refs]
    assert {r["image"]["mimeType"] for r in sent} == {"image/jpeg"}
    assert call.parameters["resolution"] == "1080p"


async def test_extension_video_reaches_the_wire(emu: VertexEmulator, make_backend: Make, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x20ftypisom" + b"x" * 100)
    await submit_one(make_backend(), video=clip)
    [call] = emu.calls("submit")
    assert call.instance["video"] == {
        "bytesBase64Encoded": base64.b64encode(clip.read_bytes()).decode(),
        "mimeType": "video/mp4",
    }


async def test_service_account_credentials_send_a_bearer(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend(api_key=None, credentials=TokenCredentials(token=emu.bearer_token))
    await submit_one(backend)
    assert emu.calls("submit")[0].auth == "bearer"
    assert backend.describe()["auth"] == "service account"


async def test_api_version_v1_is_spoken(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend(api_version="v1")
    sub = await submit_one(backend)
    assert (await finish(backend, sub.ref)).state is GenerationState.SUCCEEDED
    assert {c.version for c in emu.requests} == {"v1"}


async def test_count_of_four_is_four_operations_with_bounded_concurrency(
    emu: VertexEmulator, make_backend: Make
) -> None:
    emu.inject("submit", Fault.slow(0.05), times=None)
    backend = make_backend(request_concurrency=2)
    results = await backend.submit([request(job_id=i) for i in range(4)])
    assert all(isinstance(r, Submission) for r in results)
    assert len({r.ref for r in results if isinstance(r, Submission)}) == 4
    assert [c.parameters["sampleCount"] for c in emu.calls("submit")] == [1, 1, 1, 1]
    assert emu.max_in_flight == 2


# --------------------------------------------------------------------------- submit errors


async def test_submit_401_is_credentials_dead_with_key_hint(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend(api_key="AIzaWRONG-key-0000", request_concurrency=1)
    results = await backend.submit([request(job_id=1), request(job_id=2), request(job_id=3)])
    assert all(isinstance(r, CredentialsDead) for r in results)
    assert "GOOGLE_API_KEY" in (results[0].hint or "")  # type: ignore[union-attr]
    assert emu.count("submit") == 1  # the second was not sent once the key was known dead


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("SERVICE_DISABLED", "enable aiplatform.googleapis.com"),
        ("BILLING_DISABLED", "billing account"),
        ("IAM_PERMISSION_DENIED", "Vertex AI User role"),
    ],
)
async def test_submit_403_is_credentials_dead_saying_what_to_fix(
    emu: VertexEmulator, make_backend: Make, reason: str, words: str
) -> None:
    emu.inject("submit", Fault.forbidden(reason))
    err = await submit_error(make_backend())
    assert isinstance(err, CredentialsDead)
    assert words in (err.hint or "")
    assert FORBIDDEN_PROSE[reason] not in str(err)


async def test_submit_404_is_model_unavailable_naming_the_id(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend(models={"fast": "veo-9-retired-preview"})
    err = await submit_error(backend)
    assert isinstance(err, ModelUnavailable)
    assert err.model_id == "veo-9-retired-preview"
    assert "veo-9-retired-preview" in str(err) and "VERTEX_MODELS" in str(err)


async def test_submit_429_is_retried_after_its_retry_info_delay(
    emu: VertexEmulator, make_backend: Make, sleeps: SleepRecorder
) -> None:
    emu.inject("submit", Fault.rate_limited("7s"), times=2)
    await submit_one(make_backend())
    assert sleeps.delays == [7.0, 7.0]
    assert emu.count("submit") == 3
    assert len(emu.operations) == 1


async def test_submit_429_without_retry_info_backs_off_with_capped_jitter(
    emu: VertexEmulator, make_backend: Make, sleeps: SleepRecorder
) -> None:
    emu.inject("submit", Fault.rate_limited(None), times=3)
    await submit_one(make_backend(backoff_base=2.0, backoff_cap=5.0))
    assert len(sleeps.delays) == 3
    assert all(0 <= d <= cap for d, cap in zip(sleeps.delays, [2.0, 4.0, 5.0], strict=True))
    assert len(set(sleeps.delays)) == 3  # jittered, not a fixed ladder


async def test_submit_429_that_persists_is_rate_limited(
    emu: VertexEmulator, make_backend: Make, sleeps: SleepRecorder
) -> None:
    emu.inject("submit", Fault.rate_limited("30s"), times=None)
    err = await submit_error(make_backend(rate_limit_retries=2))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 30.0
    assert emu.count("submit") == 3
    assert not emu.operations


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("accept", [False, True], ids=["before_accepting", "after_accepting"])
async def test_submit_5xx_is_unavailable_maybe_accepted_and_never_resent(
    emu: VertexEmulator, make_backend: Make, status: int, accept: bool
) -> None:
    emu.inject("submit", Fault.server_error(status, accept=accept))
    err = await submit_error(make_backend())
    assert isinstance(err, Unavailable) and err.maybe_accepted
    assert emu.count("submit") == 1
    assert len(emu.operations) == int(accept)


async def test_submit_timeout_is_unavailable_maybe_accepted_and_never_resent(
    emu: VertexEmulator, make_backend: Make
) -> None:
    emu.inject("submit", Fault.hang(accept=True))
    err = await submit_error(make_backend(http_timeout=0.3))
    assert isinstance(err, Unavailable) and err.maybe_accepted
    assert emu.count("submit") == 1


async def test_submit_dropped_connection_is_unavailable_maybe_accepted_and_never_resent(
    emu: VertexEmulator, make_backend: Make
) -> None:
    emu.inject("submit", Fault.drop(accept=True))
    err = await submit_error(make_backend())
    assert isinstance(err, Unavailable) and err.maybe_accepted
    assert emu.count("submit") == 1


async def test_submit_connection_refused_is_unavailable_not_accepted(make_backend: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = await submit_error(make_backend(base_url=f"http://127.0.0.1:{port}"))
    assert isinstance(err, Unavailable) and not err.maybe_accepted


async def test_submit_400_naming_usage_guidelines_is_safety_rejected(emu: VertexEmulator, make_backend: Make) -> None:
    emu.inject("submit", Fault.usage_guidelines())
    err = await submit_error(make_backend())
    assert isinstance(err, SafetyRejected)
    assert err.category == BLOCKED_SUPPORT_CODE
    assert "violate" not in str(err)


async def test_submit_other_400_is_bad_request(emu: VertexEmulator, make_backend: Make) -> None:
    emu.inject("submit", Fault.bad_request())
    assert isinstance(await submit_error(make_backend()), BadRequest)


async def test_submit_garbage_json_is_bad_response(emu: VertexEmulator, make_backend: Make) -> None:
    emu.inject("submit", Fault.garbage())
    assert isinstance(await submit_error(make_backend()), BadResponse)


async def test_submit_refuses_what_the_model_cannot_do_without_sending(emu: VertexEmulator, make_backend: Make) -> None:
    err = await submit_error(make_backend(), model="lite", resolution="4k")
    assert isinstance(err, NotSupported)
    assert emu.count("submit") == 0


async def test_submit_missing_input_file_is_bad_request(make_backend: Make, tmp_path: Path) -> None:
    err = await submit_error(make_backend(), image=tmp_path / "gone.png")
    assert isinstance(err, BadRequest) and "gone.png" in str(err)


# --------------------------------------------------------------------------- poll


async def test_poll_not_before_first_poll_after(emu: VertexEmulator, make_backend: Make, clock: FakeClock) -> None:
    backend = make_backend(first_poll_after=30.0, poll_interval=10.0)
    sub = await submit_one(backend)
    clock.advance(29.9)
    assert await backend.poll([sub.ref]) == []
    assert emu.count("poll") == 0
    clock.advance(0.1)
    [outcome] = await backend.poll([sub.ref])
    assert outcome.state is GenerationState.SUCCEEDED
    assert emu.count("poll") == 1


async def test_poll_running_ref_waits_a_growing_interval(
    emu: VertexEmulator, make_backend: Make, clock: FakeClock
) -> None:
    emu.polls_to_finish = 10
    backend = make_backend(poll_interval=10.0, poll_growth=2.0, max_poll_interval=25.0)
    sub = await submit_one(backend)
    seen: list[float] = []
    for _ in range(4):
        [outcome] = await backend.poll([sub.ref])
        assert outcome.state is GenerationState.RUNNING
        assert await backend.poll([sub.ref]) == []  # not due: left out, no request
        due = backend._schedule.next_due(sub.ref)
        assert due is not None
        seen.append(due - clock.now)
        clock.advance(due - clock.now)
    assert seen == [10.0, 20.0, 25.0, 25.0]
    assert emu.count("poll") == 4


async def test_poll_unknown_ref_after_restart_is_due_at_once(emu: VertexEmulator, make_backend: Make) -> None:
    sub = await submit_one(make_backend(first_poll_after=30.0))
    restarted = make_backend(first_poll_after=30.0)
    [outcome] = await restarted.poll([sub.ref])
    assert outcome.state is GenerationState.SUCCEEDED


async def test_poll_has_bounded_concurrency(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend(request_concurrency=3)
    subs = await backend.submit([request(job_id=i) for i in range(8)])
    emu.inject("poll", Fault.slow(0.05), times=None)
    emu.max_in_flight = 0
    outcomes = await backend.poll([s.ref for s in subs if isinstance(s, Submission)])
    assert len(outcomes) == 8 and emu.count("poll") == 8
    assert emu.max_in_flight == 3


async def test_poll_filtered_result_is_content_filter_with_support_code_only(
    emu: VertexEmulator, make_backend: Make
) -> None:
    emu.ending_for("cat", Ending.filtered())
    backend = make_backend()
    outcome = await finish(backend, (await submit_one(backend)).ref)
    assert (outcome.state, outcome.failure, outcome.detail) == (
        GenerationState.FAILED,
        "content_filter",
        FILTERED_SUPPORT_CODE,
    )


async def test_poll_operation_error_code_3_is_blocked(emu: VertexEmulator, make_backend: Make) -> None:
    emu.ending_for("cat", Ending.blocked())
    backend = make_backend()
    outcome = await finish(backend, (await submit_one(backend)).ref)
    assert (outcome.failure, outcome.detail) == ("blocked", BLOCKED_SUPPORT_CODE)


@pytest.mark.parametrize(
    ("code", "failure"), [(4, "transient"), (8, "transient"), (14, "transient"), (13, "internal"), (2, "unknown")]
)
async def test_poll_operation_error_codes_map_to_failures(
    emu: VertexEmulator, make_backend: Make, code: int, failure: str
) -> None:
    emu.ending_for("cat", Ending.error(code))
    backend = make_backend()
    outcome = await finish(backend, (await submit_one(backend)).ref)
    assert (outcome.state, outcome.failure, outcome.detail) == (GenerationState.FAILED, failure, "11111111")


async def test_poll_operation_that_never_finishes_stays_running(
    emu: VertexEmulator, make_backend: Make, clock: FakeClock
) -> None:
    emu.ending_for("cat", Ending.never())
    backend = make_backend(poll_interval=1.0, poll_growth=1.0)
    sub = await submit_one(backend)
    for _ in range(5):
        assert (await finish(backend, sub.ref)).state is GenerationState.RUNNING
        clock.advance(1.0)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.unauthorized(), CredentialsDead),
        (Fault.forbidden("BILLING_DISABLED"), CredentialsDead),
        (Fault.rate_limited("5s"), RateLimited),
        (Fault.garbage(), BadResponse),
    ],
    ids=["401", "403", "429", "garbage"],
)
async def test_poll_http_errors_raise(
    emu: VertexEmulator, make_backend: Make, fault: Fault, error: type[BackendError]
) -> None:
    backend = make_backend()
    sub = await submit_one(backend)
    emu.inject("poll", fault)
    with pytest.raises(error):
        await backend.poll([sub.ref])
    assert (await finish(backend, sub.ref)).state is GenerationState.SUCCEEDED  # due again at once


@pytest.mark.parametrize("fault", [Fault.server_error(500), Fault.server_error(503), Fault.drop()], ids=str)
async def test_poll_5xx_leaves_the_ref_out_of_the_answer(
    emu: VertexEmulator, make_backend: Make, clock: FakeClock, fault: Fault
) -> None:
    backend = make_backend(poll_interval=5.0)
    sub = await submit_one(backend)
    emu.inject("poll", fault)
    assert await backend.poll([sub.ref]) == []
    clock.advance(5.0)
    assert (await finish(backend, sub.ref)).state is GenerationState.SUCCEEDED


async def test_poll_timeout_leaves_the_ref_out_of_the_answer(emu: VertexEmulator, make_backend: Make) -> None:
    backend = make_backend(http_timeout=0.3)
    sub = await submit_one(backend)
    emu.inject("poll", Fault.hang())
    assert await backend.poll([sub.ref]) == []


# --------------------------------------------------------------------------- fetch


async def test_fetch_writes_the_inline_mp4(emu: VertexEmulator, make_backend: Make, tmp_path: Path) -> None:
    backend = make_backend()
    sub = await submit_one(backend)
    outcome = await finish(backend, sub.ref)
    dest = tmp_path / "media" / "1.mp4"
    assert await backend.fetch(sub.ref, outcome, dest) == emu.video_size
    assert dest.read_bytes() == emu.video_bytes(sub.ref)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["1.mp4"]


async def test_fetch_after_restart_reads_the_operation_again(
    emu: VertexEmulator, make_backend: Make, tmp_path: Path
) -> None:
    sub = await submit_one(make_backend())
    dest = tmp_path / "1.mp4"
    await make_backend().fetch(sub.ref, None, dest)
    assert dest.read_bytes() == emu.video_bytes(sub.ref)
    assert emu.count("poll") == 1


async def test_fetch_refuses_bytes_that_are_not_an_mp4_and_leaves_no_file(
    emu: VertexEmulator, make_backend: Make, tmp_path: Path
) -> None:
    emu.ending_for("cat", Ending.not_mp4())
    backend = make_backend()
    sub = await submit_one(backend)
    outcome = await finish(backend, sub.ref)
    with pytest.raises(NotAVideo):
        await backend.fetch(sub.ref, outcome, tmp_path / "1.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_fetch_of_a_cloud_storage_output_is_bad_response(
    emu: VertexEmulator, make_backend: Make, tmp_path: Path
) -> None:
    emu.ending_for("cat", Ending.gcs())
    backend = make_backend()
    sub = await submit_one(backend)
    outcome = await finish(backend, sub.ref)
    with pytest.raises(BadResponse, match="Cloud Storage"):
        await backend.fetch(sub.ref, outcome, tmp_path / "1.mp4")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- check, describe, secrets


async def test_check_reads_every_configured_model(emu: VertexEmulator, make_backend: Make) -> None:
    await make_backend().check()
    assert sorted(c.path.rpartition("/")[2] for c in emu.calls("model")) == sorted(emu.models)
    assert emu.count("submit") == 0


async def test_check_404_is_model_unavailable(emu: VertexEmulator, make_backend: Make) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        await make_backend(models={"lite": "veo-3.1-lite-generate-preview"}).check()
    assert caught.value.model_id == "veo-3.1-lite-generate-preview"


async def test_check_401_is_credentials_dead(make_backend: Make) -> None:
    with pytest.raises(CredentialsDead):
        await make_backend(api_key="AIzaWRONG").check()


async def test_describe_names_project_location_auth_and_models_never_the_key(
    emu: VertexEmulator, make_backend: Make
) -> None:
    backend = make_backend()
    described = backend.describe()
    assert described["project"] == "test-project" and described["location"] == "us-central1"
    assert described["auth"] == "API key"
    assert described["models"]["fast"] == "veo-3.1-fast-generate-001"
    assert emu.api_key not in f"{described} {backend!r}"


def _chain(err: BaseException | None) -> str:
    text = ""
    while err is not None:
        text += f"{err!s} {err!r} {getattr(err, 'hint', '')} "
        err = err.__cause__ or err.__context__
    return text


async def test_no_key_in_any_exception_or_log(
    emu: VertexEmulator, make_backend: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "AIzaSECRET-wrong-key-42"
    errors: list[BaseException] = []
    errors.append(await submit_error(make_backend(api_key=wrong)))
    with pytest.raises(CredentialsDead) as caught:
        await make_backend(api_key=wrong).check()
    errors.append(caught.value)
    backend = make_backend()
    for fault in (Fault.rate_limited(None), Fault.server_error(500), Fault.garbage(), Fault.usage_guidelines()):
        emu.inject("submit", fault, times=None)
        errors.append(await submit_error(backend, job_id=len(errors)))
        emu.clear_faults()
    text = caplog.text + " ".join(_chain(e) for e in errors)
    for secret in (wrong, emu.api_key):
        assert secret not in text
