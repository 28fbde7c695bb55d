"""What a training run leaves behind for people: plots and the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# the object-oriented Figure needs no GUI backend, so nothing global is switched on import
from matplotlib.figure import Figure

from kam.models.metadata import TrainingMetadata
from kam.models.scorer import Scorer
from kam.training.evaluate import Evaluation, format_table


def plot_calibration(evaluation: Evaluation, path: Path) -> Path:
    """Reliability diagram of the defection probabilities on the test as_of."""
    cal = evaluation.calibration
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    ax.plot(cal["mean_predicted"], cal["observed_rate"], marker="o", label="model")
    ax.set(
        xlabel="predicted defection probability",
        ylabel="observed defection rate",
        title=f"Calibration, as_of {evaluation.as_of.date()}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_gains(evaluation: Evaluation, path: Path) -> Path:
    """Cumulative gains: share of defections caught by the top x% of accounts."""
    pred = evaluation.predictions
    y = pred["label_defection"].to_numpy()
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    share = np.arange(1, len(y) + 1) / len(y)
    for column, label in (
        ("defection_probability", "model"),
        ("recency_baseline", "days since last order"),
    ):
        order = np.argsort(-pred[column].to_numpy(), kind="stable")
        ax.plot(share, np.cumsum(y[order]) / max(y.sum(), 1), label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="random")
    ax.set(xlabel="share of accounts (ranked)", ylabel="share of defections", title="Gains")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def importance(scorer: Scorer) -> pd.DataFrame:
    """Gain importance of both models by feature, with its family."""
    names = list(scorer.spec.names)
    frame = pd.DataFrame(
        {
            "feature": names,
            "family": [scorer.spec.families.get(n, "other") for n in names],
            "defection_gain": scorer.defection.feature_importance("gain"),
            "value_gain": scorer.value.feature_importance("gain"),
        }
    )
    return frame.sort_values("defection_gain", ascending=False, ignore_index=True)


def plot_importance(table: pd.DataFrame, path: Path, top: int = 20) -> Path:
    """Top features of the defection model by gain."""
    head = table.head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * len(head) + 1.2))
    ax = fig.subplots()
    ax.barh(head["feature"] + " (" + head["family"] + ")", head["defection_gain"])
    ax.set(xlabel="gain", title="Defection model: feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def shap_by_feature(scorer: Scorer, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SHAP contributions to the defection log-odds of each row (LightGBM's ``pred_contrib``,
    the same the drivers come from), and the feature values they belong to.

    Returns
    -------
    (contributions, values)
        Two frames, one row per row of ``frame`` and one column per model feature; values as
        the model reads them (categories as their codes).
    """
    names = list(scorer.spec.names)
    x = scorer.spec.matrix(frame)
    contributions = scorer.contributions(x)[:, : len(names)]  # the last column is the bias
    return pd.DataFrame(contributions, columns=names), pd.DataFrame(x, columns=names)


def plot_shap_summary(scorer: Scorer, frame: pd.DataFrame, path: Path, top: int = 15) -> Path:
    """SHAP summary of the defection model on ``frame``: by family, and a beeswarm by feature.

    The family bars are the mean absolute sum of a family's contributions per account (what
    the family as a whole moves the log-odds); the beeswarm shows each account's contribution
    of the ``top`` features, coloured by the feature's rank among the accounts (grey: missing).
    """
    contributions, values = shap_by_feature(scorer, frame)
    families = pd.Series({n: scorer.spec.families.get(n, "other") for n in scorer.spec.names})
    by_family = (
        contributions.T.groupby(families).sum().T.abs().mean().sort_values(ascending=True)
    )
    order = contributions.abs().mean().sort_values(ascending=False).index[:top][::-1]
    fig = Figure(figsize=(12, 0.32 * max(len(order), len(by_family)) + 1.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    left.barh(by_family.index, by_family.to_numpy(), color="#4c72b0")
    left.set(xlabel="mean |SHAP| (log-odds)", title="By family")
    rng = np.random.default_rng(0)  # jitter only: the figure is the same for the same run
    for row, name in enumerate(order):
        shap = contributions[name].to_numpy()
        value = values[name]
        known = value.notna().to_numpy()
        rank = value.rank(pct=True).to_numpy()
        jitter = row + rng.uniform(-0.3, 0.3, len(shap))
        right.scatter(shap[~known], jitter[~known], s=4, color="lightgrey", rasterized=True)
        points = right.scatter(
            shap[known], jitter[known], s=4, c=rank[known], cmap="coolwarm", vmin=0, vmax=1,
            rasterized=True,
        )
    right.axvline(0, color="grey", lw=0.8)
    right.set_yticks(range(len(order)), [f"{n} ({families[n]})" for n in order])
    right.set(xlabel="SHAP contribution to defection log-odds", title="Top features")
    if len(order):
        fig.colorbar(points, ax=right, label="feature value (rank: low to high)")
    fig.suptitle(f"Defection model: SHAP summary over {len(contributions):,} accounts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# The model card's own words in each language it is written in; what the run itself says (the
# split, the fit's notes, warnings) stays as the run wrote it, marked where it is English.
CARD_LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
UNTRANSLATED = "[EN] "
CARD_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Model card",
        "data": "Data",
        "rows": "rows",
        "split": "Split",
        "labels": "Population and labels",
        "population": "Population at as_of",
        "population_ever": "every account with an order on or before as_of (ever)",
        "population_window": "accounts with an order in the {window} up to as_of",
        "value": "Value: net revenue in (as_of, as_of + {horizon}]",
        "defection": "Defection",
        "defection_stop": "no net revenue in the {horizon} after as_of "
        "(decline 1.0: stopped buying)",
        "defection_decline": "value < {share} x revenue in the {horizon} before as_of\n"
        "  (decline {decline}; 1.0 means stopped buying)",
        "test": "Test metrics (as_of {day}, {accounts} accounts, {defections} defections)",
        "baselines": "Baselines: defection = days since last order; value = revenue in the "
        "previous {horizon}.",
        "windows": "Validation windows (rolling origin)",
        "choices": "Choices",
        "limits": "Known limits",
        "limit_pooled": "Trained on pooled snapshots every {every}; accounts appear at several "
        "as_of dates, so rows are not independent.",
        "limit_records": "Defection and value are predicted from the seller's own records: "
        "accounts that shrink for reasons the data cannot show (their own business, budget "
        "cuts) are not separable.",
        "reproduction": "Reproduction",
        "code": "Code",
        "seed": "Seed of the fit",
        "hashes": "Data: the content hashes of the input tables in the run's "
        "`data/fingerprint.json`.",
        "not_recorded": "not recorded",
    },
    "zh-CN": {
        "title": "模型卡",
        "data": "数据",
        "rows": "行",
        "split": "数据划分",
        "labels": "客户范围与标签",
        "population": "评分日的客户范围",
        "population_ever": "评分日及之前有过订单的所有客户（ever）",
        "population_window": "评分日前{window}内有订单的客户",
        "value": "价值：评分日后{horizon}内的净收入",
        "defection": "流失",
        "defection_stop": "评分日后{horizon}内无净收入（decline 1.0：停止采购）",
        "defection_decline": "评分日后{horizon}的价值低于之前{horizon}收入的{share}倍\n"
        "  （decline {decline}；1.0 表示停止采购）",
        "test": "测试指标（评分日 {day}，{accounts}个客户，{defections}个流失）",
        "baselines": "基准：流失 = 距上次下单天数；价值 = 之前{horizon}的收入。",
        "windows": "验证窗口（滚动起点）",
        "choices": "建模选择",
        "limits": "已知局限",
        "limit_pooled": "训练数据为每{every}一次的快照合并而成；同一客户出现在多个评分日，"
        "各行并不独立。",
        "limit_records": "流失与价值仅依据卖方自身的记录预测：因数据无法反映的原因（客户自身"
        "经营、预算削减）而缩减的客户无法区分。",
        "reproduction": "复现",
        "code": "代码",
        "seed": "训练随机种子",
        "hashes": "数据：输入表的内容哈希见本次运行的 `data/fingerprint.json`。",
        "not_recorded": "未记录",
    },
}


def model_card(
    *,
    metadata: TrainingMetadata,
    plan_text: str,
    evaluation: Evaluation,
    fit_notes: list[str],
    window_table: pd.DataFrame,
    fingerprint: dict[str, dict[str, Any]],
    seed: int | None = None,
    code_version: str | None = None,
    language: str = "en",
) -> str:
    """A short markdown model card: data window, population, labels, metrics, limits.

    ``language`` is one of :data:`CARD_LANGUAGES`; in another language than English, what the
    run wrote in English (split, notes, warnings) is kept and marked :data:`UNTRANSLATED`.
    """
    w = CARD_WORDS[language]
    mark = "" if language == "en" else UNTRANSLATED
    horizon, decline, window = metadata.horizon, metadata.decline, metadata.activity_window
    population = (
        w["population_ever"] if window is None else w["population_window"].format(window=window)
    )
    # with decline 1.0 an account defects when it buys nothing (net), not below nothing
    defection = (
        w["defection_stop"].format(horizon=horizon)
        if decline >= 1
        else w["defection_decline"].format(
            share=f"{1 - decline:.2f}", horizon=horizon, decline=decline
        )
    )
    metrics = format_table(evaluation).reset_index().to_markdown(index=False)
    windows = window_table.to_markdown(index=False, floatfmt=".4f")
    tables = "\n".join(
        f"- `{t}`: {f['rows']:,} {w['rows']}, {f.get('start', '?')} .. {f.get('end', '?')}"
        for t, f in fingerprint.items()
    )
    limits = [
        w["limit_pooled"].format(every=metadata.snapshot_every),
        w["limit_records"],
        *(mark + warning for warning in evaluation.warnings),
    ]
    test = w["test"].format(
        day=evaluation.as_of.date(),
        accounts=f"{evaluation.n_rows:,}",
        defections=f"{evaluation.n_defections:,}",
    )
    return f"""# {w["title"]}: {metadata.model_name}

## {w["data"]}
{tables}

{w["split"]}: {mark}{plan_text}

## {w["labels"]}
- {w["population"]}: {population}.
- {w["value"].format(horizon=horizon)}.
- {w["defection"]}: {defection}.

## {test}
{w["baselines"].format(horizon=horizon)}

{metrics}

## {w["windows"]}
{windows}

## {w["choices"]}
{chr(10).join("- " + mark + n for n in fit_notes)}

## {w["limits"]}
{chr(10).join("- " + n for n in limits)}

## {w["reproduction"]}
- {w["code"]}: {code_version or w["not_recorded"]}.
- {w["seed"]}: {w["not_recorded"] if seed is None else seed}.
- {w["hashes"]}
"""
