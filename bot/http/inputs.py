"""Reading request bodies: JSON or multipart into a pydantic model, and uploaded images onto disk.

Parsed by hand rather than with FastAPI's Form parameters, so that one request model serves both encodings
(the `openai` SDK always sends multipart) and every mistake is a 400 in our error shape, never a 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from bot.http.errors import ApiError, validation_message
from bot.images import ImageRefused, store_image

M = TypeVar("M", bound=BaseModel)

MAX_FORM_FIELDS = 32


def _nest(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Form fields to a dict; `video[id]` (how the SDK encodes nested objects) becomes {"video": {"id": ...}}."""
    out: dict[str, Any] = {}
    for name, value in items:
        if name.endswith("]") and "[" in name:
            outer, inner = name[:-1].split("[", 1)
            slot = out.setdefault(outer, {})
            if isinstance(slot, dict):
                slot[inner] = value
        else:
            out[name] = value
    return out


class Body:
    """A parsed request body: plain fields and uploaded files; close() frees the files' spool."""

    def __init__(self, fields: dict[str, Any], files: dict[str, UploadFile]) -> None:
        self.fields = fields
        self.files = files
        self._closers: list[UploadFile] = list(files.values())

    async def close(self) -> None:
        for upload in self._closers:
            with contextlib.suppress(Exception):
                await upload.close()


async def read_body(request: Request, *, max_part: int) -> Body:
    """JSON or multipart (or urlencoded) into fields and files; 400 for a body we cannot read."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=4, max_fields=MAX_FORM_FIELDS, max_part_size=max_part)
        except MultiPartException as err:
            raise ApiError(400, "invalid_request", f"The multipart body could not be read ({err.message}).") from None
        except (ValueError, AssertionError, KeyError) as err:
            raise ApiError(400, "invalid_request", "The form body could not be read.") from err
        fields: list[tuple[str, Any]] = []
        files: dict[str, UploadFile] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[name] = value
            else:
                fields.append((name, value))
        return Body(_nest(fields), files)
    raw = await request.body()
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ApiError(400, "invalid_request", "Send application/json or multipart/form-data.")
    if not raw.strip():
        return Body({}, {})
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_request", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    return Body(data, {})


async def read_model(request: Request, model: type[M], *, max_part: int) -> M:
    """A body that carries fields only (no file we keep) straight into `model`; 400 for anything else."""
    body = await read_body(request, max_part=max_part)
    try:
        return parse(model, body.fields)
    finally:
        await body.close()


def parse(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        raise ApiError(400, "invalid_request", validation_message(err)) from None


async def save_image(upload: UploadFile, *, cap: int, data_dir: Path) -> Path:
    """Keep an uploaded image with the job (bot/images.py: sniffed, decoded, written atomically under
    VEO_DATA_DIR/inputs); 413 over `cap`, 400 for anything that is not a whole PNG, JPEG or WebP."""
    size = upload.size
    if size is None:
        size = await asyncio.to_thread(_size_of, upload)
    if size > cap:
        raise ApiError(413, "file_too_large", f"input_reference is larger than {cap // (1024 * 1024)} MB.")
    await upload.seek(0)
    data = await upload.read()
    try:
        saved = await asyncio.to_thread(store_image, data, data_dir, what="input_reference", max_bytes=cap)
    except ImageRefused as err:
        raise ApiError(400, "invalid_image", f"{err} It must be a PNG, JPEG or WebP image.") from None
    return saved.path


def _size_of(upload: UploadFile) -> int:
    upload.file.seek(0, os.SEEK_END)
    return upload.file.tell()


async def discard(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(path.unlink)
