"""The words the decision rules speak: causes, techniques, owners, tiers, families and stages.

Each code is defined here once, with its English label where managers read one; the phrase
catalog, the playbook, the API schemas and the web pages import them from here. The ``Literal``
types validate catalog files and requests; the tuples (in the same order) give the integer codes
the vectorised rules use (``CAUSES[code]``).

The feature families are the exception: every feature's family is set in the feature catalog
(``features/catalog.py``), so :data:`FAMILIES` is read from there and only the labels live here.
The simulator (``features/synthetic/catalog.py``) keeps its own copy of the causes and owners,
as ``features`` must not import ``serving``; the tests hold the two equal.
"""

from __future__ import annotations

from typing import Literal, get_args

from kam.features.catalog import families

# The defection causes a driver points to: the three root causes of DOMAIN §2 and the
# relationship aggravators (single-threaded, no senior contact, turnover).
Cause = Literal["competitor_price", "unmet_needs", "unresolved_complaints", "relationship"]
CAUSES: tuple[str, ...] = get_args(Cause)
# The three root causes, the codes 0-2 (the order of CAUSES is relied on).
ROOT_CAUSES: tuple[str, ...] = CAUSES[:3]
CAUSE_LABELS: dict[str, str] = {
    "competitor_price": "a competitor wins on price or offer",
    "unmet_needs": "product or supply no longer meets needs",
    "unresolved_complaints": "complaints not resolved in time",
    "relationship": "thin relationship (single-threaded, no senior contact)",
}
# Symptoms (falling spend, sour contact sentiment) point to no cause of their own: they take the
# cause the account's root-cause evidence shows. In cause-code arrays they hold EVIDENCE_CODE
# until that is settled.
Evidence = Literal["evidence"]
EVIDENCE: str = get_args(Evidence)[0]
EVIDENCE_CODE = -2


def cause_code(cause: str) -> int:
    """The integer code of a cause name: its index in :data:`CAUSES`.

    Parameters
    ----------
    cause
        A name of :data:`CAUSES`, or :data:`EVIDENCE`.

    Returns
    -------
    int
        The index, or :data:`EVIDENCE_CODE` for ``evidence``.
    """
    return EVIDENCE_CODE if cause == EVIDENCE else CAUSES.index(cause)


# The seven retention techniques of key-account management, plus differentiated service by tier.
Technique = Literal[
    "build_relationship_network",
    "raise_relationship_level",
    "influence_purchasing_standard",
    "guarantee_product_quality",
    "raise_service_level",
    "guarantee_priority_supply",
    "keep_communication_open",
    "differentiated_service",
]
TECHNIQUES: tuple[str, ...] = get_args(Technique)
TECHNIQUE_LABELS: dict[str, str] = {
    "build_relationship_network": "Build a strong relationship network",
    "raise_relationship_level": "Raise the relationship level",
    "influence_purchasing_standard": "Influence the purchasing standard",
    "guarantee_product_quality": "Guarantee product quality",
    "raise_service_level": "Raise the service level",
    "guarantee_priority_supply": "Guarantee priority supply",
    "keep_communication_open": "Keep communication channels open",
    "differentiated_service": "Differentiated service by tier",
}

# Who owns an action: the iron triangle of account, solution and fulfilment responsible, or an
# executive sponsor.
Owner = Literal["AR", "SR", "FR", "executive sponsor"]
OWNERS: tuple[str, ...] = get_args(Owner)
OWNER_LABELS: dict[str, str] = {
    "AR": "account responsible",
    "SR": "solution responsible",
    "FR": "fulfilment responsible",
    "executive sponsor": "executive sponsor",
}

# A/B/C by cumulative share of predicted value (see stages.assign_tiers); the code is its label.
Tier = Literal["A", "B", "C"]
TIERS: tuple[str, ...] = get_args(Tier)

FAMILIES: tuple[str, ...] = tuple(families())
FAMILY_LABELS: dict[str, str] = {
    "spend": "Spend",
    "rhythm": "Order rhythm",
    "breadth": "Product breadth",
    "price": "Price and margin",
    "relationship": "Relationship",
    "service": "Service and complaints",
    "supply": "Supply and delivery",
    "account": "Account profile",
    "season": "Season",
}

# The relationship model's development stages (see stages.relationship_stage).
Stage = Literal[
    "exploratory",
    "basic",
    "co-operative",
    "interdependent",
    "integrated",
    "disintegrating",
]
STAGES: tuple[str, ...] = get_args(Stage)
STAGE_LABELS: dict[str, str] = {
    "exploratory": "first year of buying",
    "basic": "one seller, one buyer",
    "co-operative": "several people or buyer roles in contact",
    "interdependent": "several buyer roles, executive contact, years of buying",
    "integrated": "most buyer roles and recent executive contact, three years or more",
    "disintegrating": "spend eroding or orders stopped",
}

# The same words in Chinese (zh-CN): the terms of Chinese key-account practice (大客户管理).
CAUSE_LABELS_ZH: dict[str, str] = {
    "competitor_price": "竞争对手以价格或条件取胜",
    "unmet_needs": "产品或供应不再满足需求",
    "unresolved_complaints": "投诉未能及时解决",
    "relationship": "关系薄弱（单线联系、缺少高层联系）",
}
TECHNIQUE_LABELS_ZH: dict[str, str] = {
    "build_relationship_network": "建立牢固的关系网络",
    "raise_relationship_level": "提升关系层级",
    "influence_purchasing_standard": "影响采购标准",
    "guarantee_product_quality": "保证产品质量",
    "raise_service_level": "提升服务水平",
    "guarantee_priority_supply": "保证优先供货",
    "keep_communication_open": "保持沟通渠道畅通",
    "differentiated_service": "按客户等级差异化服务",
}
# 铁三角: 客户经理 AR, 方案经理 SR, 交付经理 FR; and the executive sponsor
OWNER_LABELS_ZH: dict[str, str] = {
    "AR": "客户经理",
    "SR": "方案经理",
    "FR": "交付经理",
    "executive sponsor": "高层发起人",
}
FAMILY_LABELS_ZH: dict[str, str] = {
    "spend": "采购额",
    "rhythm": "下单节奏",
    "breadth": "产品广度",
    "price": "价格与毛利",
    "relationship": "客户关系",
    "service": "服务与投诉",
    "supply": "供货与交付",
    "account": "客户概况",
    "season": "季节",
}
# A stage's name, as the page shows it
STAGE_NAMES: dict[str, str] = {
    "exploratory": "exploratory",
    "basic": "basic",
    "co-operative": "co-operative",
    "interdependent": "interdependent",
    "integrated": "integrated",
    "disintegrating": "disintegrating",
}
STAGE_NAMES_ZH: dict[str, str] = {
    "exploratory": "探索期",
    "basic": "基础期",
    "co-operative": "合作期",
    "interdependent": "相互依赖期",
    "integrated": "整合期",
    "disintegrating": "衰退期",
}
STAGE_LABELS_ZH: dict[str, str] = {
    "exploratory": "采购第一年",
    "basic": "一名销售对一名采购",
    "co-operative": "与多人或多个采购角色保持联系",
    "interdependent": "多个采购角色、有高层联系、多年采购",
    "integrated": "覆盖大部分采购角色且近期有高层联系，三年以上",
    "disintegrating": "采购额下滑或已停止下单",
}
TIER_NAMES: dict[str, str] = {t: f"Tier {t}" for t in TIERS}
TIER_NAMES_ZH: dict[str, str] = {t: f"{t}类" for t in TIERS}

# Every label set, by language tag: the words people read for each code.
LABELS: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "causes": CAUSE_LABELS,
        "techniques": TECHNIQUE_LABELS,
        "owners": OWNER_LABELS,
        "families": FAMILY_LABELS,
        "stages": STAGE_NAMES,
        "stage_meanings": STAGE_LABELS,
        "tiers": TIER_NAMES,
    },
    "zh-CN": {
        "causes": CAUSE_LABELS_ZH,
        "techniques": TECHNIQUE_LABELS_ZH,
        "owners": OWNER_LABELS_ZH,
        "families": FAMILY_LABELS_ZH,
        "stages": STAGE_NAMES_ZH,
        "stage_meanings": STAGE_LABELS_ZH,
        "tiers": TIER_NAMES_ZH,
    },
}


def label(kind: str, code: str | None, language: str) -> str | None:
    """The word for ``code`` of ``kind`` (causes, owners, ...) in ``language``.

    A code without a word in that language is said in English marked ``[EN] ``, and one without
    any word as the code itself, so nothing is shown blank.
    """
    if code is None:
        return None
    words = LABELS[language][kind]
    if code in words:
        return words[code]
    english = LABELS["en"][kind].get(code)
    return code if english is None else "[EN] " + english
