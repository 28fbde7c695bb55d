"""`/docs` and `/redoc` render in Chromium with every request off the machine refused.

The pages' scripts and styles come from the service itself (``fastapi-offline``'s bundles), so
an integrator behind a firewall still reads the API's documentation. Uses the web tests' live
server and browser fixtures (skipped, like them, without Chromium or Playwright).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

# the web tests' fixtures, used here by name
from tests.serving.web.test_browser import ARTIFACTS, browser, live, web_world  # noqa: F401

LOOPBACK = {"127.0.0.1", "localhost"}
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def open_offline(chromium: Any, url: str) -> tuple[Any, Any, list[str], list[str]]:
    """A tab where every request off the machine fails, on ``url``; (context, page, errors,
    refused requests)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []
    errors: list[str] = []

    def route(request_route: Any) -> None:
        if urlsplit(request_route.request.url).hostname in LOOPBACK:
            request_route.continue_()
        else:
            refused.append(request_route.request.url)
            request_route.abort("internetdisconnected")

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    page.goto(url)
    return context, page, errors, refused


def test_swagger_ui_renders_offline(live: str, browser: Any) -> None:  # noqa: F811
    schema = httpx.get(f"{live}/openapi.json").json()
    operations = sum(len(ops) for ops in schema["paths"].values())
    context, page, errors, refused = open_offline(browser, f"{live}/docs")
    try:
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".opblock").count() == operations
        assert page.locator(".info .title").inner_text().startswith("kam")
        page.locator(".opblock-summary-path", has_text="/v1/score").first.click()
        page.wait_for_selector("text=FeatureRowRequest", timeout=10_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs-swagger.png"))
        assert errors == [] and refused == [], (errors, refused)
    finally:
        context.close()


def test_redoc_renders_offline(live: str, browser: Any) -> None:  # noqa: F811
    context, page, errors, refused = open_offline(browser, f"{live}/redoc")
    try:
        page.get_by_text("Score one posted feature row").first.wait_for(timeout=30_000)
        assert page.get_by_text("/v1/score", exact=True).count() > 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs-redoc.png"))
        assert errors == [], errors
        # ReDoc's bundle hard-codes its "by Redocly" logo, an image it hides when unreachable:
        # the one request off the machine, and the page needs nothing from it
        assert all(url == REDOC_LOGO for url in refused), refused
    finally:
        context.close()
