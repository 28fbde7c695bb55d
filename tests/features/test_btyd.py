from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from kam.features.btyd import (
    BetaGeo,
    BTYDError,
    BTYDFitError,
    BTYDNotFittedError,
    GammaGamma,
    _estimation,
    rfm_summary,
)

CDNOW = Path(__file__).resolve().parents[1] / "data" / "cdnow_sample_summary.csv"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(CDNOW)


@pytest.fixture(scope="module")
def cdnow_bg(cdnow: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(cdnow["x"], cdnow["t_x"], cdnow["T"])


@pytest.fixture(scope="module")
def cdnow_gg(cdnow: pd.DataFrame) -> GammaGamma:
    return GammaGamma().fit(cdnow["x"], cdnow["zbar"])


# ---------------------------------------------------------------------------------------------
# published CDNOW results


def test_cdnow_sample_is_the_published_one(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 2357
    assert int((cdnow["x"] > 0).sum()) == 946


def test_bgnbd_reproduces_the_published_cdnow_estimates(cdnow_bg: BetaGeo) -> None:
    # Fader, Hardie & Lee (2005), "Counting your customers the easy way", section 5.
    assert round(cdnow_bg.r_, 3) == 0.243
    assert round(cdnow_bg.alpha_, 3) == 4.414
    assert round(cdnow_bg.a_, 3) == 0.793
    assert round(cdnow_bg.b_, 3) == 2.426
    assert round(cdnow_bg.log_likelihood_, 1) == -9582.4
    assert cdnow_bg.n_customers_ == 2357


def test_bgnbd_worked_example_conditional_expectation(cdnow_bg: BetaGeo) -> None:
    # The paper's customer with 2 repeat purchases, the last at 30.43 weeks, observed 38.86 weeks.
    expected = cdnow_bg.expected_purchases(39, 2, 30.43, 38.86)
    assert round(float(expected), 3) == 1.226


def test_gamma_gamma_reproduces_the_published_cdnow_estimates(cdnow_gg: GammaGamma) -> None:
    # Fader, Hardie & Lee (2005), "RFM and CLV", on the sample's 946 repeat customers.
    assert round(cdnow_gg.p_, 2) == 6.25
    assert round(cdnow_gg.q_, 2) == 3.74
    assert round(cdnow_gg.v_, 2) == 15.45
    assert cdnow_gg.n_customers_ == 946


def test_weights_stand_for_repeated_rows(cdnow: pd.DataFrame, cdnow_bg: BetaGeo) -> None:
    rows = cdnow.groupby(["x", "t_x", "T"], as_index=False).size()
    assert len(rows) < len(cdnow)
    compressed = BetaGeo().fit(rows["x"], rows["t_x"], rows["T"], weights=rows["size"])
    for name in ("r_", "alpha_", "a_", "b_", "log_likelihood_", "n_customers_"):
        assert getattr(compressed, name) == pytest.approx(getattr(cdnow_bg, name), rel=1e-6)


def test_gamma_gamma_expected_spend_shrinks_towards_the_population_mean(
    cdnow_gg: GammaGamma,
) -> None:
    p, q, v = cdnow_gg.p_, cdnow_gg.q_, cdnow_gg.v_
    population = p * v / (q - 1)
    spend = cdnow_gg.expected_spend([0, 1, 2, 10, 10], [0.0, 100.0, 22.35, 100.0, 5.0])
    assert spend[0] == pytest.approx(population)
    # with more purchases the customer's own mean counts for more
    assert population < spend[1] < spend[3] < 100.0
    assert 5.0 < spend[4] < population
    assert spend[2] == pytest.approx(p * (v + 2 * 22.35) / (2 * p + q - 1))


# ---------------------------------------------------------------------------------------------
# predictions against simulated BG/NBD customers


def simulate(
    n: int,
    params: tuple[float, float, float, float],
    T: np.ndarray,
    t: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Histories over (0, T] and purchases in (T, T + t] of ``n`` BG/NBD customers.

    Purchases are the first ``K`` events of a Poisson process of rate ``lambda``, where the
    customer drops out after its ``K``-th repeat purchase, ``K ~ Geometric(p)``.
    """
    r, alpha, a, b = params
    lam = rng.gamma(r, 1.0 / alpha, n)
    k = rng.geometric(rng.beta(a, b, n))
    events = rng.poisson(lam * T)
    later = rng.poisson(lam * t)
    x = np.minimum(events, k)
    # given n events in (0, T], the x-th is the x-th order statistic of n uniforms on (0, T)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), events - x + 1), 0.0)
    alive = k > events
    future = np.where(alive, np.minimum(later, k - events), 0)
    return x, tx, alive, future


SCENARIOS = {
    "cdnow-like-a-below-1": (0.243, 4.414, 0.793, 2.426),
    "a-above-1": (0.6, 8.0, 1.8, 4.0),
}


@pytest.fixture(scope="module", params=list(SCENARIOS), ids=list(SCENARIOS))
def simulated(request: pytest.FixtureRequest) -> dict:
    params = SCENARIOS[request.param]
    rng = np.random.default_rng(20050101)
    n, t = 200_000, 26.0
    T = rng.uniform(20.0, 52.0, n)
    x, tx, alive, future = simulate(n, params, T, t, rng)
    model = BetaGeo()
    model.r_, model.alpha_, model.a_, model.b_ = params
    return {"model": model, "x": x, "tx": tx, "T": T, "t": t, "alive": alive, "future": future}


GROUPS = {"x=0": (0, 0), "x=1": (1, 1), "x=2-3": (2, 3), "x>=4": (4, np.inf)}


def assert_calibrated(observed: np.ndarray, predicted: np.ndarray, what: str) -> None:
    # The mean of observed - predicted over any set of histories is 0 when the prediction is the
    # conditional expectation; four standard errors leave a false alarm at about 6e-5 per check.
    diff = observed - predicted
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert abs(diff.mean()) <= 4 * se, f"{what}: mean gap {diff.mean():.4g}, se {se:.3g}"


@pytest.mark.parametrize("group", list(GROUPS), ids=list(GROUPS))
def test_prob_no_purchase_matches_simulation(simulated: dict, group: str) -> None:
    lo, hi = GROUPS[group]
    rows = (simulated["x"] >= lo) & (simulated["x"] <= hi)
    assert rows.sum() > 2_000
    model = simulated["model"]
    predicted = model.prob_no_purchase(
        simulated["t"], simulated["x"][rows], simulated["tx"][rows], simulated["T"][rows]
    )
    observed = (simulated["future"][rows] == 0).astype(float)
    assert_calibrated(observed, predicted, f"P(no purchase) {group}")


@pytest.mark.parametrize("group", list(GROUPS), ids=list(GROUPS))
def test_expected_purchases_matches_simulation(simulated: dict, group: str) -> None:
    lo, hi = GROUPS[group]
    rows = (simulated["x"] >= lo) & (simulated["x"] <= hi)
    model = simulated["model"]
    predicted = model.expected_purchases(
        simulated["t"], simulated["x"][rows], simulated["tx"][rows], simulated["T"][rows]
    )
    assert_calibrated(simulated["future"][rows].astype(float), predicted, f"E[Y] {group}")


@pytest.mark.parametrize("group", list(GROUPS), ids=list(GROUPS))
def test_prob_alive_matches_simulation(simulated: dict, group: str) -> None:
    lo, hi = GROUPS[group]
    rows = (simulated["x"] >= lo) & (simulated["x"] <= hi)
    model = simulated["model"]
    predicted = model.prob_alive(simulated["x"][rows], simulated["tx"][rows], simulated["T"][rows])
    assert_calibrated(simulated["alive"][rows].astype(float), predicted, f"P(alive) {group}")


def test_prob_no_purchase_limits(cdnow_bg: BetaGeo) -> None:
    x, tx, T = np.array([0, 1, 5]), np.array([0.0, 3.0, 30.0]), np.array([38.0, 38.0, 38.0])
    assert np.allclose(cdnow_bg.prob_no_purchase(0.0, x, tx, T), 1.0)
    steps = cdnow_bg.prob_no_purchase(np.array([[1.0], [10.0], [100.0]]), x, tx, T)
    assert steps.shape == (3, 3)
    assert np.all(np.diff(steps, axis=0) < 0)
    # over an endless period only the customers who are gone make no purchase
    far = cdnow_bg.prob_no_purchase(1e80, x, tx, T)
    assert np.allclose(far, 1.0 - cdnow_bg.prob_alive(x, tx, T), atol=1e-6)


@pytest.mark.parametrize("x", [0, 1, 2, 29, 200, 1000], ids=lambda x: f"x={x}")
def test_expected_purchases_match_direct_integration(cdnow_bg: BetaGeo, x: int) -> None:
    # Independent of the closed form: given alive, lambda ~ Gamma(r+x, alpha+T) and
    # p ~ Beta(a, b+x), and an alive customer buys (1 - exp(-lambda p t)) / p on average over t.
    # Integrating lambda out leaves one integral over p, taken over the quantiles of p so that
    # the sharp posterior of frequent buyers is not missed.
    r, alpha, a, b = cdnow_bg.r_, cdnow_bg.alpha_, cdnow_bg.a_, cdnow_bg.b_
    tx, T, t = (30.0 if x else 0.0), 38.0, 52.0
    posterior = stats.beta(a, b + x)

    def per_alive(u: float) -> float:
        p = posterior.ppf(u)
        return -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T))) / p

    given_alive, _ = integrate.quad(per_alive, 0.0, 1.0, limit=200, epsabs=0, epsrel=1e-10)
    direct = float(cdnow_bg.prob_alive(x, tx, T)) * given_alive
    assert float(cdnow_bg.expected_purchases(t, x, tx, T)) == pytest.approx(direct, rel=1e-6)


def test_fit_recovers_simulated_parameters() -> None:
    # 25,000 customers; the likelihood-ratio statistic of the true parameters against the
    # estimate is about chi-square with 4 degrees of freedom, so it stays below its 99.9% point.
    truth = SCENARIOS["cdnow-like-a-below-1"]
    rng = np.random.default_rng(7)
    T = rng.uniform(20.0, 52.0, 25_000)
    x, tx, _, _ = simulate(25_000, truth, T, 1.0, rng)
    fitted = BetaGeo().fit(x, tx, T)
    true_model = BetaGeo()
    true_model.r_, true_model.alpha_, true_model.a_, true_model.b_ = truth
    lr = 2 * 25_000 * (fitted.score(x, tx, T) - true_model.score(x, tx, T))
    assert 0 <= lr < stats.chi2.ppf(0.999, 4)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    p, q, v = 6.0, 4.0, 15.0
    rng = np.random.default_rng(11)
    n = 20_000
    x = rng.integers(1, 12, n)
    nu = rng.gamma(q, 1.0 / v, n)
    # the mean of x Gamma(p, nu) purchases is Gamma(p x, nu x)
    m = rng.gamma(p * x, 1.0 / (nu * x))
    fitted = GammaGamma().fit(x, m)
    truth = GammaGamma()
    truth.p_, truth.q_, truth.v_ = p, q, v
    lr = 2 * n * (fitted.score(x, m) - truth.score(x, m))
    assert 0 <= lr < stats.chi2.ppf(0.999, 3)


# ---------------------------------------------------------------------------------------------
# rfm_summary


@pytest.fixture
def orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "A", "B", "C", "D", "D"],
            "order_date": pd.to_datetime(
                [
                    "2024-01-01",
                    "2024-01-01",  # second order on the first day: one purchase day of 150
                    "2024-01-08",
                    "2024-01-15",
                    "2024-01-20",
                    "2024-02-05",
                    "2024-01-10 10:00",
                    "2024-01-10 18:00",
                ],
                format="ISO8601",
            ),
            "revenue": [100.0, 50.0, 30.0, 20.0, 40.0, 70.0, 5.0, 6.0],
        }
    )


# account -> (frequency, recency days, T days, monetary_value)
RFM_CASES = {
    "all-history": (
        "2024-01-29",
        {"A": (2, 14, 28, 25.0), "B": (0, 0, 9, 0.0), "D": (0, 0, 19, 0.0)},
    ),
    "as-of-a-purchase-day": (
        "2024-01-15",
        {"A": (2, 14, 14, 25.0), "D": (0, 0, 5, 0.0)},
    ),
    "as-of-mid-day": (
        "2024-01-10 12:00",
        {"A": (1, 7, 9, 30.0), "D": (0, 0, 0, 0.0)},
    ),
    "before-any-repeat": (
        "2024-01-07",
        {"A": (0, 0, 6, 0.0)},
    ),
    "after-everything": (
        "2024-03-04",
        {
            "A": (2, 14, 63, 25.0),
            "B": (0, 0, 44, 0.0),
            "C": (0, 0, 28, 0.0),
            "D": (0, 0, 54, 0.0),
        },
    ),
}


@pytest.mark.parametrize("unit_days", [1.0, 7.0], ids=["days", "weeks"])
@pytest.mark.parametrize("case", list(RFM_CASES), ids=list(RFM_CASES))
def test_rfm_summary_hand_computed(orders: pd.DataFrame, case: str, unit_days: float) -> None:
    as_of, rows = RFM_CASES[case]
    expected = pd.DataFrame(
        {
            "frequency": [v[0] for v in rows.values()],
            "recency": [v[1] / unit_days for v in rows.values()],
            "T": [v[2] / unit_days for v in rows.values()],
            "monetary_value": [v[3] for v in rows.values()],
        },
        index=pd.Index(list(rows), name="account_id"),
    ).astype({"frequency": "int64"})
    got = rfm_summary(orders, as_of, unit_days=unit_days)
    pd.testing.assert_frame_equal(got, expected)


LATE_ORDERS = {
    "new-account": ("E", "2024-01-16"),
    "known-account-next-day": ("A", "2024-01-16"),
    "known-account-much-later": ("B", "2025-06-01"),
    "later-the-same-day": ("D", "2024-01-15 23:59"),
}


@pytest.mark.parametrize("late", list(LATE_ORDERS), ids=list(LATE_ORDERS))
def test_rfm_summary_ignores_orders_after_as_of(orders: pd.DataFrame, late: str) -> None:
    as_of = pd.Timestamp("2024-01-15 12:00")
    account, when = LATE_ORDERS[late]
    extra = pd.DataFrame(
        {"account_id": [account], "order_date": [pd.Timestamp(when)], "revenue": [999.0]}
    )
    before = rfm_summary(orders, as_of)
    after = rfm_summary(pd.concat([orders, extra], ignore_index=True), as_of)
    pd.testing.assert_frame_equal(before, after)


def test_rfm_summary_counts_calendar_days_across_daylight_saving() -> None:
    # Paris moved its clocks forward on 2024-03-31: 2024-03-25 to 2024-04-02 is 8 calendar days
    # although only 7 days and 23 hours pass between the two midnights.
    orders = pd.DataFrame(
        {
            "account_id": ["A", "A"],
            "order_date": pd.to_datetime(["2024-03-25 10:00", "2024-04-02 09:00"]).tz_localize(
                "Europe/Paris"
            ),
            "revenue": [1.0, 2.0],
        }
    )
    # 07:30 UTC is 09:30 in Paris, after the second order; 06:30 UTC is before it
    after = rfm_summary(orders, pd.Timestamp("2024-04-02 07:30", tz="UTC"))
    before = rfm_summary(orders, pd.Timestamp("2024-04-02 06:30", tz="UTC"))
    assert after.loc["A"].tolist() == [1, 8.0, 8.0, 2.0]
    assert before.loc["A"].tolist() == [0, 0.0, 8.0, 0.0]
    with pytest.raises(BTYDError, match="as_of cannot be compared with order_date"):
        rfm_summary(orders, "2024-04-05")


def test_rfm_summary_before_any_order_is_empty(orders: pd.DataFrame) -> None:
    summary = rfm_summary(orders, "2023-12-31")
    assert summary.empty
    assert list(summary.columns) == ["frequency", "recency", "T", "monetary_value"]
    assert summary["frequency"].dtype == "int64"


def test_rfm_summary_column_names_and_model_round_trip(orders: pd.DataFrame) -> None:
    renamed = orders.rename(
        columns={"account_id": "customer", "order_date": "day", "revenue": "amount"}
    )
    summary = rfm_summary(
        renamed, "2024-01-29", unit_days=7, account="customer", date="day", value="amount"
    )
    assert summary.index.name == "customer"
    assert list(summary.index) == ["A", "B", "D"]
    model = BetaGeo()
    model.r_, model.alpha_, model.a_, model.b_ = SCENARIOS["cdnow-like-a-below-1"]
    alive = model.prob_alive(summary["frequency"], summary["recency"], summary["T"])
    assert alive.shape == (3,)
    assert alive[1] == alive[2] == 1.0


# ---------------------------------------------------------------------------------------------
# errors


def test_errors_are_value_errors() -> None:
    assert issubclass(BTYDError, ValueError)
    assert issubclass(BTYDFitError, BTYDError)
    assert issubclass(BTYDNotFittedError, BTYDError)


UNFITTED = {
    "prob_alive": lambda: BetaGeo().prob_alive([1], [1.0], [2.0]),
    "expected_purchases": lambda: BetaGeo().expected_purchases(1.0, [1], [1.0], [2.0]),
    "prob_no_purchase": lambda: BetaGeo().prob_no_purchase(1.0, [1], [1.0], [2.0]),
    "bg-score": lambda: BetaGeo().score([1], [1.0], [2.0]),
    "expected_spend": lambda: GammaGamma().expected_spend([1], [10.0]),
}


@pytest.mark.parametrize("call", list(UNFITTED), ids=list(UNFITTED))
def test_predicting_before_fit_is_refused(call: str) -> None:
    with pytest.raises(BTYDNotFittedError, match="not fitted yet: call fit"):
        UNFITTED[call]()


BAD_BG_INPUTS = {
    "recency-after-T": (([1, 2], [3.0, 5.0], [4.0, 4.0]), {}, r"recency > T for 1 customer"),
    "empty": (([], [], []), {}, "no customers: the input is empty"),
    "negative-frequency": (([-1, 2], [0.0, 1.0], [4.0, 4.0]), {}, "frequency has negative"),
    "negative-T": (([0, 0], [0.0, 0.0], [-4.0, 4.0]), {}, "T has negative"),
    "missing-value": (([1, 2], [np.nan, 1.0], [4.0, 4.0]), {}, "recency has missing"),
    "fractional-frequency": (([1.5], [1.0], [4.0]), {}, "whole number"),
    "recency-without-repeat": (([0], [1.0], [4.0]), {}, "recency must be 0 where frequency"),
    "unequal-lengths": (([1, 2], [1.0], [4.0, 4.0]), {}, "differ in length"),
    "weights-length": (([1], [1.0], [4.0]), {"weights": [1, 2]}, "weights has 2 rows"),
    "negative-weights": (([1], [1.0], [4.0]), {"weights": [-1]}, "non-negative"),
    "no-time": (([0, 0], [0.0, 0.0], [0.0, 0.0]), {}, "T = 0"),
}


@pytest.mark.parametrize("case", list(BAD_BG_INPUTS), ids=list(BAD_BG_INPUTS))
def test_bgnbd_fit_rejects_invalid_input(case: str) -> None:
    args, kwargs, message = BAD_BG_INPUTS[case]
    with pytest.raises(BTYDError, match=message):
        BetaGeo().fit(*args, **kwargs)


def test_bgnbd_predictions_reject_recency_after_T(cdnow_bg: BetaGeo) -> None:
    with pytest.raises(BTYDError, match=r"recency > T"):
        cdnow_bg.prob_alive([1, 1], [2.0, 5.0], [4.0, 4.0])
    with pytest.raises(BTYDError, match="t must be finite and non-negative"):
        cdnow_bg.expected_purchases(-1.0, [1], [2.0], [4.0])


BAD_GG_INPUTS = {
    "empty": (([], []), "no customers: the input is empty"),
    "no-repeat-customers": (([0, 0], [0.0, 0.0]), "no customer has a repeat purchase"),
    "non-positive-value": (([1, 2], [10.0, 0.0]), r"monetary_value must be > 0"),
    "negative-frequency": (([-1, 2], [10.0, 5.0]), "frequency has negative"),
}


@pytest.mark.parametrize("case", list(BAD_GG_INPUTS), ids=list(BAD_GG_INPUTS))
def test_gamma_gamma_fit_rejects_invalid_input(case: str) -> None:
    args, message = BAD_GG_INPUTS[case]
    with pytest.raises(BTYDError, match=message):
        GammaGamma().fit(*args)


def test_no_repeat_purchases_cannot_be_fitted() -> None:
    with pytest.raises(BTYDFitError, match="no customer has a repeat purchase"):
        BetaGeo().fit([0, 0, 0], [0.0, 0.0, 0.0], [5.0, 6.0, 7.0])
    # a penalty does not rescue it: the rates run off to zero
    with pytest.raises(BTYDFitError, match="ran off to the edge"):
        BetaGeo(penalizer=0.1).fit([0, 0, 0], [0.0, 0.0, 0.0], [5.0, 6.0, 7.0])


def test_optimiser_failure_is_a_fit_error(
    cdnow: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = optimize.minimize

    def one_step(*args, **kwargs):
        kwargs["options"] = {**kwargs.get("options", {}), "maxiter": 1}
        return real(*args, **kwargs)

    monkeypatch.setattr(_estimation.optimize, "minimize", one_step)
    with pytest.raises(BTYDFitError, match="did not converge"):
        BetaGeo().fit(cdnow["x"], cdnow["t_x"], cdnow["T"])


@pytest.mark.parametrize("penalizer", [-1.0, float("nan")], ids=["negative", "nan"])
def test_penalizer_must_be_a_non_negative_number(penalizer: float) -> None:
    with pytest.raises(BTYDError, match="penalizer must be a non-negative number"):
        BetaGeo(penalizer=penalizer).fit([1], [1.0], [2.0])


def test_rfm_summary_rejects_missing_columns(orders: pd.DataFrame) -> None:
    with pytest.raises(BTYDError, match=r"no column\(s\) \['revenue'\]"):
        rfm_summary(orders.drop(columns="revenue"), "2024-01-29")


def test_estimator_contract(cdnow: pd.DataFrame) -> None:
    model = BetaGeo(penalizer=0.5)
    assert vars(model) == {"penalizer": 0.5}
    assert model.get_params() == {"penalizer": 0.5}
    assert model.set_params(penalizer=0.0) is model
    assert model.penalizer == 0.0
    with pytest.raises(BTYDError, match="no parameter 'alpha'"):
        model.set_params(alpha=1.0)
    assert "not fitted" not in repr(model)
    fitted = model.fit(cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert fitted is model
    assert "r=0.2426" in repr(model)
