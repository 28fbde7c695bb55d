"""The page's stylesheet and script, served by this app: the page loads nothing from elsewhere."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

STATIC_TYPES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


@cache
def static_asset(name: str) -> tuple[bytes, str]:
    """A static file's bytes and the digest that versions its URL."""
    data = resources.files("kam.serving.web").joinpath("static", name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content so it can be cached for good."""
    return f"/static/{name}?v={static_asset(name)[1]}"


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    """The page's stylesheet and script (served here: the page loads nothing from elsewhere)."""
    if name not in STATIC_TYPES:
        return Response("not found\n", status_code=404, media_type="text/plain")
    data, digest = static_asset(name)
    etag = f'"{digest}"'
    headers = {
        "ETag": etag,
        # versioned URLs (?v=<digest>) change with the content, so browsers may keep them
        "Cache-Control": "public, max-age=31536000, immutable"
        if request.query_params.get("v") == digest
        else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=STATIC_TYPES[name], headers=headers)
