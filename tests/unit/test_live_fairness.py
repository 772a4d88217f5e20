"""Live fairness: judged on the gate's bootstrap intervals, with a group minimum, so noise is not bias drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.contract import load_contract
from engage.fairness._gate import _judge
from engage.fairness._metrics import AttributeFairness, Figure, GroupRow
from engage.feedback import LiveRule, live_report
from engage.policy import load_policy

NAN = math.nan


@pytest.fixture(scope="module")
def contract() -> Any:
    return load_contract()


@pytest.fixture(scope="module")
def policy() -> Any:
    return load_policy()


def _attribute(parity: Figure, odds: Figure) -> dict[str, AttributeFairness]:
    rows = [GroupRow("female", 1500, True, {}), GroupRow("male", 1500, True, {})]
    summary = {"demographic_parity_ratio": parity, "equalized_odds_difference": odds}
    return {"gender": AttributeFairness("gender", "binary_classification", rows, summary)}


@pytest.mark.parametrize(
    ("parity", "odds", "on_value", "on_interval"),
    [
        # points cross both rules, but each interval reaches the passing side: noise, not bias drift
        (Figure(0.75, 0.70, 0.85), Figure(0.12, 0.06, 0.18), (False, False), (True, True)),
        # the whole interval on the wrong side (high < 0.8; low > 0.1): crossed
        (Figure(0.70, 0.62, 0.79), Figure(0.16, 0.11, 0.21), (False, False), (False, False)),
        # points hold: holds either way
        (Figure(0.90, 0.78, 0.99), Figure(0.05, 0.01, 0.12), (True, True), (True, True)),
    ],
)
def test_a_live_rule_is_crossed_only_when_its_whole_interval_is(
    policy: Any, parity: Figure, odds: Figure, on_value: tuple[bool, ...], on_interval: tuple[bool, ...]
) -> None:
    figures = _attribute(parity, odds)
    gate = _judge("churn", "binary_classification", figures, policy, 1000)
    live = _judge("churn", "binary_classification", figures, policy, 1000, on="interval")
    assert [r.rule for r in live] == [r.rule for r in gate]  # same rules, same names
    assert [r.rule for r in gate] == [
        "gender: demographic_parity_ratio >= 0.8",
        "gender: equalized_odds_difference <= 0.1",
    ]
    assert tuple(r.passed for r in gate) == on_value
    assert tuple(r.passed for r in live) == on_interval
    assert [r.observed for r in live] == [parity.value, odds.value]  # observed: the point estimate


def test_a_figure_without_an_interval_is_not_judged_live(policy: Any) -> None:
    figures = _attribute(Figure(0.5, NAN, NAN), Figure(0.02, 0.0, 0.04))
    parity, odds = _judge("churn", "binary_classification", figures, policy, 1000, on="interval")
    assert parity.passed
    assert parity.rule.endswith("(not judged: no bootstrap interval)")
    assert parity.observed == 0.5
    assert odds.passed


# ---- through the live report ----------------------------------------------------------------------------


def _window(n: int, seed: int, *, bias: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` logged churn predictions and their outcomes drawn from them (a calibrated model, the same
    for everyone); ``bias`` makes the women's outcomes disagree with the prediction in that share of
    their rows (the model is worse for them: equalized odds)."""
    rng = np.random.default_rng(seed)
    churn = 1 / (1 + np.exp(-(2.5 * rng.normal(size=n) - 1.0)))
    gender = rng.choice(["female", "male"], size=n)
    when = pd.Timestamp("2026-06-01T08:00:00Z") + pd.to_timedelta(np.arange(n), unit="min")
    ids = [f"c{seed}-{i}" for i in range(n)]
    events = pd.DataFrame(
        {
            "event_id": ids, "row": 0, "event_time": when, "model_name": "engage", "model_version": "v1",
            "customer_id": ids, "gender": gender, "age": rng.integers(18, 80, size=n),
            "prediction__churn_probability": churn,
        }
    )  # fmt: skip
    churned = rng.random(n) < churn
    flip = (gender == "female") & (rng.random(n) < bias)
    outcomes = pd.DataFrame(
        {
            "customer_id": ids,
            "observed_at": when + pd.Timedelta(days=30),
            "churned": np.where(flip, churn < 0.5, churned),
        }
    )
    return events, outcomes


def _fairness_rules(report: Any) -> list[Any]:
    return [r for r in report.rules if r.section == "live_fairness"]


def test_a_stream_without_a_shift_raises_no_live_fairness_alarm(contract: Any, policy: Any) -> None:
    """Small windows of an unbiased model (600 rows; groups of 100 judged, so age bands of ~150 rows
    are): the point estimates cross a rule in some windows by chance alone; their intervals do not."""
    small = policy.model_copy(
        update={"fairness": policy.fairness.model_copy(update={"min_group_size": 100, "bootstrap": 100})}
    )
    windows_points_crossed = 0
    for seed in range(5):
        report = live_report(*_window(600, seed), contract, small)
        assert "live_fairness" not in report.crossed, report.reasons
        judged = [r for r in _fairness_rules(report) if isinstance(r.observed, float)]
        assert judged, "no live fairness rule was judged"
        assert all(isinstance(r, LiveRule) and r.interval is not None for r in judged)
        windows_points_crossed += any(
            not (r.observed >= r.threshold if ">" in r.rule else r.observed <= r.threshold) for r in judged
        )
    assert windows_points_crossed >= 2  # the point estimates alone would have raised alarms


def test_a_real_bias_is_still_crossed_and_its_interval_reported(contract: Any, policy: Any) -> None:
    report = live_report(*_window(2_500, 7, bias=0.3), contract, policy)
    crossed = [r for r in report.failures if r.section == "live_fairness"]
    odds = next(r for r in crossed if r.rule == "gender: equalized_odds_difference <= 0.1")
    assert isinstance(odds, LiveRule)
    assert odds.interval is not None
    low, high = odds.interval
    assert isinstance(odds.observed, float)
    assert 0.1 < low <= odds.observed <= high  # the whole interval on the wrong side
    assert any(
        reason.startswith("live_fairness: churn: gender: equalized_odds_difference <= 0.1 (observed")
        and f"95 % interval {low:.4g} to {high:.4g}" in reason
        for reason in report.reasons
    )
    (shown,) = [r for r in report.to_json()["rules"] if r["rule"] == odds.rule]
    assert list(shown["interval"]) == [low, high]
    assert f"| {odds.rule} | {odds.observed:.4g} | {low:.4g} to {high:.4g} | NO |" in report.markdown()


def test_groups_under_the_policy_minimum_are_not_judged_live(contract: Any, policy: Any) -> None:
    """The policy's min_group_size (1,000) for live windows, never scaled down by min_group_share: a
    2,500-row window judges gender (two groups of ~1,250) but not the age bands or intersections; a
    1,500-row window judges nothing yet, however biased, and says why."""
    report = live_report(*_window(2_500, 7), contract, policy)
    notes = report.heads["churn"].notes
    assert any(
        n.startswith("live fairness: age: not judged yet: too few labelled rows in 18-24 ") for n in notes
    )
    assert any(
        n.startswith("live fairness: gender&age: not judged yet: too few labelled rows") for n in notes
    )
    assert all("(a group needs 1,000)" in n for n in notes if n.startswith("live fairness"))
    assert not any(n.startswith("live fairness: gender:") for n in notes)
    assert any(
        r.rule.startswith("gender: ") and isinstance(r.observed, float) for r in _fairness_rules(report)
    )

    small = live_report(*_window(1_500, 8, bias=0.3), contract, policy)
    assert "live_fairness" not in small.crossed
    rules = _fairness_rules(small)
    assert all(r.passed and r.observed is None for r in rules)
    unjudged = rules[-1]
    assert unjudged.rule.startswith("two groups in one protected attribute, each of at least 1,000 test rows")
    assert unjudged.rule.endswith("(not judged yet: too few labelled rows)")
    assert any(
        n.startswith("live fairness: gender: not judged yet: too few labelled rows in female ")
        for n in small.heads["churn"].notes
    )


def test_live_fairness_reads_a_bounded_seeded_sample_of_a_large_window(
    contract: Any, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engage.feedback._report as report_module

    monkeypatch.setattr(report_module, "LIVE_FAIRNESS_ROWS", 2_400)
    window = _window(2_500, 7, bias=0.3)
    first, again = (live_report(*window, contract, policy) for _ in range(2))
    note = "live fairness measured on a seeded sample of 2,400 of the 2,500 labelled rows"
    assert note in first.heads["churn"].notes
    judged = [(r.rule, r.observed, r.interval) for r in _fairness_rules(first) if isinstance(r, LiveRule)]
    assert judged == [
        (r.rule, r.observed, r.interval) for r in _fairness_rules(again) if isinstance(r, LiveRule)
    ]
    assert "live_fairness" in first.crossed
