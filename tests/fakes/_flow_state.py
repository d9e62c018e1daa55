"""Plain records the Flow emulator keeps: requests it saw and generations it runs."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes._flow_faults import Outcome

Protocol = Literal["operations", "media"]
GenerationState = Literal["PENDING", "ACTIVE", "SUCCESSFUL", "FAILED"]
TERMINAL_STATES: frozenset[str] = frozenset({"SUCCESSFUL", "FAILED"})

ROUTE_NAMES: tuple[str, ...] = (
    "session",
    "credits",
    "project",
    "generate",
    "status",
    "media_get",
    "fife",
    "redirect",
    "signin",
    "tools",
)


@dataclass
class RecordedRequest:
    """One request as received; `headers` keys are lower-cased, `fault` names the fault applied if any."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    text: str
    at: float
    fault: str | None = None


@dataclass
class Generation:
    """One video job inside the emulator, keyed by its operation name (= media name in the media protocol)."""

    name: str
    protocol: Protocol
    scene_id: str
    media_name: str
    media_generation_id: str
    prompt: str
    seed: int
    model_key: str
    aspect: str
    project_id: str
    workflow_id: str
    batch_id: str
    cost: int
    outcome: Outcome
    video_size: int
    created_at: float
    polls: int = 0
    state: GenerationState = "PENDING"
    structured_prompt: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state not in TERMINAL_STATES


def media_generation_id(project_id: str, workflow_id: str, media_key: str) -> str:
    """Encode Flow's protobuf-in-base64url id (`CAUSJ...`): type VIDEO, project, workflow, step, key."""

    def field_bytes(number: int, value: str) -> bytes:
        raw = value.encode()
        return bytes([number << 3 | 2, len(raw)]) + raw

    payload = (
        bytes([0x08, 0x05])
        + field_bytes(2, project_id)
        + field_bytes(3, workflow_id)
        + field_bytes(4, "CAE")
        + field_bytes(5, media_key)
    )
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")
