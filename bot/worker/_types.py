"""What the worker needs from the chat side, and the knobs every part of it shares."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from storage import Job

MAX_JOB_CRASHES = 3
WAKE_SETTLE = 0.02
MAX_SUBMIT_ATTEMPTS = 3
MAX_DOWNLOAD_ATTEMPTS = 5
#: Unreadable status answers in a row before the admins hear that a backend's API may have changed.
MAX_UNREADABLE_POLLS = 3
DOWNLOAD_CONCURRENCY = 3
#: How long a stopping worker waits for a submit call in flight before abandoning it.
SUBMIT_GRACE = 10.0
#: Longest wait between retries of one job's download, post or failure notice.
RETRY_CAP = 60.0
#: While the queue is held for credentials, how often a free check asks whether they work again.
HOLD_PROBE_INTERVAL = 60.0
PAUSE_KEY = "queue_paused"
PAUSE_DETAIL_KEY = "queue_paused_detail"
PROJECT_KEY = "flow_project_id"
#: "YYYY-MM" of a month in which an admin resumed a queue held for the budget: the budget is not re-applied then.
BUDGET_OVERRIDE_KEY = "budget_override_month"
#: "YYYY-MM" of the month whose budget the queue is held for: the hold lifts by itself only once that month is over.
BUDGET_HOLD_KEY = "budget_hold_month"

#: Holds that mean "this backend's credentials do not work": its jobs are not polled (so they cannot time out)
#: and a free check probes for the fix.
CREDENTIAL_HOLDS: dict[str, str] = {
    "cookies": "flow",
    "migrated": "flow",
    "flow_outage": "flow",
    "vertex_auth": "vertex",
}


class DeliveryFailed(Exception):
    """Posting failed; `permanent` when retrying cannot help (channel gone, no permission)."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        #: Discord's HTTP status, when it answered (413: too large for the channel).
        self.status = status


class Delivery(Protocol):
    """What the worker needs from the chat side (Discord, or the HTTP API for its own jobs)."""

    async def post_video(self, job: Job, path: Path) -> int: ...

    async def post_failure(self, job: Job, text: str) -> int: ...

    async def find_posted(self, job: Job) -> int | None: ...

    async def job_changed(self, job: Job, *, force: bool = False) -> None: ...

    async def alert_admins(self, text: str) -> None: ...
