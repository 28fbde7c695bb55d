"""The API's routes, one module per resource.

:data:`v1` lists the `/v1` routers (each needs an API key) in the order the app includes them;
:data:`probes` holds the unauthenticated probes and metrics.
"""

from __future__ import annotations

from fastapi import APIRouter

from kam.serving.api.routes import accounts, admin, at_risk, health, model, plan, scores

v1: tuple[APIRouter, ...] = (
    accounts.router,
    scores.router,
    at_risk.router,
    plan.router,
    model.router,
    admin.router,
)
probes = health.router
