"""The Flow fault matrix: every emulator fault during submit, poll, download and token refresh, one table.

Each row runs the real bot (in-process, production wiring with Flow's retry backoff shortened) against the
Flow emulator and the fake Discord, injects one fault, and checks the job's end state, what its requester
was told (one notice, the wording of bot/messages.py) and how many requests Flow received: a generation is
never started twice for one job, and a storm of 429s is not answered with a storm of requests.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.app import VeoBot
from bot.messages import FILTER_NAMES, failure_text, filter_name
from bot.worker import PAUSE_KEY
from storage import Job, JobState
from tests.e2e.conftest import ADMIN_ID, make_settings
from tests.e2e.test_delivery import (
    SlowDiscord,
    all_jobs,
    posts_of,
    prompt,
    slow_discord,
    started_bot,
    wait_jobs,
    wait_settled,
)
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome

HTTP_TIMEOUT = 0.4
Range = tuple[int, int]


@dataclass(frozen=True)
class Case:
    """One row: where the fault goes, and everything the run must show."""

    id: str
    phase: str  # "submit" | "poll" | "download" | "refresh-submit" | "refresh-poll" | "outcome"
    route: str | None = None
    fault: Fault | None = None
    times: int | None = 1
    outcome: Outcome | None = None
    #: Extra emulator set-up before the run (expired signed URLs, dead session, ...).
    setup: Callable[[FlowEmulator], None] | None = None
    state: JobState = JobState.DELIVERED
    kind: str | None = None  # the stored error kind, whose wording the notice must carry
    paused: str | None = None  # the queue ends on hold for this reason (no notice: the job waits)
    calls: dict[str, Range] = field(default_factory=dict)
    job_timeout: float = 900.0
    #: After a pause or a storm: clear the fault, let an admin resume, and expect the job delivered.
    recovers: bool = False
    #: Admin alerts expected (default: one per pause or API change).
    alerts: int | None = None


def _expire_fife(emu: FlowEmulator) -> None:
    emu.fife_lifetime = -1.0


def _media_protocol(emu: FlowEmulator) -> None:
    emu.protocol = "media"


def _media_protocol_expired_fife(emu: FlowEmulator) -> None:
    emu.protocol = "media"
    emu.fife_lifetime = -1.0


def _filter_reason(name: str) -> str:
    return "PUBLIC_ERROR_IP_INPUT_IMAGE" if name == "IP_INPUT" else f"PUBLIC_ERROR_{name}"


NONE = (0, 0)
ONE = (1, 1)
TWO = (2, 2)

SUBMIT = [
    Case("401-once", "submit", "generate", Fault.unauthorized(), calls={"generate": TWO}),
    Case(
        "401-always",
        "submit",
        "generate",
        Fault.unauthorized(),
        times=None,
        state=JobState.QUEUED,
        paused="cookies",
        calls={"generate": TWO},
    ),
    Case("429-once", "submit", "generate", Fault.rate_limited(0.1), calls={"generate": TWO}),
    Case(
        "429-storm",
        "submit",
        "generate",
        Fault.rate_limited(0.2),
        times=None,
        state=JobState.QUEUED,
        recovers=True,
    ),
    Case(
        "500",
        "submit",
        "generate",
        Fault.server_error(500),
        state=JobState.FAILED,
        kind="unconfirmed",
        calls={"generate": ONE},
    ),
    Case(
        "503",
        "submit",
        "generate",
        Fault.server_error(503),
        state=JobState.FAILED,
        kind="unconfirmed",
        calls={"generate": ONE},
    ),
    Case("slow", "submit", "generate", Fault.slow(HTTP_TIMEOUT / 2), calls={"generate": ONE}),
    Case(
        "hung", "submit", "generate", Fault.hang(), state=JobState.FAILED, kind="unconfirmed", calls={"generate": ONE}
    ),
    Case(
        "disconnect",
        "submit",
        "generate",
        Fault.disconnect(),
        state=JobState.FAILED,
        kind="unconfirmed",
        calls={"generate": ONE},
    ),
    Case(
        "malformed-json",
        "submit",
        "generate",
        Fault.malformed(),
        state=JobState.FAILED,
        kind="api_changed",
        calls={"generate": ONE},
    ),
    Case(
        "html", "submit", "generate", Fault.html(), state=JobState.FAILED, kind="api_changed", calls={"generate": ONE}
    ),
    Case(
        "wrong-shape",
        "submit",
        "generate",
        Fault.wrong_shape(),
        state=JobState.FAILED,
        kind="api_changed",
        calls={"generate": ONE},
    ),
    Case(
        "verification-403",
        "submit",
        "generate",
        Fault.verification(),
        state=JobState.QUEUED,
        paused="verification",
        calls={"generate": ONE},
        recovers=True,
    ),
    Case(
        "verification-429",
        "submit",
        "generate",
        Fault.verification("429_recaptcha"),
        state=JobState.QUEUED,
        paused="verification",
        calls={"generate": ONE},
        recovers=True,
    ),
    Case(
        "quota",
        "submit",
        "generate",
        Fault.quota(),
        state=JobState.QUEUED,
        paused="credits",
        calls={"generate": ONE},
        recovers=True,
    ),
    Case(
        "model-denied",
        "submit",
        "generate",
        Fault.model_denied(),
        state=JobState.FAILED,
        kind="model_not_allowed",
        calls={"generate": ONE},
    ),
    Case(
        "bad-request",
        "submit",
        "generate",
        Fault.bad_request(),
        state=JobState.FAILED,
        kind="rejected",
        calls={"generate": ONE},
    ),
]

POLL = [
    Case("401-once", "poll", "status", Fault.unauthorized()),
    Case("401-always", "poll", "status", Fault.unauthorized(), times=None, state=JobState.RUNNING, paused="cookies"),
    Case("429-once", "poll", "status", Fault.rate_limited(0.1)),
    Case("429-storm", "poll", "status", Fault.rate_limited(0.2), times=None, state=JobState.RUNNING, recovers=True),
    Case("500-twice", "poll", "status", Fault.server_error(500), times=2),
    Case("slow", "poll", "status", Fault.slow(HTTP_TIMEOUT / 2)),
    Case("hung", "poll", "status", Fault.hang()),
    Case("malformed-json", "poll", "status", Fault.malformed()),
    Case("html", "poll", "status", Fault.html()),
    Case(
        "malformed-json-always",
        "poll",
        "status",
        Fault.malformed(),
        times=None,
        state=JobState.RUNNING,
        alerts=1,
        recovers=True,
    ),
    # New submissions wait for an admin; the video already being made is still collected and posted.
    Case("verification-403", "poll", "status", Fault.verification(), state=JobState.DELIVERED, paused="verification"),
]

OUTCOMES = [
    Case("stuck", "outcome", outcome=Outcome.stuck(), state=JobState.TIMED_OUT, kind="timed_out", job_timeout=0.5),
    Case("internal-error", "outcome", outcome=Outcome.internal(), state=JobState.FAILED, kind="internal"),
    Case(
        "high-traffic",
        "outcome",
        outcome=Outcome.failed("PUBLIC_ERROR_HIGH_TRAFFIC"),
        state=JobState.FAILED,
        kind="transient",
    ),
    *[
        Case(
            f"filter-{name}",
            "outcome",
            outcome=Outcome.failed(_filter_reason(name)),
            state=JobState.FAILED,
            kind="content_filter",
        )
        for name in FILTER_NAMES
    ],
]

DOWNLOAD = [
    Case("fife-expired", "download", setup=_expire_fife, calls={"fife": ONE, "media_get": ONE}),
    Case("fife-500", "download", "fife", Fault.server_error(500), calls={"fife": TWO}),
    Case("fife-429", "download", "fife", Fault.rate_limited(0.1), calls={"fife": TWO}),
    Case("fife-truncated", "download", "fife", Fault.truncated(), calls={"fife": TWO}),
    Case("fife-hung", "download", "fife", Fault.hang(), calls={"fife": TWO}),
    Case("fife-slow", "download", "fife", Fault.slow(HTTP_TIMEOUT / 2), calls={"fife": ONE}),
    Case("fife-html", "download", "fife", Fault.html(), calls={"fife": (1, 2)}),
    Case("fife-disconnect", "download", "fife", Fault.disconnect(), calls={"fife": TWO}),
    Case(
        "media-get-500", "download", "media_get", Fault.server_error(500), setup=_expire_fife, calls={"media_get": TWO}
    ),
    Case(
        "media-get-malformed",
        "download",
        "media_get",
        Fault.malformed(),
        setup=_expire_fife,
        calls={"media_get": (1, 2)},
    ),
    # Media-era generations come without a fifeUrl: the labs.google redirect signs one.
    Case("redirect", "download", setup=_media_protocol, calls={"redirect": ONE, "fife": ONE}),
    Case(
        "redirect-500", "download", "redirect", Fault.server_error(500), setup=_media_protocol, calls={"redirect": TWO}
    ),
    Case("redirect-html", "download", "redirect", Fault.html(), setup=_media_protocol, calls={"redirect": TWO}),
    Case(
        "redirect-expired-fife",
        "download",
        setup=_media_protocol_expired_fife,
        state=JobState.FAILED,
        kind="download",
        calls={"redirect": (2, 5), "fife": (2, 5)},
    ),
    Case(
        "every-route-down",
        "download",
        "redirect",
        Fault.server_error(503),
        times=None,
        setup=_media_protocol,
        state=JobState.FAILED,
        kind="download",
        calls={"redirect": (2, 20)},
    ),
]

REFRESH = [
    Case("500-at-submit", "refresh-submit", "session", Fault.server_error(500), calls={"generate": ONE}),
    Case("hung-at-submit", "refresh-submit", "session", Fault.hang(), calls={"generate": ONE}),
    Case(
        "expired-cookies-at-submit",
        "refresh-submit",
        "session",
        Fault.empty_session(),
        times=None,
        state=JobState.QUEUED,
        paused="cookies",
        calls={"generate": NONE},
    ),
    Case(
        "refresh-needed-at-submit",
        "refresh-submit",
        "session",
        Fault.refresh_needed(),
        times=None,
        state=JobState.QUEUED,
        paused="cookies",
        calls={"generate": NONE},
    ),
    Case("500-at-poll", "refresh-poll", "session", Fault.server_error(500)),
    Case("429-at-poll", "refresh-poll", "session", Fault.rate_limited(0.1)),
    Case(
        "expired-cookies-at-poll",
        "refresh-poll",
        "session",
        Fault.empty_session(),
        times=None,
        state=JobState.RUNNING,
        paused="cookies",
    ),
    Case("html-at-poll", "refresh-poll", "session", Fault.html(), times=None, state=JobState.RUNNING, paused="cookies"),
]

TABLE = [
    *[pytest.param(c, id=f"submit-{c.id}") for c in SUBMIT],
    *[pytest.param(c, id=f"poll-{c.id}") for c in POLL],
    *[pytest.param(c, id=f"download-{c.id}") for c in DOWNLOAD],
    *[pytest.param(c, id=f"refresh-{c.id}") for c in REFRESH],
]

#: Worker ticks watched while a job is on hold (at VEO_POLL_INTERVAL 0.05: about half a second).
WATCH_TICKS = 10
#: Requests into a 429 storm watched for their spacing.
STORM_REQUESTS = 6


@pytest.fixture
async def sfd() -> AsyncIterator[SlowDiscord]:
    async with slow_discord() as fake:
        yield fake


def arm(emu: FlowEmulator, case: Case) -> None:
    if case.phase.startswith("refresh"):
        emu.expire_tokens()  # the next bearer call gets 401, so the client refreshes through the session route
    if case.route is not None and case.fault is not None:
        emu.inject(case.route, case.fault, times=case.times)


async def flow_requests(bot: VeoBot, emu: FlowEmulator, ticks: int) -> Counter[str]:
    """Requests Flow receives per route while the worker runs `ticks` more ticks."""
    before = len(emu.requests)
    await bot.worker.wait_ticks(ticks)
    return Counter(r.route for r in emu.requests[before:])


def generations_per_job(emu: FlowEmulator) -> Counter[str]:
    return Counter(g.scene_id for g in emu.generations.values())


@pytest.mark.parametrize("case", TABLE)
async def test_flow_fault(tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path, case: Case) -> None:
    if case.outcome is not None:
        emu.outcome_for("", case.outcome)
    if case.setup is not None:
        case.setup(emu)
    settings = make_settings(tmp_path, emu, sfd, flow_http_timeout=HTTP_TIMEOUT, veo_job_timeout=case.job_timeout)
    async with started_bot(settings, sfd) as bot:
        await emu.wait_for_calls("session", 1)  # the start-up token refresh is behind us
        if case.phase in ("submit", "download", "refresh-submit"):
            arm(emu, case)
        await prompt(sfd, "a lighthouse at dusk")
        if case.phase in ("poll", "refresh-poll"):
            await emu.wait_for_calls("generate", 1)
            arm(emu, case)
        if case.paused or case.recovers:
            job = await held(bot, emu, case)
            calls = Counter(r.route for r in emu.requests)
            if case.recovers:
                emu.clear_faults()
                await bot.worker.resume()
                bot.worker.wake()
                (done,) = await wait_settled(bot, timeout=15)
                assert done.state is JobState.DELIVERED
        else:
            (job,) = await wait_settled(bot, timeout=15)
            calls = Counter(r.route for r in emu.requests)
        await bot.delivery.idle()

    waiting = {JobState.QUEUED, JobState.SUBMITTING} if case.state is JobState.QUEUED else {case.state}
    assert job.state in waiting, (job.state, job.error_kind, job.error_message)
    posts = posts_of(sfd, job.id)
    if case.state is JobState.DELIVERED or case.recovers:
        assert len(posts) == 1 and posts[0].attachments, "the video, posted once"
        (name,) = emu.generations
        assert posts[0].attachments[0][1] == emu.video_bytes(name)
    elif case.kind is not None:
        assert job.error_kind == case.kind
        assert len(posts) == 1, "one failure notice"
        assert failure_text(case.kind, job.error_message) in posts[0].content
        if case.kind == "content_filter":
            assert filter_name(job.error_message) in posts[0].content
            assert filter_name(job.error_message) != filter_name(None)
    else:
        assert posts == [], "a job on hold is not failed"
    for route, (low, high) in case.calls.items():
        assert low <= calls[route] <= high, (route, calls[route])
    assert all(n == 1 for n in generations_per_job(emu).values()), "one generation per job"
    assert len(emu.generations) <= 1
    alerts = sfd.dm_messages(ADMIN_ID)
    expected_alerts = case.alerts if case.alerts is not None else int(bool(case.paused or case.kind == "api_changed"))
    assert len(alerts) == expected_alerts, [m.content for m in alerts]


async def held(bot: VeoBot, emu: FlowEmulator, case: Case) -> Job:
    """A job the fault holds (a pause, a storm): no request storm meanwhile."""
    if case.paused:
        await wait_jobs(bot, lambda js: js[0].state is case.state, timeout=10)
        for _ in range(200):
            if await bot.store.kv_get(PAUSE_KEY) == case.paused:
                break
            await bot.worker.wait_ticks(1)
        assert await bot.store.kv_get(PAUSE_KEY) == case.paused
        watched = await flow_requests(bot, emu, WATCH_TICKS)
        # On hold: nothing is submitted, and whatever keeps going (polls) stays at about one round per tick.
        assert watched["generate"] == 0, watched
        assert sum(watched.values()) <= 3 * WATCH_TICKS, watched
    else:
        route = case.route or ""
        await emu.wait_for_calls(route, STORM_REQUESTS)
        if case.fault is not None and case.fault.code == 429:
            # Every try waits out Retry-After: the client's own retries, and the worker's next round alike.
            retry_after = float(case.fault.headers["Retry-After"])
            faulted = [r for r in emu.calls(route) if r.fault]
            gaps = [b.at - a.at for a, b in itertools.pairwise(faulted)]
            assert min(gaps) >= retry_after * 0.95, gaps
        else:
            watched = await flow_requests(bot, emu, WATCH_TICKS)
            assert watched[route] <= WATCH_TICKS, watched
    (job,) = await all_jobs(bot.store)
    return job


async def test_failed_generations_each_get_their_own_notice(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    """The OUTCOMES rows (filters, internal errors, stuck jobs), all in one run: each job told once, in its words."""
    for case in OUTCOMES:
        assert case.outcome is not None
        emu.outcome_for(f"[{case.id}]", case.outcome)
    many = len(OUTCOMES)
    settings = make_settings(
        tmp_path,
        emu,
        sfd,
        veo_job_timeout=min(c.job_timeout for c in OUTCOMES),
        veo_daily_quota=many,
        veo_max_active_per_user=many,
        flow_max_concurrent=many,
    )
    async with started_bot(settings, sfd) as bot:
        for case in OUTCOMES:
            await prompt(sfd, f"a lighthouse [{case.id}]")
        jobs = await wait_settled(bot, timeout=15)
    assert len(jobs) == many
    by_case = {case.id: job for job in jobs for case in OUTCOMES if f"[{case.id}]" in job.prompt}
    for case in OUTCOMES:
        job = by_case[case.id]
        assert (case.id, job.state, job.error_kind) == (case.id, case.state, case.kind)
        (notice,) = posts_of(sfd, job.id)
        assert failure_text(case.kind, job.error_message) in notice.content
        assert not notice.attachments
        if case.kind == "content_filter":
            assert filter_name(job.error_message) != filter_name(None), "names the filter"
    assert all(n == 1 for n in generations_per_job(emu).values())
    assert len(emu.calls("generate")) <= many


async def test_a_hung_submit_does_not_stall_polling_or_delivery(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    """Flow sits on a generate call (up to FLOW_HTTP_TIMEOUT): the job already running is still polled and posted."""
    emu.polls_to_finish = 3
    settings = make_settings(tmp_path, emu, sfd, flow_http_timeout=30.0)
    async with started_bot(settings, sfd) as bot:
        await prompt(sfd, "a first lighthouse")
        await emu.wait_for_calls("generate", 1)
        emu.inject("generate", Fault.hang())
        await prompt(sfd, "a second lighthouse")
        await emu.wait_for_calls("generate", 2)
        _, second = await wait_jobs(bot, lambda js: js[0].state is JobState.DELIVERED, timeout=10)
        assert emu.hung_count == 1 and second.state is JobState.SUBMITTING, "delivered while the submit hangs"
        emu.release_hung()
        jobs = await wait_settled(bot)
    assert [j.state for j in jobs] == [JobState.DELIVERED, JobState.DELIVERED]
    assert len(emu.calls("generate")) == 2
