"""Holds and alerts: pausing the queue with a reason, lifting a hold whose cause went away, the monthly budget,
and admin alerts that fire once while a condition lasts and re-arm when it clears."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.backends import errors as be
from bot.messages import ADMIN_ALERTS
from bot.worker._types import (
    BUDGET_HOLD_KEY,
    BUDGET_OVERRIDE_KEY,
    CREDENTIAL_HOLDS,
    HOLD_PROBE_INTERVAL,
    PAUSE_DETAIL_KEY,
    PAUSE_KEY,
)
from storage import JobState

if TYPE_CHECKING:
    from bot.worker._core import Worker

log = logging.getLogger("bot.worker")


def month_of(wall: float) -> tuple[str, float]:
    """The calendar month (UTC) of `wall` as "YYYY-MM", and its first second."""
    moment = datetime.fromtimestamp(wall, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), start.timestamp()


class HoldsMixin:
    """Part of `Worker`: see bot/worker/_core.py."""

    async def paused(self: Worker) -> str | None:
        return await self.store.kv_get(PAUSE_KEY)

    async def pause(self: Worker, reason: str, *, actor_id: int | None = None, detail: str | None = None) -> bool:
        """Hold the queue. Returns True when this call paused it (admins are alerted only then)."""
        async with self._flags:  # concurrent failures (several groups hit one wall) alert once
            current = await self.paused()
            if current == reason or (current and reason != "admin"):
                return False
            self._next_probe = self.clock() + HOLD_PROBE_INTERVAL  # before the hold is visible to a tick
            if reason in CREDENTIAL_HOLDS:
                self._held_since = self.clock()
            await self.store.kv_set(PAUSE_KEY, reason)
            await self.store.kv_set(PAUSE_DETAIL_KEY, detail)
        await self.store.log_event("queue_paused", actor_id=actor_id, detail=reason)
        log.warning("queue paused: %s", reason)
        if reason in ADMIN_ALERTS:
            text = ADMIN_ALERTS[reason] + (f"\n{detail}" if detail else "")
            try:
                await self.delivery.alert_admins(text)
            except Exception:
                log.exception("could not alert the admins")
        await self._show_hold()
        return True

    async def resume(self: Worker, *, actor_id: int | None = None) -> bool:
        reason = await self.paused()
        if reason is None:
            return False
        await self.store.kv_set(PAUSE_KEY, None)
        await self.store.kv_set(PAUSE_DETAIL_KEY, None)
        if reason in CREDENTIAL_HOLDS and self._held_since is not None:
            # Its jobs were not polled meanwhile: that time does not count against their timeouts.
            held = self.clock() - self._held_since
            for job_id in self._deadlines:
                self._deadlines[job_id] += held
        self._held_since = None
        if reason == "budget" and actor_id is not None:
            # An admin lifted the budget hold: do not re-apply the budget for the rest of this month.
            await self.store.kv_set(BUDGET_OVERRIDE_KEY, month_of(self.wall())[0])
        await self.store.log_event("queue_resumed", actor_id=actor_id, detail=reason)
        log.info("queue resumed (was: %s)", reason)
        self._submit_not_before = 0.0
        await self._show_hold()
        self.wake()
        return True

    async def _check_holds(self: Worker, now: float) -> None:
        """Lift a hold whose cause went away: credentials that work again, a new budget month."""
        if now < self._next_probe:
            return
        reason = await self.paused()
        if reason is None or self.clock() < self._next_probe:
            return
        self._next_probe = now + HOLD_PROBE_INTERVAL
        if reason == "budget":
            # Only a new month lifts it: the spend so far may be under the budget while the next job is not.
            month = month_of(self.wall())[0]
            held_for = await self.store.kv_get(BUDGET_HOLD_KEY)
            if held_for is None:
                await self.store.kv_set(BUDGET_HOLD_KEY, month)
            elif held_for != month:
                log.info("a new month: the budget hold lifts")
                await self.resume()
            return
        name = CREDENTIAL_HOLDS.get(reason)
        backend = self.backends.get(name) if name else None
        if backend is None:
            return
        try:
            await backend.check()
        except be.BackendError as err:
            log.info("queue stays on hold (%s): %s", reason, type(err).__name__)
            return
        log.info("the %s credentials work again: the hold lifts", name)
        await self.resume()

    async def hold_for_budget(self: Worker) -> None:
        """Hold the queue for this month's budget (admins told once); it lifts next month or on an admin resume."""
        await self.store.kv_set(BUDGET_HOLD_KEY, month_of(self.wall())[0])
        await self.pause("budget")

    async def over_budget(self: Worker, extra: float = 0.0) -> bool:
        """Whether this month's estimated Vertex AI spend (plus `extra`) passes VEO_MONTHLY_BUDGET_USD."""
        if self.monthly_budget is None:
            return False
        month, start = month_of(self.wall())
        if await self.store.kv_get(BUDGET_OVERRIDE_KEY) == month:
            return False
        spent = await self.store.spend("usd", start, submitted_only=True)
        return spent + extra > self.monthly_budget + 1e-9

    async def _show_hold(self: Worker) -> None:
        """Refresh the status message of every waiting job once, so users see the hold (or its end)."""
        seen: set[int] = set()
        for job in await self.store.jobs_in_state(JobState.QUEUED):
            if job.status_message_id and job.status_message_id not in seen:
                seen.add(job.status_message_id)
                await self._changed(job)

    async def _alert_once(self: Worker, key: str, text: str | None = None) -> None:
        """Tell the admins once while the condition lasts; `_rearm` when it clears."""
        flag = f"alerted:{key}"
        async with self._flags:
            if await self.store.kv_get(flag):
                return
            await self.store.kv_set(flag, str(self.wall()))
        try:
            await self.delivery.alert_admins(text or ADMIN_ALERTS[key])
        except Exception:
            log.exception("could not alert the admins")

    async def _rearm(self: Worker, key: str) -> None:
        """The condition behind an alert cleared: the next occurrence alerts again."""
        flag = f"alerted:{key}"
        if await self.store.kv_get(flag):
            await self.store.kv_set(flag, None)
