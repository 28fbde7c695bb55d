"""What a training run records for reproduction and insight: seed, code version, SHAP summary."""

from __future__ import annotations

import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from matplotlib.image import imread
from mlflow import MlflowClient

from kam.training import report
from kam.training.provenance import code_version
from kam.training.report import importance, shap_by_feature
from kam.training.run import TEST_SNAPSHOT
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]


def test_the_run_and_the_registered_version_record_seed_and_code(small_world: World) -> None:
    client = MlflowClient(small_world.tracking)
    run = client.get_run(small_world.outcome.run_id).data
    expected = code_version()
    assert run.params["seed"] == "0" and run.params["code_version"] == expected
    assert run.tags["seed"] == "0" and run.tags["code_version"] == expected
    registered = client.get_model_version(small_world.model_name, "1")
    assert registered.tags["seed"] == "0" and registered.tags["code_version"] == expected
    assert f"Trained by {expected}, seed 0." in registered.description
    mlflow.set_tracking_uri(small_world.tracking)
    card = mlflow.artifacts.load_text(f"runs:/{small_world.outcome.run_id}/model_card.md")
    reproduction = card.split("## Reproduction", 1)[1]
    assert f"- Code: {expected}." in reproduction and "- Seed of the fit: 0." in reproduction


def test_the_model_card_is_logged_in_chinese_too(small_world: World) -> None:
    mlflow.set_tracking_uri(small_world.tracking)
    run = small_world.outcome.run_id
    english = mlflow.artifacts.load_text(f"runs:/{run}/model_card.md")
    chinese = mlflow.artifacts.load_text(f"runs:/{run}/model_card.zh-CN.md")
    headings = [line for line in chinese.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# 模型卡: ")
    assert "## 数据" in headings and "## 已知局限" in headings and "## 复现" in headings
    # the card's own words are Chinese; what the run wrote in English is kept, and marked
    assert "Population" not in chinese and "Known limits" not in chinese
    assert f"{report.UNTRANSLATED}" in chinese
    # the same figures in both
    assert english.split("## Test metrics", 1)[1].split("## ", 2)[0].split("\n", 2)[2] in chinese


def test_every_model_card_word_is_in_every_language() -> None:
    keys = {language: set(words) for language, words in report.CARD_WORDS.items()}
    assert set(keys) == set(report.CARD_LANGUAGES)
    assert all(k == keys["en"] for k in keys.values()), keys
    for language, words in report.CARD_WORDS.items():
        assert all(text.strip() for text in words.values()), language


def test_in_a_checkout_the_code_version_is_its_commit() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert code_version() in {f"git:{head}", f"git:{head}+modified"}


def test_without_git_the_code_version_is_the_installed_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to run
    assert code_version() == f"kam {version('kam')}"


def test_each_run_logs_a_shap_summary_plot(small_world: World, tmp_path: Path) -> None:
    client = MlflowClient(small_world.tracking)
    run_id = small_world.outcome.run_id
    assert "plots/shap_summary.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    mlflow.set_tracking_uri(small_world.tracking)
    image = imread(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="plots/shap_summary.png", dst_path=str(tmp_path)
        )
    )
    height, width = image.shape[:2]
    assert width > 1000 and height > 300  # two panels, fifteen features


def test_the_shap_summary_comes_from_the_models_own_contributions(small_world: World) -> None:
    mlflow.set_tracking_uri(small_world.tracking)
    frame = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=small_world.outcome.run_id, artifact_path=TEST_SNAPSHOT
        )
    )
    scorer = small_world.outcome.fit.scorer
    contributions, values = shap_by_feature(scorer, frame)
    names = list(scorer.spec.names)
    assert list(contributions.columns) == names and len(contributions) == len(frame)
    assert values["revenue_90d"].tolist() == pytest.approx(frame["revenue_90d"].tolist())
    # missing figures stay missing (grey in the beeswarm), not zero
    assert values["visit_gap_days_365d"].isna().tolist() == (
        frame["visit_gap_days_365d"].isna().tolist()
    )
    # the model's own attributions: a feature moves the log-odds exactly when a tree splits on it
    gain = importance(scorer).set_index("feature")["defection_gain"]
    moved = contributions.abs().max() > 0
    # (BG/NBD's log-odds under the trees, when used, count as their feature's part)
    unused = gain[gain == 0].index.difference([scorer.defection_offset_feature])
    assert not moved[unused].any() and moved[gain[gain > 0].index].mean() > 0.9
    assert 0 < len(unused) < len(names)
