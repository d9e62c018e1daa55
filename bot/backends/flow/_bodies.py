"""What the client sends: one request's description (``Call``) and the JSON bodies the web app sends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from yarl import URL

from bot.backends.flow._results import PENDING_STATUS, GenerationSpec, PollRef
from bot.backends.flow.keys import ASPECT_RATIOS, model_key

Auth = Literal["bearer", "cookie", "none"]

TOOL = "PINHOLE"


@dataclass(frozen=True)
class Call:
    """One logical request; ``safe`` ones may be re-sent after a failure that may have reached Flow."""

    method: str
    url: str
    auth: Auth
    safe: bool
    body: Any = None
    params: Mapping[str, str] | None = None
    allow_redirects: bool = True
    #: Statuses that mean "this media route is gone" (MediaExpired) rather than a Flow error.
    expired: frozenset[int] = frozenset()
    #: Bulk media transfers may get their own timeout.
    media: bool = False

    @property
    def path(self) -> str:
        """Method and path are all we ever log: no query (signatures), no host."""
        return URL(self.url).path


def project_body(title: str) -> dict[str, Any]:
    """tRPC ``project.createProject`` input, as the web app sends it."""
    return {"json": {"projectTitle": title, "toolName": TOOL}}


def build_generate_body(
    project_id: str,
    specs: Sequence[GenerationSpec],
    tier: str,
    session_id: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The operations-protocol text-to-video body of flow-api.md §3 (no reCAPTCHA context, ever)."""
    return {
        "clientContext": {
            "projectId": project_id,
            "tool": TOOL,
            "userPaygateTier": tier,
            "sessionId": session_id,
        },
        "requests": [
            {
                "aspectRatio": ASPECT_RATIOS[s.aspect],
                "seed": s.seed,
                "textInput": {"prompt": s.prompt},
                "videoModelKey": model_key(s.model, s.aspect, tier, overrides),
                "metadata": {"sceneId": s.scene_id},
            }
            for s in specs
        ],
    }


def status_body(protocol: str, refs: Sequence[PollRef]) -> dict[str, Any]:
    if protocol == "media":
        media: list[dict[str, str]] = []
        for r in refs:
            entry = {"name": r.media_name or r.operation_name}
            if r.project_id:
                entry["projectId"] = r.project_id
            media.append(entry)
        return {"media": media}
    return {
        "operations": [
            {"operation": {"name": r.operation_name}, "sceneId": r.scene_id or "", "status": PENDING_STATUS}
            for r in refs
        ]
    }
