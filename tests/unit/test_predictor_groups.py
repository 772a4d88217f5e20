"""The predictor's counts of predictions by protected group (``engage_prediction_group_total``): exact
counts on a small batch, the contract's groups and bins, ``other``, nothing without the attributes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from engage.contract import load_contract
from engage.telemetry import metric
from engage_serving.predictor._groups import SMALL_ROWS, GroupAttribute, GroupCounter

pytestmark = pytest.mark.unit

CONTRACT = load_contract(Path(__file__).parents[2] / "contracts" / "customers_contract.yml")
CARRIED = ["customer_id", "gender", "age"]
NAME = "engage_prediction_group_total"


def counter(thresholds: dict[str, float] | None = None) -> tuple[GroupCounter, CollectorRegistry]:
    registry = CollectorRegistry()
    made = GroupCounter.for_contract(
        "engage",
        CONTRACT,
        CARRIED,
        thresholds or {"churn_probability": 0.5},
        metric("engage_prediction_group").create(registry),
    )
    assert made is not None
    return made, registry


def series(registry: CollectorRegistry) -> dict[tuple[str, str, str, str], float]:
    """(head, attribute, group, decision) -> count, of model ``engage``."""
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == NAME:
                labels = sample.labels
                assert labels["model"] == "engage"
                key = (labels["head"], labels["attribute"], labels["group"], labels["decision"])
                out[key] = sample.value
    return out


def test_a_small_batch_is_counted_exactly_by_group_and_decision() -> None:
    groups, registry = counter()
    out = {"churn_probability": [0.9, 0.2, 0.5, 0.7, 0.1], "engagement_score": [0.1, 0.9, 0.5, 0.5, 0.5]}
    extras: dict[str, list[Any]] = {
        "customer_id": ["a", "b", "c", "d", "e"],
        "gender": ["female", "male", "female", "robot", None],  # robot: no category of the contract
        "age": [30, 17, "40", None, 70],  # 17: under the first bin; "40": a number as text
    }
    groups.count(out, extras)
    found = {k: v for k, v in series(registry).items() if v}
    assert found == {
        ("churn_probability", "gender", "female", "positive"): 2,  # 0.9, and 0.5 at the threshold
        ("churn_probability", "gender", "male", "negative"): 1,
        ("churn_probability", "gender", "other", "positive"): 1,
        ("churn_probability", "age", "25-34", "positive"): 1,
        ("churn_probability", "age", "other", "negative"): 1,
        ("churn_probability", "age", "35-49", "positive"): 1,
        ("churn_probability", "age", "65-120", "negative"): 1,
    }  # the row without gender, the row without age: not counted; engagement is no classification head
    every = series(registry)  # every group and decision of both attributes exists, at 0 until counted
    assert len(every) == 2 * (4 + 6)
    assert every[("churn_probability", "gender", "non_binary", "positive")] == 0
    groups.count(out, extras)  # the same batch again: the counts double
    assert series(registry)[("churn_probability", "gender", "female", "positive")] == 4


def test_without_protected_attributes_there_is_no_series() -> None:
    groups, registry = counter()
    out = {"churn_probability": [0.9, 0.1]}
    groups.count(out, {})
    groups.count(out, {"customer_id": ["a", "b"]})
    groups.count(out, {"gender": [None, None]})  # carried but empty
    assert series(registry) == {}
    no_classifier = GroupCounter.for_contract(
        "engage", CONTRACT, CARRIED, {}, metric("engage_prediction_group").create(CollectorRegistry())
    )
    assert no_classifier is None
    assert GroupCounter.for_contract("engage", CONTRACT, ["customer_id"], {"churn_probability": 0.5}) is None


@pytest.mark.parametrize("times", [1, SMALL_ROWS])  # row by row, and with numpy
def test_the_threshold_decides_and_odd_values_are_other(times: int) -> None:
    groups, registry = counter({"churn_probability": 0.8})
    odd: list[Any] = [["female"], {"a": 1}, 3.5, True]  # not a category: other (never an error)
    ages: list[Any] = ["x", [1], 20.5, 1e300]  # not a number, or past the last bin: other
    out = {"churn_probability": [0.9, 0.7, 0.85, 0.1] * times}
    groups.count(out, {"gender": odd * times, "age": ages * times})
    found = {k: v / times for k, v in series(registry).items() if v}
    assert found == {
        ("churn_probability", "gender", "other", "positive"): 2,
        ("churn_probability", "gender", "other", "negative"): 2,
        ("churn_probability", "age", "other", "positive"): 1,
        ("churn_probability", "age", "other", "negative"): 2,
        ("churn_probability", "age", "18-24", "positive"): 1,
    }


def test_a_large_batch_matches_a_row_by_row_count() -> None:
    rng = np.random.default_rng(7)
    rows = 2000
    gender = rng.choice(np.asarray(["female", "male", "non_binary", "x", None], dtype=object), rows).tolist()
    age: list[Any] = rng.integers(10, 130, rows).tolist()
    age[:3] = [None, float("nan"), "nan"]  # missing, as numpy and the row-by-row look-up both read it
    prob = rng.random(rows).tolist()
    groups, registry = counter()
    groups.count({"churn_probability": prob}, {"gender": gender, "age": age})
    edges = CONTRACT.columns["age"].bins or []
    labels = GroupAttribute.binned("age", edges).groups
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for g, a, p in zip(gender, age, prob, strict=True):
        decision = "positive" if p >= 0.5 else "negative"
        if g is not None:
            expected["churn_probability", "gender", g if g != "x" else "other", decision] += 1
        if isinstance(a, int):
            bins = [labels[i] for i in range(len(edges) - 1) if edges[i] <= a < edges[i + 1]]
            expected["churn_probability", "age", bins[0] if bins else "other", decision] += 1
    assert {k: v for k, v in series(registry).items() if v} == dict(expected)
    one_by_one, registry = counter()  # the same rows, one request each: the row-by-row look-up
    for i in range(rows):
        one_by_one.count(
            {"churn_probability": prob[i : i + 1]}, {"gender": gender[i : i + 1], "age": age[i : i + 1]}
        )
    assert {k: v for k, v in series(registry).items() if v} == dict(expected)


def test_the_predictor_flag_takes_a_probability(capsys: pytest.CaptureFixture[str]) -> None:
    from engage_serving.predictor.__main__ import predictor_parser

    parser = predictor_parser()
    assert parser.parse_args([]).fairness_threshold is None
    assert parser.parse_args(["--fairness_threshold", "0.3"]).fairness_threshold == 0.3
    for bad in ("1", "0", "half"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--fairness_threshold", bad])
        assert "give a probability strictly between 0 and 1" in capsys.readouterr().err
