"""Migration 0003 and the store's backend columns: which backend took a job, its reference, options and cost."""

from __future__ import annotations

import json
from pathlib import Path

import aiosqlite
import pytest

from storage import JobOptions, JobState, Store, load_migrations
from storage.db import migrate


async def _old_database(path: Path) -> None:
    """A database at schema 2 holding a running Flow job, an event about it, and a delivered one."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA foreign_keys = ON")
        assert await migrate(conn, path, load_migrations()[:2]) == 2
        await conn.execute(
            "INSERT INTO jobs (user_id, channel_id, prompt, aspect, model, seed, state, operation_name, scene_id,"
            " media_name, project_id, protocol, created_at, updated_at) VALUES"
            " (1, 2, 'running fox', 'landscape', 'fast', 3, 'running', 'ops/abc', 'scene-1', NULL, 'proj-9',"
            " 'operations', 10.0, 10.0)"
        )
        await conn.execute(
            "INSERT INTO jobs (user_id, channel_id, prompt, aspect, model, seed, state, created_at, updated_at)"
            " VALUES (1, 2, 'done cat', 'portrait', 'quality', 4, 'delivered', 11.0, 11.0)"
        )
        await conn.execute("INSERT INTO events (at, kind, job_id, detail) VALUES (12.0, 'created', 1, '')")
    finally:
        await conn.close()


async def test_old_running_flow_jobs_keep_a_reference_flow_can_poll_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    await _old_database(path)
    store = await Store.open(path)
    try:
        running, done = await store.get_job(1), await store.get_job(2)
        events = await store.events(job_id=1)
    finally:
        await store.close()
    assert running is not None and done is not None
    assert running.backend == "flow" and running.state is JobState.RUNNING
    ref = json.loads(running.backend_ref or "")
    assert ref == {
        "operation_name": "ops/abc",
        "scene_id": "scene-1",
        "media_name": None,
        "project_id": "proj-9",
        "protocol": "operations",
    }
    assert done.backend is None and done.backend_ref is None and done.options == JobOptions()
    assert [e.kind for e in events] == ["created"]  # the audit log still points at the rebuilt table


async def test_lite_options_and_cost_are_stored(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "veo.sqlite3")
    try:
        options = JobOptions(duration=6, resolution="1080p", audio=False, negative_prompt="blur", image="in/a.png")
        (job,) = await store.create_jobs(
            user_id=1, guild_id=None, channel_id=2, prompt="p", aspect="portrait", model="lite", seeds=[5],
            daily_quota=10, max_active=2, options=options, cost=0.3, cost_unit="usd",
        )  # fmt: skip
        again = await store.get_job(job.id)
    finally:
        await store.close()
    assert again is not None and again.model.value == "lite"
    assert again.options == options and again.cost == pytest.approx(0.3) and again.cost_unit == "usd"


async def test_in_flight_is_counted_per_backend_and_spend_leaves_out_failures(tmp_path: Path) -> None:
    now = [1000.0]
    store = await Store.open(tmp_path / "veo.sqlite3", clock=lambda: now[0])
    try:
        jobs = await store.create_jobs(
            user_id=1, guild_id=None, channel_id=2, prompt="p", aspect="landscape", model="fast",
            seeds=[1, 2, 3], daily_quota=10, max_active=5, cost=0.8, cost_unit="usd",
        )  # fmt: skip
        claimed = await store.claim_next(3)
        assert await store.count_in_flight("vertex") == 3  # submitting, no backend yet: counts everywhere
        assert await store.spend("usd", 0.0, submitted_only=True) == 0.0
        await store.transition(claimed[0].id, JobState.SUBMITTING, JobState.RUNNING, backend="vertex", backend_ref="a")
        await store.transition(claimed[1].id, JobState.SUBMITTING, JobState.RUNNING, backend="flow", backend_ref="b")
        await store.transition(claimed[2].id, JobState.SUBMITTING, JobState.RUNNING, backend="vertex", backend_ref="c")
        assert await store.count_in_flight("vertex") == 2
        assert await store.count_in_flight("flow") == 1
        assert await store.count_in_flight() == 3
        assert await store.spend("usd", 0.0) == pytest.approx(2.4)
        await store.transition(jobs[2].id, JobState.RUNNING, JobState.FAILED, error_kind="content_filter")
        assert await store.spend("usd", 0.0, submitted_only=True) == pytest.approx(1.6)  # filtered: not charged
        assert await store.spend("usd", 1001.0) == 0.0  # before the period
        assert await store.spend("credits", 0.0) == 0.0
    finally:
        await store.close()


async def test_a_submit_that_may_have_been_charged_counts_in_the_spend(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "veo.sqlite3")
    try:
        jobs = await store.create_jobs(
            user_id=1, guild_id=None, channel_id=2, prompt="p", aspect="landscape", model="fast",
            seeds=[1, 2], daily_quota=10, max_active=5, cost=0.8, cost_unit="usd",
        )  # fmt: skip
        await store.claim_next(2)
        await store.transition(jobs[0].id, JobState.SUBMITTING, JobState.FAILED, error_kind="unconfirmed")
        await store.transition(jobs[1].id, JobState.SUBMITTING, JobState.FAILED, error_kind="rejected")
        assert await store.spend("usd", 0.0, submitted_only=True) == pytest.approx(0.8)
    finally:
        await store.close()
