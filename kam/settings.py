"""Settings of ``kam demo``: the size and seed of the synthetic world it runs on.

Environment variables ``KAM_DEMO_ACCOUNTS``, ``KAM_DEMO_YEARS``, ``KAM_SEED`` and
``KAM_DEMO_CAPACITY``; the demo
trains with the training settings beneath them.
"""

from __future__ import annotations

from pydantic import Field

from kam.training.settings import TrainSettings


class DemoSettings(TrainSettings):
    """The demo's synthetic world, on top of the training settings it trains with."""

    demo_accounts: int = Field(2000, gt=0, description="accounts in the demo world")
    demo_years: int = Field(5, gt=0, description="years of history in the demo world")
    seed: int = Field(7, description="seed of the demo world (same seed, same world)")
    demo_capacity: str = Field(
        "AR=120h,SR=60h,FR=40h,executive=10",
        description="each owner's capacity for the demo's plan (kam plan --capacity)",
    )
