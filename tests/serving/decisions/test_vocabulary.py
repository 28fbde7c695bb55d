"""The decision vocabulary: every code has its label, and the simulator speaks the same words."""

from __future__ import annotations

from typing import get_args

import pytest

from kam.features.catalog import families
from kam.features.synthetic import catalog as simulator
from kam.serving.decisions import vocabulary as v


@pytest.mark.parametrize(
    ("codes", "labels"),
    [
        (v.CAUSES, v.CAUSE_LABELS),
        (v.TECHNIQUES, v.TECHNIQUE_LABELS),
        (v.OWNERS, v.OWNER_LABELS),
        (v.FAMILIES, v.FAMILY_LABELS),
        (v.STAGES, v.STAGE_LABELS),
    ],
    ids=["causes", "techniques", "owners", "families", "stages"],
)
def test_every_code_has_a_label_and_every_label_a_code(codes, labels) -> None:
    assert tuple(labels) == tuple(codes)
    assert all(labels.values())


def test_the_tuples_follow_their_literal_types() -> None:
    assert get_args(v.Cause) == v.CAUSES
    assert v.CAUSES[:3] == v.ROOT_CAUSES and "relationship" not in v.ROOT_CAUSES
    assert v.TIERS == get_args(v.Tier) == ("A", "B", "C")
    assert tuple(families()) == v.FAMILIES
    assert [v.cause_code(c) for c in v.CAUSES] == list(range(len(v.CAUSES)))
    assert v.cause_code(v.EVIDENCE) == v.EVIDENCE_CODE < 0


@pytest.mark.parametrize(
    ("simulated", "served"),
    [
        (simulator.CAUSES, v.ROOT_CAUSES),
        (simulator.OWNERS, v.OWNERS),
    ],
    ids=["causes", "owners"],
)
def test_the_simulator_keeps_the_same_words(simulated, served) -> None:
    """features/ may not import serving/: its copy is held equal here."""
    assert tuple(simulated) == tuple(served)


def test_the_simulators_actions_use_served_techniques_owners_and_causes() -> None:
    for action in simulator.ACTION_TYPES:
        assert action.technique in v.TECHNIQUES, action.action
        assert action.owner in v.OWNERS, action.action
        assert action.cause in v.ROOT_CAUSES, action.action
