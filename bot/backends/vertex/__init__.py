"""Veo on Vertex AI (Google Cloud) through the google-genai SDK."""

from __future__ import annotations

from bot.backends.vertex._credentials import CredentialsFileError, load_service_account
from bot.backends.vertex._models import DEFAULT_MODELS, resolve_models
from bot.backends.vertex.backend import VertexBackend

__all__ = ["DEFAULT_MODELS", "CredentialsFileError", "VertexBackend", "load_service_account", "resolve_models"]
