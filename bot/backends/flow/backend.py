"""Flow as a `Backend`: the Flow client behind the neutral interface.

Flow makes text-to-video only (8 s, 720p, with sound), in a project that is created once and remembered through
the injected `load_project` / `save_project` (the backend never touches the store). A job's reference is its
`PollRef` as JSON: everything a status check needs after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.backends import errors as be
from bot.backends.base import Balance, Cost, GenerationRequest, GenerationState, Outcome, Submission
from bot.backends.flow import errors as fe
from bot.backends.flow.client import FlowClient
from bot.backends.flow.credentials import Credentials
from bot.backends.flow.models import GenerationSpec, PollRef, PollResult
from bot.backends.flow.models import GenerationState as FlowState

log = logging.getLogger(__name__)

#: Flow's price per video in credits (Veo 3.1 in late 2025: fast 20, quality 100); shown as an estimate only.
CREDITS: dict[str, int] = {"fast": 20, "quality": 100}

_STATES = {
    FlowState.RUNNING: GenerationState.RUNNING,
    FlowState.SUCCEEDED: GenerationState.SUCCEEDED,
    FlowState.FAILED: GenerationState.FAILED,
}


class FlowBackend:
    """The team's Flow account; see the module docstring."""

    name = "flow"

    def __init__(
        self,
        client: FlowClient,
        credentials: Credentials,
        *,
        max_concurrent: int = 5,
        project_id: str | None = None,
        load_project: Callable[[], Awaitable[str | None]] | None = None,
        save_project: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.credentials = credentials
        self.max_concurrent = max_concurrent
        self._project_id = project_id
        self._load_project = load_project
        self._save_project = save_project
        self._project_lock = asyncio.Lock()

    # -- what Flow can do -----------------------------------------------------------------------------

    def validate(self, request: GenerationRequest) -> None:
        if request.model not in CREDITS:
            raise be.NotSupported("Flow has no lite model; use the fast or quality model.")
        if request.image or request.last_frame or request.references or request.video:
            raise be.NotSupported(
                "Flow can only make videos from text here; drop the images, or ask an admin to use the Vertex AI "
                "backend."
            )
        if request.duration != 8:
            raise be.NotSupported("Flow makes 8-second videos only; ask for 8 seconds.")
        if request.resolution != "720p":
            raise be.NotSupported("Flow makes 720p videos only; ask for 720p.")
        if not request.audio:
            raise be.NotSupported("Flow always makes videos with sound; leave the audio on.")
        if request.negative_prompt:
            raise be.NotSupported("Flow does not take a negative prompt; describe what you want in the prompt.")
        if request.seed > 2**31 - 1:
            raise be.NotSupported("Flow takes seeds up to 2147483647.")

    def estimate(self, request: GenerationRequest) -> Cost:
        return Cost(amount=float(CREDITS.get(request.model, 0)), unit="credits")

    def can_extend(self) -> bool:
        return False

    def web_link(self, ref: str) -> str | None:
        base = f"{self.client.labs_base}/fx/tools/flow"
        try:
            project = PollRef.model_validate_json(ref).project_id
        except ValidationError:
            return base
        return f"{base}/project/{project}" if project else base

    # -- generations ------------------------------------------------------------------------------------

    async def project_id(self) -> str:
        """The Flow project: from settings, else the stored one, else created once (single-flight)."""
        if self._project_id:
            return self._project_id
        async with self._project_lock:  # concurrent first submissions must not create one project each
            if self._project_id:
                return self._project_id
            stored = await self._load_project() if self._load_project else None
            if not stored:
                try:
                    stored = await self.client.create_project("Veo bot")
                except be.Unavailable as err:
                    # The generate call was never sent: nothing can have been charged, the jobs may wait.
                    raise fe.UpstreamUnavailable(f"creating the Flow project failed: {err}") from err
                if self._save_project:
                    await self._save_project(stored)
            self._project_id = stored
            return stored

    async def submit(self, requests: Sequence[GenerationRequest]) -> list[Submission | be.BackendError]:
        """One generate call for the whole command (one charge per request)."""
        for request in requests:
            self.validate(request)
        project = await self.project_id()
        specs = [
            GenerationSpec(prompt=r.prompt, aspect=r.aspect, model=r.model, seed=r.seed, scene_id=str(uuid.uuid4()))
            for r in requests
        ]
        submitted = await self.client.generate(project, specs)
        by_scene = {s.scene_id: s for s in submitted}
        out: list[Submission | be.BackendError] = []
        for spec in specs:
            sub = by_scene.get(spec.scene_id)
            if sub is None and len(specs) == len(submitted) == 1:
                sub = submitted[0]
            if sub is None:
                out.append(fe.BadResponse("Flow's answer has no operation for one of our scenes"))
                continue
            ref = sub.poll_ref(project).model_copy(update={"scene_id": spec.scene_id})
            out.append(Submission(ref=ref.model_dump_json()))
        return out

    async def poll(self, refs: Sequence[str]) -> list[Outcome]:
        """One batched status call per 50 generations (Flow has a batch status route)."""
        parsed: list[tuple[str, PollRef]] = []
        for ref in refs:
            try:
                parsed.append((ref, PollRef.model_validate_json(ref)))
            except ValidationError:
                log.error("unreadable Flow job reference; skipped")
        results = await self.client.check_status([p for _, p in parsed])
        by_name = {r.operation_name: r for r in results}
        out: list[Outcome] = []
        for ref, poll_ref in parsed:
            result = by_name.get(poll_ref.operation_name)
            if result is not None:
                out.append(_outcome(ref, result))
        return out

    async def fetch(self, ref: str, outcome: Outcome | None, dest: Path) -> int:
        result = outcome.handle if outcome is not None and isinstance(outcome.handle, PollResult) else None
        if result is None:
            fresh = await self.poll([ref])
            result = next(
                (o.handle for o in fresh if o.state is GenerationState.SUCCEEDED and isinstance(o.handle, PollResult)),
                None,
            )
            if result is None:
                raise fe.BadResponse("Flow no longer reports this video as finished")
        return await self.client.download(result, dest)

    # -- account -------------------------------------------------------------------------------------------

    async def check(self) -> None:
        await self.client.credits()

    async def balance(self) -> Balance | None:
        credits = await self.client.credits()
        return Balance(credits=credits.credits, tier=credits.tier)


def _outcome(ref: str, result: PollResult) -> Outcome:
    state = _STATES[result.state]
    failure = None
    detail = None
    if state is GenerationState.FAILED:
        failure = result.failure_category or "unknown"
        detail = result.failure_reason
    return Outcome(ref=ref, state=state, failure=failure, detail=detail, handle=result)
