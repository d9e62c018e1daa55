"""Helpers that make account details safe to log."""

from __future__ import annotations

__all__ = ["mask_email"]


def mask_email(email: str | None) -> str:
    """Return ``ab***@example.com`` for ``abcdef@example.com``: enough to tell accounts apart, not to read."""
    if not email:
        return "(unknown account)"
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[:2]}***@{domain}"
