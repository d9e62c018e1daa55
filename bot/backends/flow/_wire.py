"""Wire models of Flow's JSON: every field optional unless we cannot work without it; unknown fields are kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)


class RpcStatus(Wire):
    """``operation.error`` / ``mediaStatus.error``: a google.rpc.Status."""

    code: int | None = None
    message: str | None = None


class OpVideo(Wire):
    seed: int | None = None
    media_generation_id: str | None = None
    fife_url: str | None = None
    serving_base_uri: str | None = None
    model: str | None = None
    aspect_ratio: str | None = None


class OpMetadata(Wire):
    name: str | None = None
    video: OpVideo | None = None


class Operation(Wire):
    name: str = Field(min_length=1)
    metadata: OpMetadata | None = None
    error: RpcStatus | None = None


class OperationEntry(Wire):
    operation: Operation
    scene_id: str | None = None
    status: str | None = None
    media_generation_id: str | None = None


class MediaStatus(Wire):
    media_generation_status: str | None = None
    error: RpcStatus | None = None
    failure_reasons: list[str] = Field(default_factory=list)


class MediaMetadata(Wire):
    media_status: MediaStatus | None = None


class MediaOperation(Wire):
    name: str | None = None


class MediaVideo(Wire):
    operation: MediaOperation | None = None
    fife_url: str | None = None


class MediaEntry(Wire):
    name: str = Field(min_length=1)
    project_id: str | None = None
    scene_id: str | None = None
    workflow_id: str | None = None
    media_metadata: MediaMetadata | None = None
    video: MediaVideo | None = None


class GenerateResponse(Wire):
    operations: list[OperationEntry] | None = None
    media: list[MediaEntry] | None = None
    workflows: list[dict[str, Any]] | None = None
    remaining_credits: int | None = None


class StatusResponse(GenerateResponse):
    """Same envelope as generate: ``operations[]`` and/or ``media[]``."""


class CreditsResponse(Wire):
    credits: int
    user_paygate_tier: str = Field(min_length=1)


class MediaGetVideo(Wire):
    encoded_video: str | None = None
    fife_url: str | None = None


class MediaGetResponse(Wire):
    name: str | None = None
    video: MediaGetVideo
    #: An object here ({mediaType, projectId, ...}), a string inside ``video``: keep whatever comes.
    media_generation_id: Any = None


class _ProjectResult(Wire):
    project_id: str = Field(min_length=1)


class _ProjectJson(Wire):
    result: _ProjectResult


class _ProjectData(Wire):
    json_: _ProjectJson = Field(alias="json")


class _ProjectEnvelope(Wire):
    data: _ProjectData


class CreateProjectResponse(Wire):
    """tRPC ``project.createProject``: ``result.data.json.result.projectId``."""

    result: _ProjectEnvelope

    @property
    def project_id(self) -> str:
        return self.result.data.json_.result.project_id


class ErrorDetail(Wire):
    type_: str | None = Field(default=None, alias="@type")
    reason: str | None = None
    field_violations: list[dict[str, Any]] | None = None


class ErrorBody(Wire):
    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorEnvelope(Wire):
    error: ErrorBody
