"""One face for both video backends' emulators, so an end-to-end test written once runs on Flow and on Vertex AI.

A test takes the `gen` fixture (parametrised "flow" / "vertex" in conftest) and uses only what both backends share:
endings chosen by a word in the prompt (a video, a failure the user is told about, never finishing), the videos
made, how many submits arrived, and the settings of a bot pointed at that emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.settings import Settings
from tests.e2e.conftest import make_settings, make_vertex_settings
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator
from tests.fakes.flow_emulator import Outcome as FlowOutcome
from tests.fakes.vertex_emulator import Ending, VertexEmulator

Ends = Literal["video", "failed", "stuck"]

#: The stored error kind of a job whose generation "failed" (a safety filter on both backends).
FAILED_KIND = "content_filter"


@dataclass
class Gen:
    """The emulator of one backend under test."""

    name: Literal["flow", "vertex"]
    tmp_path: Path
    flow: FlowEmulator | None = None
    vertex: VertexEmulator | None = None

    @property
    def emulator(self) -> FlowEmulator | VertexEmulator:
        emulator = self.flow or self.vertex
        assert emulator is not None
        return emulator

    # --- the bot's settings -------------------------------------------------------------------------------

    def settings(self, fd: FakeDiscord, *, max_concurrent: int | None = None, **overrides: Any) -> Settings:
        if self.flow is not None:
            if max_concurrent is not None:
                overrides["flow_max_concurrent"] = max_concurrent
            return make_settings(self.tmp_path, self.flow, fd, **overrides)
        assert self.vertex is not None
        if max_concurrent is not None:
            overrides["vertex_max_concurrent"] = max_concurrent
        return make_vertex_settings(self.tmp_path, self.vertex, fd, **overrides)

    @property
    def secret_file(self) -> Path | None:
        """The credentials file a refused admin command must leave untouched (Flow's cookie file)."""
        return self.tmp_path / "cookie.json" if self.flow is not None else None

    # --- how generations end ----------------------------------------------------------------------------------

    def ends(self, prompt_contains: str, how: Ends, *, video_size: int | None = None) -> None:
        """Generations whose prompt contains the text end so (the first rule wins)."""
        if self.flow is not None:
            outcome = {
                "video": FlowOutcome.success(video_size=video_size),
                "failed": FlowOutcome.failed("PUBLIC_ERROR_VIOLENCE"),
                "stuck": FlowOutcome.stuck(),
            }[how]
            self.flow.outcome_for(prompt_contains, outcome)
            return
        assert self.vertex is not None
        if video_size is not None:
            self.vertex.video_size = video_size  # the emulator sizes every later operation alike
        ending = {"video": Ending.video(), "failed": Ending.filtered(), "stuck": Ending.never()}[how]
        self.vertex.ending_for(prompt_contains, ending)

    def finish(self, ref: str) -> None:
        """A generation that was stuck finishes with a video."""
        if self.flow is not None:
            self.flow.set_outcome(ref, FlowOutcome.success())
        else:
            assert self.vertex is not None
            self.vertex.set_ending(ref, Ending.video())

    def set_polls_to_finish(self, n: int) -> None:
        self.emulator.polls_to_finish = n

    # --- what the emulator saw ------------------------------------------------------------------------------

    @property
    def refs(self) -> list[str]:
        """Every generation made, in order (Flow generation names / Vertex operation names)."""
        return list(self.flow.generations) if self.flow is not None else list(self.vertex.operations)  # type: ignore[union-attr]

    def video_bytes(self, ref: str) -> bytes:
        return self.emulator.video_bytes(ref)

    @property
    def submit_route(self) -> str:
        return "generate" if self.flow is not None else "submit"

    @property
    def poll_route(self) -> str:
        return "status" if self.flow is not None else "poll"

    def submits(self) -> int:
        return len(self.emulator.calls(self.submit_route))

    def requests_but_polls(self) -> int:
        """Requests that could change something at the backend (everything but status polls)."""
        return len([r for r in self.emulator.requests if r.route != self.poll_route])

    async def wait_for_polls(self, count: int = 1) -> None:
        await self.emulator.wait_for_calls(self.poll_route, count)
