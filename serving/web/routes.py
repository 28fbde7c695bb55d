"""The managers' web page as one router: the at-risk list, account pages, CSV export, sign-in.

Wire it into the app with ``app.include_router(router)``. Each part of the page keeps its own
routes in its module: :mod:`~kam.serving.web.pages` (``/``, ``/accounts/{id}``),
:mod:`~kam.serving.web.export` (``/export.csv``), :mod:`~kam.serving.web.signin` (``/login``,
``/logout``) and :mod:`~kam.serving.web.assets` (``/static/{name}``).
"""

from __future__ import annotations

from fastapi import APIRouter

from kam.serving.web import assets, export, pages, plan, signin

router = APIRouter(include_in_schema=False)
for part in (pages, export, signin, assets, plan):
    router.include_router(part.router)
