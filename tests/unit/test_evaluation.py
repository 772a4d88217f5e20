"""Evaluation metrics against independent computations, every bad input, and the HTML report."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from engage.errors import ConfigError, SchemaError
from engage.evaluation import (
    HeadEvaluation,
    calibration_curve,
    classification_metrics,
    confusion,
    expected_calibration_error,
    lift_table,
    regression_metrics,
    render_html_report,
    roc_points,
    value_metrics,
)
from engage.evaluation._metrics import (
    _BAD_COUNT,
    _BAD_THRESHOLD,
    _EMPTY,
    _FEWER_ROWS_THAN_GROUPS,
    _INFINITE_VALUES,
    _LENGTH_MISMATCH,
    _NAN_VALUES,
    _NEGATIVE_COUNT,
    _NOT_BINARY,
    _NOT_NUMERIC,
    _NOT_ONE_DIMENSIONAL,
    _NOT_PROBABILITIES,
    _SINGLE_CLASS,
    _ZERO_TOTAL,
)
from engage.evaluation._report import _NO_PREDICTIONS, _UNKNOWN_TASK, TASKS

CLASSIFICATION_KEYS = {
    "auc_roc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_top_decile",
    "capture_top_decile",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "positive_rate",
}


def _calibrated(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from exactly those probabilities."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.0, 1.0, rows)
    return (rng.uniform(0.0, 1.0, rows) < prob).astype(np.int64), prob


# -- regression and value ------------------------------------------------------------------------------


def test_perfect_regression() -> None:
    y = np.random.default_rng(1).normal(10, 3, 200)
    m = regression_metrics(y, y.copy())
    assert set(m) == {"r2", "rmse", "mae", "spearman"}
    assert m["r2"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert m["mae"] == pytest.approx(0.0, abs=1e-12)
    assert m["spearman"] == pytest.approx(1.0)


def test_regression_by_hand() -> None:
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 6.0])
    m = regression_metrics(y, p)
    errors = p - y  # 1, 0, -1, 2
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 1 + 4) / 4))
    assert m["mae"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - (errors**2).sum() / ((y - y.mean()) ** 2).sum())
    # ranks of p: 2, 2, 2, 4 -> 2, 2, 2, 4 averaged; Pearson of ranks
    ranks_p = np.array([2.0, 2.0, 2.0, 4.0])
    assert m["spearman"] == pytest.approx(np.corrcoef([1, 2, 3, 4], ranks_p)[0, 1])


def test_constant_predictions_have_no_rank_correlation() -> None:
    m = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert math.isnan(m["spearman"])
    assert m["r2"] == pytest.approx(0.0)


def test_value_metrics() -> None:
    rng = np.random.default_rng(2)
    value = rng.lognormal(3.0, 1.0, 5_000)
    perfect = value_metrics(value, value * 2 + 1)  # any increasing function ranks perfectly
    order = np.sort(value)[::-1]
    assert perfect["top_decile_capture"] == pytest.approx(order[:500].sum() / value.sum())
    assert perfect["gini"] == pytest.approx(1.0)
    assert perfect["spearman"] == pytest.approx(1.0)
    noise = value_metrics(value, rng.uniform(size=value.size))
    assert abs(noise["gini"]) < 0.06
    assert noise["top_decile_capture"] == pytest.approx(0.1, abs=0.03)
    reverse = value_metrics(value, -value)
    assert reverse["gini"] == pytest.approx(-1.0)
    assert reverse["spearman"] == pytest.approx(-1.0)


def test_value_metrics_by_hand_and_ties() -> None:
    value = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0, 30.0])
    m = value_metrics(value, np.arange(10.0))  # the top row (score 9) holds 30 of 40
    assert m["top_decile_capture"] == pytest.approx(0.75)
    assert m["gini"] == pytest.approx(1.0)
    flat = value_metrics(value, np.ones(10))  # all tied: the top row holds the mean, a tenth
    assert flat["top_decile_capture"] == pytest.approx(0.1)
    assert flat["gini"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(flat["spearman"])


# -- classification ------------------------------------------------------------------------------------


def test_perfect_and_random_ranking() -> None:
    y, _ = _calibrated(4_000, 3)
    perfect = classification_metrics(y, np.where(y == 1, 0.9, 0.1))
    assert set(perfect) == CLASSIFICATION_KEYS
    assert perfect["auc_roc"] == pytest.approx(1.0)
    assert perfect["pr_auc"] == pytest.approx(1.0)
    assert perfect["accuracy"] == perfect["precision"] == perfect["recall"] == perfect["f1"] == 1.0
    assert perfect["brier"] == pytest.approx(0.01)
    assert perfect["log_loss"] == pytest.approx(-math.log(0.9))
    assert perfect["positive_rate"] == pytest.approx(y.mean())
    assert perfect["capture_top_decile"] == pytest.approx(400 / y.sum())
    random = classification_metrics(y, np.random.default_rng(4).uniform(size=y.size))
    assert random["auc_roc"] == pytest.approx(0.5, abs=0.03)
    assert random["lift_top_decile"] == pytest.approx(1.0, abs=0.15)


def test_threshold_metrics_by_hand() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.9, 0.2, 0.5])  # >= 0.5: rows 2, 4, 5, 7
    m = classification_metrics(y, p)
    tp, fp, fn, tn = 3, 1, 1, 3
    assert m["accuracy"] == pytest.approx((tp + tn) / 8)
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    strict = classification_metrics(y, p, threshold=0.95)  # nothing predicted positive
    assert (strict["precision"], strict["recall"]) == (0.0, 0.0)
    booleans = classification_metrics(y.astype(bool), p)
    assert booleans == m


def test_ece_calibrated_small_shifted_large() -> None:
    y, prob = _calibrated(20_000, 5)
    assert expected_calibration_error(y, prob) < 0.03
    shifted = np.clip(prob + 0.25, 0.0, 1.0)
    assert expected_calibration_error(y, shifted) > 0.15
    assert classification_metrics(y, prob)["ece"] == pytest.approx(expected_calibration_error(y, prob))


def test_ece_and_calibration_curve_by_hand() -> None:
    y = np.array([0, 1, 1, 1, 0])
    p = np.array([0.05, 0.05, 0.95, 0.95, 1.0])  # bins: [0, 0.1) twice, [0.9, 1.0] three times
    curve = calibration_curve(y, p)
    assert curve == [
        {"mean_prob": pytest.approx(0.05), "positive_rate": 0.5, "count": 2.0},
        {
            "mean_prob": pytest.approx((0.95 + 0.95 + 1.0) / 3),
            "positive_rate": pytest.approx(2 / 3),
            "count": 3.0,
        },
    ]
    expected = 2 / 5 * abs(0.05 - 0.5) + 3 / 5 * abs((0.95 + 0.95 + 1.0) / 3 - 2 / 3)
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    assert sum(c["count"] for c in calibration_curve(*_calibrated(1_000, 6), bins=7)) == 1_000


def test_lift_table_on_a_sorted_toy() -> None:
    # 20 rows, scores descending; the top two rows (decile 1) are both positive, 5 positives in all
    y = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    score = np.linspace(1.0, 0.0, 20)
    table = lift_table(y, score)
    assert len(table) == 10
    top = table[0]
    assert (top["decile"], top["rows"], top["positive_rate"]) == (1.0, 2.0, 1.0)
    assert top["lift"] == pytest.approx(1.0 / (5 / 20))
    assert top["cumulative_capture"] == pytest.approx(2 / 5)
    assert table[1]["cumulative_capture"] == pytest.approx(3 / 5)
    assert table[-1]["cumulative_capture"] == pytest.approx(1.0)
    assert sum(r["rows"] for r in table) == 20
    # the mean lift over equal groups is 1
    assert np.mean([r["lift"] for r in table]) == pytest.approx(1.0)
    m = classification_metrics(y, score)
    assert (m["lift_top_decile"], m["capture_top_decile"]) == (pytest.approx(4.0), pytest.approx(0.4))


def test_lift_table_of_values_and_uneven_groups() -> None:
    value = np.arange(1.0, 24.0)  # 23 rows -> groups of 3, 3, 3, 2, ...
    table = lift_table(value, value, groups=10)
    assert [r["rows"] for r in table] == [3.0, 3.0, 3.0, 2, 2, 2, 2, 2, 2, 2]
    assert table[0]["mean_value"] == pytest.approx(22.0)
    assert table[0]["cumulative_capture"] == pytest.approx((23 + 22 + 21) / value.sum())
    captures = [r["cumulative_capture"] for r in table]
    assert captures == sorted(captures)
    assert captures[-1] == pytest.approx(1.0)
    assert len(lift_table(value, value, groups=5)) == 5


def test_roc_points_thinned_and_monotone() -> None:
    y, prob = _calibrated(5_000, 7)
    points = roc_points(y, prob, max_points=50)
    assert 2 <= len(points) <= 50
    assert (points[0]["fpr"], points[0]["tpr"]) == (0.0, 0.0)
    assert (points[-1]["fpr"], points[-1]["tpr"]) == (1.0, 1.0)
    for key in ("fpr", "tpr"):
        values = [p[key] for p in points]
        assert values == sorted(values)
    thresholds = [p["threshold"] for p in points]
    assert thresholds == sorted(thresholds, reverse=True)
    assert all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in thresholds)
    few = roc_points([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.6])
    assert [(p["fpr"], p["tpr"]) for p in few] == [(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (1.0, 1.0)]
    assert few[0]["threshold"] == 1.0


def test_confusion_by_hand() -> None:
    y = [0, 0, 1, 1, 1, 0]
    p = [0.2, 0.7, 0.9, 0.4, 0.5, 0.1]
    result = confusion(y, p, labels=("stays", "churns"))
    assert result == {"categories": ["stays", "churns"], "matrix": [[2, 1], [1, 2]]}
    assert confusion(y, p, threshold=0.0)["matrix"] == [[0, 3], [0, 3]]
    assert confusion([1, 1], [0.2, 0.8])["matrix"] == [[0, 0], [1, 1]]  # one class is fine here


# -- bad input -----------------------------------------------------------------------------------------


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``, the formatted message constant of the module."""
    return f"^{re.escape(message)}$"


GOOD_Y = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0])
GOOD_P = np.linspace(0.05, 0.95, 12)

BINARY_FUNCTIONS = [
    classification_metrics,
    expected_calibration_error,
    calibration_curve,
    roc_points,
    confusion,
]


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        (
            GOOD_Y,
            GOOD_P[:-1],
            _LENGTH_MISMATCH.format(
                name="churn", true_noun="labels", pred_noun="probabilities", n_true=12, n_pred=11
            ),
        ),
        ([], [], _EMPTY.format(what="churn labels")),
        (np.where(GOOD_Y == 1, np.nan, 0.0), GOOD_P, _NAN_VALUES.format(what="churn labels", count=6, s="s")),
        (
            GOOD_Y,
            np.where(GOOD_Y == 1, np.nan, 0.5),
            _NAN_VALUES.format(what="churn probabilities", count=6, s="s"),
        ),
        (GOOD_Y, GOOD_P + 0.1, _NOT_PROBABILITIES.format(name="churn", count=1, value="1.05")),
        (GOOD_Y, GOOD_P - 0.1, _NOT_PROBABILITIES.format(name="churn", count=1, value="-0.05")),
        (GOOD_Y * 2, GOOD_P, _NOT_BINARY.format(name="churn", value="2")),
        (["a", "b"], [0.1, 0.2], _NOT_NUMERIC.format(what="churn labels")),
        (
            GOOD_Y.reshape(3, 4),
            GOOD_P.reshape(3, 4),
            _NOT_ONE_DIMENSIONAL.format(what="churn labels", shape=(3, 4)),
        ),
        (
            GOOD_Y,
            np.where(GOOD_Y == 1, np.inf, 0.5),
            _INFINITE_VALUES.format(what="churn probabilities", count=6, s="s"),
        ),
    ],
)
@pytest.mark.parametrize("function", BINARY_FUNCTIONS)
def test_bad_binary_input(function: Any, y: Any, p: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=exactly(message)):
        function(y, p, name="churn")


@pytest.mark.parametrize(
    ("function", "what"), [(classification_metrics, "AUC"), (roc_points, "the ROC curve")]
)
@pytest.mark.parametrize("cls", [0, 1])
def test_single_class_needs_both(function: Any, what: str, cls: int) -> None:
    message = _SINGLE_CLASS.format(name="churn", cls=cls, what=what)
    with pytest.raises(SchemaError, match=exactly(message)):
        function(np.full(10, cls), GOOD_P[:10], name="churn")


def test_single_class_is_fine_for_calibration() -> None:
    assert expected_calibration_error(np.zeros(4), [0.1, 0.1, 0.3, 0.3]) == pytest.approx(0.2)
    assert calibration_curve(np.ones(2), [0.95, 0.95])[0]["positive_rate"] == 1.0


#: what each function calls its second argument in its messages
PREDICTION_NOUN = {regression_metrics: "predictions", value_metrics: "predictions", lift_table: "scores"}


@pytest.mark.parametrize("function", list(PREDICTION_NOUN))
@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        (
            [1.0, 2.0],
            [1.0],
            lambda noun: _LENGTH_MISMATCH.format(
                name="ltv", true_noun="values", pred_noun=noun, n_true=2, n_pred=1
            ),
        ),
        ([], [], lambda noun: _EMPTY.format(what="ltv values")),
        ([1.0, np.nan], [1.0, 2.0], lambda noun: _NAN_VALUES.format(what="ltv values", count=1, s="")),
        ([1.0, 2.0], [np.nan, np.nan], lambda noun: _NAN_VALUES.format(what=f"ltv {noun}", count=2, s="s")),
    ],
)
def test_bad_value_input(function: Any, y: Any, p: Any, message: Callable[[str], str]) -> None:
    with pytest.raises(SchemaError, match=exactly(message(PREDICTION_NOUN[function]))):
        function(y, p, name="ltv")


def test_value_checks() -> None:
    with pytest.raises(SchemaError, match=exactly(_NEGATIVE_COUNT.format(name="ltv", count=1, s=""))):
        value_metrics([1.0, -2.0, 3.0], [1.0, 2.0, 3.0], name="ltv")
    message = _ZERO_TOTAL.format(name="ltv", total="0", what="the captured share")
    with pytest.raises(SchemaError, match=exactly(message)):
        value_metrics([0.0, 0.0], [1.0, 2.0], name="ltv")
    with pytest.raises(SchemaError, match=exactly(_ZERO_TOTAL.format(name="churn", total="0", what="lift"))):
        lift_table(np.zeros(20), np.linspace(0, 1, 20), name="churn")
    message = _FEWER_ROWS_THAN_GROUPS.format(name="churn", rows=5, groups=10)
    with pytest.raises(SchemaError, match=exactly(message)):
        lift_table([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5], name="churn")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: classification_metrics(GOOD_Y, GOOD_P, threshold=1.5),
            _BAD_THRESHOLD.format(threshold=1.5),
        ),
        (lambda: confusion(GOOD_Y, GOOD_P, threshold=-0.1), _BAD_THRESHOLD.format(threshold=-0.1)),
        (
            lambda: expected_calibration_error(GOOD_Y, GOOD_P, bins=0),
            _BAD_COUNT.format(what="bins", minimum=1, value=0),
        ),
        (
            lambda: calibration_curve(GOOD_Y, GOOD_P, bins=2.5),
            _BAD_COUNT.format(what="bins", minimum=1, value=2.5),
        ),
        (lambda: lift_table(GOOD_Y, GOOD_P, groups=0), _BAD_COUNT.format(what="groups", minimum=1, value=0)),
        (
            lambda: roc_points(GOOD_Y, GOOD_P, max_points=1),
            _BAD_COUNT.format(what="max_points", minimum=2, value=1),
        ),
    ],
)
def test_bad_parameters(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=exactly(message)):
        call()


# -- report --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluations() -> list[HeadEvaluation]:
    rng = np.random.default_rng(8)
    y, prob = _calibrated(3_000, 9)
    weak = np.clip(0.5 * prob + 0.25 + rng.normal(0, 0.05, y.size), 0.0, 1.0)
    churn = HeadEvaluation(
        head="churn",
        task="binary_classification",
        y_true=y,
        predictions={"xgboost": prob, "baseline": weak},
        metrics={"xgboost": classification_metrics(y, prob), "baseline": classification_metrics(y, weak)},
        notes=("threshold 0.5 <tuned later>",),
    )
    score = rng.normal(50, 15, 6_000)  # more rows than the scatter draws
    engagement = HeadEvaluation(
        head="engagement_score",
        task="regression",
        y_true=score,
        predictions={"xgboost": score + rng.normal(0, 5, score.size)},
        metrics={"xgboost": regression_metrics(score, score)},
    )
    ltv = rng.lognormal(4, 1, 2_000)
    ltv_pred = ltv * rng.lognormal(0, 0.3, ltv.size)
    mean = np.full(ltv.size, ltv.mean())
    value = HeadEvaluation(
        head="ltv",
        task="regression",
        y_true=ltv,
        predictions={"xgboost": ltv_pred, "mean": mean},
        metrics={
            "xgboost": regression_metrics(ltv, ltv_pred) | value_metrics(ltv, ltv_pred),
            "mean": regression_metrics(ltv, mean) | value_metrics(ltv, mean),
        },
    )
    return [churn, engagement, value]


@pytest.fixture(scope="module")
def page(evaluations: list[HeadEvaluation]) -> str:
    return render_html_report(
        evaluations, title="Engage <model> report", summary_rows=[("run", "r-1 & co"), ("rows", "11,000")]
    )


def test_report_holds_every_head_metric_and_plot(page: str, evaluations: list[HeadEvaluation]) -> None:
    assert page.startswith("<!doctype html>")
    assert page.rstrip().endswith("</html>")
    for e in evaluations:
        assert f"<h2>{e.head} " in page
        for metrics in e.metrics.values():
            for name in metrics:
                assert f"<th>{name}</th>" in page
        for model in e.predictions:
            assert f"<th>{model}</th>" in page
    # churn: ROC, reliability, lift; engagement: scatter, residuals; ltv: those two and capture
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3 + 2 + 3
    for image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", page)  # a payload may spell anything
    assert "http" not in text
    assert "<link" not in text
    assert "<script" not in text


def test_report_escapes_text(page: str) -> None:
    assert "<title>Engage &lt;model&gt; report</title>" in page
    assert "<td>r-1 &amp; co</td>" in page
    assert "threshold 0.5 &lt;tuned later&gt;" in page
    assert "<model>" not in page


def test_report_is_deterministic(evaluations: list[HeadEvaluation]) -> None:
    sampled = [evaluations[1]]  # the head whose scatter draws a random subsample
    assert render_html_report(sampled, title="t") == render_html_report(sampled, title="t")


def test_report_rejects_bad_heads() -> None:
    y = np.array([0, 1, 0, 1])
    message = _UNKNOWN_TASK.format(head="churn", tasks=", ".join(TASKS), task="ranking")
    with pytest.raises(SchemaError, match=exactly(message)):
        HeadEvaluation(head="churn", task="ranking", y_true=y, predictions={"m": y}, metrics={})
    with pytest.raises(SchemaError, match=exactly(_NO_PREDICTIONS.format(head="churn"))):
        HeadEvaluation(head="churn", task="regression", y_true=y, predictions={}, metrics={})
    short = HeadEvaluation(
        head="churn", task="binary_classification", y_true=y, predictions={"m": y[:3] / 2}, metrics={}
    )
    message = _LENGTH_MISMATCH.format(
        name="churn (m)", true_noun="labels", pred_noun="probabilities", n_true=4, n_pred=3
    )
    with pytest.raises(SchemaError, match=exactly(message)):
        render_html_report([short], title="t")
    single = HeadEvaluation(
        head="churn", task="binary_classification", y_true=np.ones(12), predictions={"m": GOOD_P}, metrics={}
    )
    with pytest.raises(SchemaError, match=exactly(_SINGLE_CLASS.format(name="churn (m)", cls=1, what="AUC"))):
        render_html_report([single], title="t")
