"""labs.google after the September 2026 move (flow-api.md §0): the tool page, and a migrated account's answers.

A migrated account keeps a live-looking cookie but gets `200 {}` from the session endpoint for good, a 308
from `/fx/tools/flow` to flow.google.com, 401 from every aisandbox-pa call and 404 from the tRPC routes.
A merely signed-out account gets the tool page itself (200) or, when asked for, a redirect to sign-in.
"""

from __future__ import annotations

from aiohttp import web

from tests.fakes._flow_bodies import trpc_error
from tests.fakes._flow_faults import unauthorized_envelope

TOOL_PATH = "/fx/tools/flow"
MIGRATED_LOCATION = "https://flow.google.com/tools/flow?utm_source=labs_redirect"

#: The labs.google landing page of the Flow tool (trimmed); served signed in or out.
TOOL_PAGE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Flow | Google Labs</title></head>
<body><div id="__next"><h1>Flow</h1><p>Create cinematic scenes with Veo.</p>
<a href="/fx/api/auth/signin">Sign in</a></div></body></html>
"""

_TRPC_PATHS = {"project": "project.createProject", "redirect": "media.getMediaUrlRedirect"}


def tool_page(*, migrated: bool, signed_out: bool, sign_in_redirect: bool) -> web.StreamResponse:
    """`GET /fx/tools/flow`: 308 to flow.google.com when migrated; else the page, or a redirect to sign-in."""
    if migrated:
        return web.Response(status=308, headers={"Location": MIGRATED_LOCATION})
    if signed_out and sign_in_redirect:
        return web.Response(status=302, headers={"Location": "/fx/api/auth/signin?callbackUrl=%2Ffx%2Ftools%2Fflow"})
    return web.Response(text=TOOL_PAGE_HTML, content_type="text/html", charset="utf-8")


def migrated_answer(route: str) -> web.StreamResponse | None:
    """What a migrated account gets on `route` (None: served as usual, e.g. signed CDN media and sign-in)."""
    if route == "session":
        return web.json_response({})
    if route in _TRPC_PATHS:
        body = trpc_error(404, "NOT_FOUND", "No procedure found", _TRPC_PATHS[route])
        return web.json_response(body, status=404)
    if route in ("credits", "generate", "status", "media_get"):
        return web.json_response(unauthorized_envelope(), status=401)
    return None
