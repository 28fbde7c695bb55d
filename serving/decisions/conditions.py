"""The small condition language of the phrase catalog and the playbook's triggers.

A condition compares one feature of an account with a number (``executive_contact_recency_days
>= 60``; in the phrase catalog the feature may be left out, ``< 0``, and is the phrased one), or
asks whether the value is missing (``on_time_rate_180d missing``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from kam.features.catalog import CATALOG
from kam.serving.decisions.formats import settled_array

_NUMERIC = {f.name for f in CATALOG if f.kind != "category"}

ArrayOp = Callable[[np.ndarray, float], np.ndarray]
ScalarOp = Callable[[float, float], bool]
# Each comparison on arrays (numpy) and on one value (plain Python, much cheaper there), side by
# side so that an operator cannot be added to one path only.
OPERATORS: dict[str, tuple[ArrayOp, ScalarOp]] = {
    ">=": (np.greater_equal, operator.ge),
    "<=": (np.less_equal, operator.le),
    "==": (np.equal, operator.eq),
    "!=": (np.not_equal, operator.ne),
    ">": (np.greater, operator.gt),
    "<": (np.less, operator.lt),
}
_CONDITION = re.compile(
    r"^\s*(?:(?P<feature>[a-z_][a-z0-9_]*)\s+)?"
    r"(?:(?P<missing>missing)|(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>[-+]?\d+(?:\.\d+)?))\s*$"
)


@dataclass(frozen=True)
class Condition:
    """``feature op value`` (or ``feature missing``) on an account's feature values.

    A comparison is false where the value is missing, so a condition never fires on a feature
    the account has no data for; ``missing`` is true exactly there. Values are settled
    (:func:`~kam.serving.decisions.formats.settled`) before they are compared, so that a
    figure's last bits, which vary with the order of a sum, cannot flip a comparison. For one
    account on plain floats, see :func:`kam.serving.decisions.one_row.holds_one`.
    """

    feature: str
    op: str
    value: float = math.nan

    @classmethod
    def parse(cls, text: str, default_feature: str | None = None) -> Condition:
        """Read ``"executive_contact_recency_days >= 60"``, ``"< 0"`` or ``"missing"``.

        Parameters
        ----------
        text
            The condition.
        default_feature
            Feature a condition without a feature name applies to.

        Returns
        -------
        Condition

        Raises
        ------
        ValueError
            When the text is not a condition or names no feature and has no default; the
            message shows the accepted forms.
        """
        match = _CONDITION.match(str(text))
        if not match:
            raise ValueError(
                f"cannot read condition {text!r}: write '<feature> <op> <number>' "
                f"(op one of {', '.join(OPERATORS)}) or '<feature> missing'"
            )
        feature = match["feature"] or default_feature
        if feature is None:
            raise ValueError(f"condition {text!r} names no feature")
        if feature not in _NUMERIC:
            raise ValueError(f"condition {text!r}: {feature!r} is not a numeric catalog feature")
        if match["missing"]:
            return cls(feature, "missing")
        return cls(feature, match["op"], float(match["value"]))

    def holds(self, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Where the condition holds, for every account.

        Parameters
        ----------
        values
            Feature name -> float array over the accounts (NaN = no value).
        n
            Number of accounts.

        Returns
        -------
        numpy.ndarray
            Boolean array; all false when the feature is absent from ``values``.
        """
        column = values.get(self.feature)
        if column is None:
            # the feature is not in this data at all (e.g. transactions only): never "missing"
            # in the sense of an event that did not happen, and no comparison can hold
            return np.zeros(n, dtype=bool)
        column = np.asarray(column, dtype=float)
        if self.op == "missing":
            return np.isnan(column)
        column = settled_array(column)
        if self.op == "!=":  # the one comparison that is true on NaN
            return (column != self.value) & ~np.isnan(column)
        return OPERATORS[self.op][0](column, self.value)

    def __str__(self) -> str:
        if self.op == "missing":
            return f"{self.feature} missing"
        return f"{self.feature} {self.op} {self.value:g}"
