"""The Python API for notebooks: its docstring examples run, paths do not depend on the current
folder, and bad input is named."""

from __future__ import annotations

import doctest
from pathlib import Path

import pandas as pd
import pytest

import kam
from kam import project as facade
from kam.models.errors import FeatureRowError
from tests.world import World


@pytest.fixture(scope="module")
def project(small_world: World) -> kam.Project:
    # the world's model is registered but not champion: score with version 1
    return kam.open_project(
        small_world.root,
        model_name=small_world.model_name,
        model_uri=f"models:/{small_world.model_name}/1",
    )


def test_the_docstring_examples_run(project: kam.Project, small_world: World) -> None:
    globs = {"workdir": str(small_world.root), "project": project, "Path": Path, "pd": pd}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(facade, "kam.project", extraglobs=globs)
    examples = sum(len(t.examples) for t in tests)
    for test in tests:
        runner.run(test)
    assert examples >= 15
    assert runner.failures == 0, f"{runner.failures} failing examples (see the output above)"


def test_the_workdir_is_found_from_a_folder_below_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".kam").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("KAM_WORKDIR", raising=False)
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path / "notebooks")
    found = kam.open_project()
    assert found.workdir == (tmp_path / ".kam").resolve()
    assert found.store_url == f"duckdb:///{(tmp_path / '.kam' / 'data' / 'kam.duckdb').resolve()}"
    assert found.tracking_uri == f"sqlite:///{(tmp_path / '.kam' / 'mlflow.db').resolve()}"


def test_no_workdir_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.setenv("KAM_WORKDIR", str(tmp_path / "nowhere"))
    with pytest.raises(kam.ProjectNotFoundError, match="Set KAM_WORKDIR to the absolute path"):
        kam.open_project()
    monkeypatch.delenv("KAM_WORKDIR")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(kam.ProjectNotFoundError, match=r"\.kam in .* or any folder above it"):
        kam.open_project()


def test_a_workdir_without_a_store_names_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    empty = kam.open_project(tmp_path)
    with pytest.raises(Exception, match="KAM_WORKDIR, KAM_DATA_DIR or KAM_STORE_URL"):
        empty.tables()


def test_an_account_outside_the_population_is_named(project: kam.Project) -> None:
    with pytest.raises(KeyError, match="account 'nobody' is not in the population"):
        project.explain("nobody")


def test_explain_gives_the_accounts_record(project: kam.Project) -> None:
    scores = project.score()
    account = scores["account_id"].iloc[3]
    card = project.explain(account)
    assert card.record["rank"] == 4
    assert card.record["defection_probability"] == pytest.approx(
        scores["defection_probability"].iloc[3]
    )
    assert card.features["account_id"] == account and "recency_days" in card.features
    assert len(card.drivers) > 0 and card.drivers["phrase"].str.len().gt(0).all()
    assert list(card.actions.columns)[:2] == ["action_id", "title"]
    assert account in card.summary()


def test_score_rows_names_what_is_wrong(project: kam.Project) -> None:
    with pytest.raises(FeatureRowError, match="recency: unknown feature"):
        project.score_rows(pd.DataFrame({"recency": [3.0]}))
    with pytest.raises(FeatureRowError, match="as_of: expected dates"):
        project.score_rows(pd.DataFrame({"recency_days": [3.0], "as_of": ["someday"]}))
