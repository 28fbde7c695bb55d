import pandas as pd
import pytest

from kam.features.periods import Period


@pytest.mark.parametrize(
    ("text", "count", "unit", "days"),
    [
        ("365d", 365, "day", 365),
        ("26w", 26, "week", 182),
        ("6mo", 6, "month", 182.625),
        ("6m", 6, "month", 182.625),
        ("1y", 1, "year", 365.25),
        (" 90D ", 90, "day", 90),
    ],
    ids=["days", "weeks", "months", "months-short", "years", "spaces-upper"],
)
def test_parse(text: str, count: int, unit: str, days: float) -> None:
    period = Period.parse(text)
    assert (period.count, period.unit) == (count, unit)
    assert period.approx_days() == pytest.approx(days)


@pytest.mark.parametrize("text", ["", "0d", "-5d", "12", "3 fortnights", "d365"])
def test_parse_rejects_with_a_message_naming_the_input(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read period"):
        Period.parse(text)


def test_month_offset_is_calendar_aware() -> None:
    assert pd.Timestamp("2024-01-31") + Period.parse("1mo").offset() == pd.Timestamp("2024-02-29")
    assert str(Period.parse("26w")) == "26w"
